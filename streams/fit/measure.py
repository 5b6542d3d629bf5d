"""Body measurements of one frame: `measure(scene, scale) -> FrameMeasurements` (name -> (value, quality 0..1)).

Everything is measured in pixels and converted with the frame's `Scale` (streams/fit/scale.py). Without a scale
(`Scale.relative`) values are ratios to the shoulder width (biacromial = 1) and the frame is flagged relative.

Anthropometric levels and factors (stature H; Drillis & Contini, ANSUR II means, rounded; each factor's
uncertainty is part of MODEL_ERROR, which the aggregator adds to the spread):

- Torso axis: mid-shoulder -> mid-hip keypoints (0.818 H -> 0.530 H, T = 0.288 H). Levels as a fraction t of T
  below the shoulders: chest (bust) 0.72 H -> t 0.35, natural waist 0.63 H -> t 0.65, hips (buttocks) 0.49 H ->
  t 1.12. Widths are runs of person mask (>= 0.5) through the torso axis, perpendicular to it, the median over a
  band of LEVEL_BAND around the level.
- Girth = SHAPE_FACTOR x the perimeter of the ellipse with the frontal width and the depth (Ramanujan). Depth
  from the population ratio DEPTH_RATIO (chest 0.75, waist 0.77, hips 0.71 of the width) unless a side view
  measured it. The body cross-section is fuller than an ellipse: ANSUR mean breadth/depth/circumference give
  SHAPE_FACTOR 1.09 (chest), 1.06 (waist), 1.05 (hips); waist and hips then calibrated (below).
- Frontalness from the shoulder keypoints: cos(yaw) ~ (shoulder keypoint distance) / (FRONTAL_SHOULDER_RATIO x
  T), the pose carrying no usable z. >= FRONTAL_MIN: frontal (widths); <= SIDE_MAX: side view (depths); between:
  oblique, a mix of width and depth, so no girth from that frame.
- shoulder_width: biacromial = SHOULDER_FACTOR (1.25) x the shoulder keypoint distance (the keypoints sit near
  the joint centres, medial of the acromion tips; the factor is calibrated on synthetic bodies, below).
  Foreshortened when turned: the quality falls with frontalness.
  A webcam framing (shoulders but no hips) gives only this and bideltoid_width, frontalness then from the head
  pose (x HEAD_FRONTAL_TRUST: the head may turn on its own), and only with a metric scale.
- bideltoid_width: the person mask's breadth across the upper arms, BIDELTOID_LEVEL (0.3) shoulder keypoint
  distances below the shoulders, the median over a small band; only with both arms hanging: the quality falls from
  an upper arm 15 degrees out to 0 at 35 (ARM_ANGLE_DEG; an arm held out widens the silhouette there or leaves
  it), and an elbow out of sight lowers it. The
  shoulder keypoints move by up to ~10 % with a photo's framing (the pose model's crop); this silhouette breadth
  by a few per cent (loadtest/fit.py). A run that ends at the frame's edge is not a measurement (the body goes on
  beyond it).
- arm_length: shoulder -> elbow -> wrist, the longer visible arm. inseam (crotch height): (hip -> knee -> ankle ->
  heel) x INSEAM_FACTOR = 0.47 / 0.53 (crotch 0.47 H, hip joint 0.53 H). foot_length: heel -> foot index x
  FOOT_FACTOR 1.10 (the foot index keypoint is 5-15 % short of the toe tips, streams/tryon/extremities.py).
  Foreshortening only shortens these, so the longer side is used and the quality falls when the length is short
  of its population proportion to T.
- finger_circumference: ring finger width ~ FINGER_WIDTH_FACTOR (0.85) x the mean distance of the ring MCP to its
  neighbours' MCPs (3D, the hand's z), circumference = pi x width. wrist_circumference = WRIST_FACTOR (2.5) x the
  index MCP -> pinky MCP distance. head_circumference = HEAD_FACTOR (4.05) x the face-mesh width 234 <-> 454. On
  photos the mesh puts those two points on the visible cheek contour, i.e. the bizygomatic breadth (13-14.5 cm
  measured with the eye scale on the faces in the sample data), not where they sit on MediaPipe's canonical face
  (15.3 cm, near the ears); ANSUR II head circumference / bizygomatic breadth: men 574 / 143 mm, women 550 / 135
  mm, both ~4.05.

Calibration on synthetic bodies (tests/data/fit_bodies, tools/make_fit_bodies.py: 4 men and 4 women of known
measurements, rendered; calibrated on the front views of m1, m2, f1, f2, the others held out, loadtest/fit.py):
the ANSUR-based factors above gave, against ISO 8559 definitions (chest at the nipples, natural waist = the
narrowest, hips = the fullest), chest -0.7 %, waist +7.8 %, hips +6.0 %, shoulder width -10.6 % (against the
skin's top-outer shoulder corner). SHAPE_FACTOR waist and hips and SHOULDER_FACTOR carry those corrections
(waist 1.06 -> 0.98, hips 1.05 -> 0.99, shoulder 1.12 -> 1.25); the chest needed none. A front-then-side
session then measured the waist 3.4 % and the hips 7.4 % short: the side silhouette at those levels is shallower
than the body's depth there (the fullest part of the buttocks sits off the level), so DEPTH_FACTOR scales the
measured depths (waist x 1.08, hips x 1.19).

Quality (0..1, a product): visibility of the keypoints used, frontalness (or side-ness for depths), mask coverage
sanity (a width far from its expectation from T - loose clothing, an arm against the torso, a hole in the mask -
lowers the quality, the value is left as measured) and sharpness (variance of the Laplacian on the torso region).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import ItemsView, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from streams.fit.scale import Method, Scale, seen
from streams.tryon.scene import HandView, Scene

MIN_VISIBILITY = 0.5
SHOULDER_FACTOR = 1.25
INSEAM_FACTOR = 0.47 / 0.53
FOOT_FACTOR = 1.10
FINGER_WIDTH_FACTOR = 0.85
WRIST_FACTOR = 2.5
HEAD_FACTOR = 4.05
FRONTAL_SHOULDER_RATIO = 0.68  # shoulder keypoint distance / T of a frontal adult (~34 cm / 50 cm)
FRONTAL_MIN = 0.6  # cos(yaw) proxy at or above which widths are measured (full quality at 0.9)
SIDE_MAX = 0.45  # at or below which depths are measured (full quality at 0.2)
LEVELS = {"chest": 0.35, "waist": 0.65, "hips": 1.12}
LEVEL_BAND = 0.04  # +- fraction of T around a level
DEPTH_RATIO = {"chest": 0.75, "waist": 0.77, "hips": 0.71}
SHAPE_FACTOR = {"chest": 1.09, "waist": 0.98, "hips": 0.99}  # waist and hips calibrated (module docstring)
DEPTH_FACTOR = {"chest": 1.0, "waist": 1.08, "hips": 1.19}  # side-view silhouette -> depth, calibrated (docstring)
EXPECTED_WIDTH = {"chest": 0.66, "waist": 0.58, "hips": 0.72}  # / T, frontal
EXPECTED_DEPTH = {"chest": 0.50, "waist": 0.46, "hips": 0.50}  # / T, side view
COVERAGE_RANGE = (0.7, 1.35)  # plausible measured / expected; outside, the quality falls off
ARM_PER_T = 1.15  # shoulder -> wrist / T
LEG_PER_T = 1.84  # hip -> heel / T
FOOT_PER_T = 0.53  # heel -> foot index (x FOOT_FACTOR) / T
PALM_RATIO = 0.75  # index-pinky MCP distance / wrist -> middle MCP
SHARPNESS_REF = 100.0  # variance of the Laplacian of a sharp 8-bit frame
MASK_THRESHOLD = 0.5
EDGE_PX = 2.0  # a mask run ending this close to the frame's edge is cut by the frame, not the body's edge
BIDELTOID_LEVEL = 0.3  # below the shoulder keypoints, in shoulder keypoint distances
BIDELTOID_PER_SHOULDER = 1.6  # expected silhouette breadth there / shoulder keypoint distance (frontal adult)
ARM_ANGLE_DEG = (15.0, 35.0)  # upper arm against the torso's vertical: hanging up to 15, held out from 35
UNSEEN_ELBOW_QUALITY = 0.8  # per elbow out of sight (a webcam framing): the arm is probably, not surely, hanging
HEAD_FRONTAL_TRUST = 0.7  # without hips the head's yaw stands in for the torso's: it may turn on its own
# Relative 1-SD error of each measurement's model (population factors), excluding scale and frame noise.
MODEL_ERROR = {
    "shoulder_width": 0.05,
    "bideltoid_width": 0.03,
    "chest": 0.06,
    "waist": 0.07,
    "hips": 0.05,
    "chest_width": 0.03,
    "waist_width": 0.03,
    "hips_width": 0.03,
    "chest_depth": 0.04,
    "waist_depth": 0.04,
    "hips_depth": 0.04,
    "arm_length": 0.04,
    "inseam": 0.04,
    "foot_length": 0.05,
    "finger_circumference": 0.10,
    "wrist_circumference": 0.10,
    "head_circumference": 0.05,
}
GIRTHS = tuple(LEVELS)

L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = 11, 12, 13, 14, 15, 16
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 23, 24, 25, 26, 27, 28
L_HEEL, R_HEEL, L_FOOT, R_FOOT = 29, 30, 31, 32
FACE_LEFT, FACE_RIGHT, FACE_TOP, FACE_CHIN = 234, 454, 10, 152
CANONICAL_FACE_RATIO = 15.33 / 17.67  # width 234-454 / height 10-152 on the canonical face


@dataclass
class FrameMeasurements:
    """One frame's measurements: name -> (value, quality). cm, or ratios to the shoulder width when relative."""

    values: dict[str, tuple[float, float]] = field(default_factory=dict)
    method: Method = "none"
    scale_error: float = 1.0

    @property
    def relative(self) -> bool:
        return self.method == "none"

    def __getitem__(self, name: str) -> tuple[float, float]:
        return self.values[name]

    def __contains__(self, name: object) -> bool:
        return name in self.values

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def items(self) -> ItemsView[str, tuple[float, float]]:
        return self.values.items()


def ellipse_perimeter(width: float, depth: float) -> float:
    """Perimeter of the ellipse with these full axes (Ramanujan's second approximation)."""
    a, b = width / 2, depth / 2
    if a + b <= 0:
        return 0.0
    h = ((a - b) / (a + b)) ** 2
    return math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))


def girth(name: str, width: float | None = None, depth: float | None = None) -> float:
    """Girth at `name`'s level (chest, waist, hips) from the width and/or depth; the missing one from DEPTH_RATIO."""
    if width is None and depth is None:
        raise ValueError("girth needs a width or a depth")
    w = width if width is not None else float(depth) / DEPTH_RATIO[name]  # type: ignore[arg-type]
    d = depth if depth is not None else w * DEPTH_RATIO[name]
    return SHAPE_FACTOR[name] * ellipse_perimeter(w, d)


def _bilinear(mask: np.ndarray, pts: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    x = np.clip(pts[:, 0], 0, w - 1.001)
    y = np.clip(pts[:, 1], 0, h - 1.001)
    x0, y0 = np.floor(x).astype(np.intp), np.floor(y).astype(np.intp)
    fx, fy = x - x0, y - y0
    top = mask[y0, x0] * (1 - fx) + mask[y0, x0 + 1] * fx
    bottom = mask[y0 + 1, x0] * (1 - fx) + mask[y0 + 1, x0 + 1] * fx
    inside = (pts[:, 0] >= 0) & (pts[:, 0] <= w - 1) & (pts[:, 1] >= 0) & (pts[:, 1] <= h - 1)
    return np.where(inside, top * (1 - fy) + bottom * fy, 0.0)


def _half_run(mask: np.ndarray, centre: np.ndarray, direction: np.ndarray, max_len: float) -> float | None:
    """Distance from `centre` along `direction` to where the mask drops below the threshold (sub-pixel); None when
    the run leaves the search range or reaches the frame's edge (the body goes on beyond it: no edge seen)."""
    step = 1.0  # px; the crossing is interpolated between the two samples around it
    s = np.arange(0.0, max_len, step)
    v = _bilinear(mask, centre[None, :] + s[:, None] * direction[None, :])
    below = np.nonzero(v < MASK_THRESHOLD)[0]
    if len(below) == 0:
        return None
    i = int(below[0])
    if i == 0:
        return 0.0
    v0, v1 = float(v[i - 1]), float(v[i])
    run = float(s[i - 1] + step * (v0 - MASK_THRESHOLD) / max(v0 - v1, 1e-9))
    end = centre + run * direction
    h, w = mask.shape
    if not (EDGE_PX <= end[0] <= w - 1 - EDGE_PX and EDGE_PX <= end[1] <= h - 1 - EDGE_PX):
        return None
    return run


def mask_width(mask: np.ndarray, centre: np.ndarray, direction: np.ndarray, max_len: float) -> float | None:
    """Length of the run of person mask through `centre` along +-`direction` (a unit vector); None if not closed."""
    if _bilinear(mask, centre[None, :])[0] < MASK_THRESHOLD:
        return None
    a = _half_run(mask, centre, direction, max_len)
    b = _half_run(mask, centre, -direction, max_len)
    if a is None or b is None:
        return None
    return a + b


def sharpness(bgr: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """0..1: variance of the Laplacian of the grey region `box` (x0, y0, x1, y1) against SHARPNESS_REF."""
    x0, y0, x1, y1 = box
    h, w = bgr.shape[:2]
    x0, x1 = max(0, x0), min(w, x1)
    y0, y1 = max(0, y0), min(h, y1)
    if x1 - x0 < 3 or y1 - y0 < 3:
        return 0.0
    grey = cv2.cvtColor(np.ascontiguousarray(bgr[y0:y1, x0:x1]), cv2.COLOR_BGR2GRAY)
    var = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    return float(min(1.0, var / SHARPNESS_REF))


def _coverage_quality(ratio: float) -> float:
    lo, hi = COVERAGE_RANGE
    if ratio > hi:
        return math.exp(-(((ratio - hi) / 0.2) ** 2))
    if ratio < lo:
        return math.exp(-(((lo - ratio) / 0.15) ** 2))
    return 1.0


def _ramp(x: float, lo: float, hi: float) -> float:
    """0 at lo, 1 at hi, linear between (either order)."""
    return float(np.clip((x - lo) / (hi - lo), 0.0, 1.0))


def _dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


class _Frame:
    """The pose geometry one frame's measurements share."""

    def __init__(self, kp: np.ndarray) -> None:
        self.kp = kp
        self.vis = seen(kp)
        self.shoulder = (kp[L_SHOULDER, :2] + kp[R_SHOULDER, :2]) / 2
        self.hip = (kp[L_HIP, :2] + kp[R_HIP, :2]) / 2
        self.torso = _dist(self.shoulder, self.hip)
        self.axis = (self.hip - self.shoulder) / max(self.torso, 1e-9)
        self.normal = np.array([-self.axis[1], self.axis[0]])
        self.shoulder_px = _dist(kp[L_SHOULDER, :2], kp[R_SHOULDER, :2])
        self.cos_yaw = float(min(1.0, self.shoulder_px / (FRONTAL_SHOULDER_RATIO * max(self.torso, 1e-9))))
        self.frontal = _ramp(self.cos_yaw, FRONTAL_MIN, 0.9)
        self.side = _ramp(self.cos_yaw, SIDE_MAX, 0.2)

    def v(self, *idx: int) -> float:
        return float(np.min(self.vis[list(idx)]))

    def torso_ok(self) -> bool:
        shoulders = max(self.vis[L_SHOULDER], self.vis[R_SHOULDER]) >= MIN_VISIBILITY
        hips = max(self.vis[L_HIP], self.vis[R_HIP]) >= MIN_VISIBILITY
        return bool(shoulders and hips and self.torso > 4.0)

    def chain(self, idx: tuple[int, ...]) -> float:
        return sum(_dist(self.kp[a, :2], self.kp[b, :2]) for a, b in itertools.pairwise(idx))

    def longest(self, chains: tuple[tuple[int, ...], ...]) -> tuple[float, float] | None:
        """(length px, visibility) of the longest chain whose keypoints are all visible."""
        seen = [(self.chain(c), self.v(*c)) for c in chains if self.v(*c) >= MIN_VISIBILITY]
        return max(seen) if seen else None


def _arm_touching(f: _Frame, t: float, half_width: float) -> bool:
    """An elbow or wrist against the torso at level t (its run of mask would include the arm)."""
    for i in (L_ELBOW, R_ELBOW, L_WRIST, R_WRIST):
        if f.vis[i] < MIN_VISIBILITY:
            continue
        d = f.kp[i, :2] - f.shoulder
        along = float(d @ f.axis) / f.torso
        across = abs(float(d @ f.normal))
        if abs(along - t) < 0.2 and across < half_width + 0.12 * f.torso:
            return True
    return False


def _level_runs(f: _Frame, mask: np.ndarray, t: float) -> float | None:
    runs = []
    for dt in np.linspace(-LEVEL_BAND, LEVEL_BAND, 5):
        centre = f.shoulder + (t + dt) * f.torso * f.axis
        w = mask_width(mask, centre, f.normal, 1.5 * f.torso)
        if w is not None:
            runs.append(w)
    return float(np.median(runs)) if len(runs) >= 3 else None


def _torso(f: _Frame, mask: np.ndarray, unit: float, sharp: float, out: dict[str, tuple[float, float]]) -> None:
    if f.frontal > 0:
        view, view_q, expected = "width", f.frontal, EXPECTED_WIDTH
    elif f.side > 0:
        view, view_q, expected = "depth", f.side, EXPECTED_DEPTH
    else:
        return  # oblique: a mix of width and depth
    vis = min(max(f.vis[L_SHOULDER], f.vis[R_SHOULDER]), max(f.vis[L_HIP], f.vis[R_HIP]))
    for name, t in LEVELS.items():
        px = _level_runs(f, mask, t)
        if px is None or px <= 0:
            continue
        q = vis * view_q * _coverage_quality(px / (expected[name] * f.torso)) * sharp
        if view == "width" and _arm_touching(f, t, px / 2):
            q *= 0.3
        value = px * unit * (DEPTH_FACTOR[name] if view == "depth" else 1.0)
        out[f"{name}_{view}"] = (value, q)
        g = girth(name, width=value) if view == "width" else girth(name, depth=value)
        out[name] = (g, 0.9 * q)


def _limbs(f: _Frame, unit: float, sharp: float, out: dict[str, tuple[float, float]]) -> None:
    if f.shoulder_px > 0 and min(f.vis[L_SHOULDER], f.vis[R_SHOULDER]) >= MIN_VISIBILITY:
        out["shoulder_width"] = (
            SHOULDER_FACTOR * f.shoulder_px * unit,
            f.v(L_SHOULDER, R_SHOULDER) * f.frontal * sharp,
        )
    arm = f.longest(((L_SHOULDER, L_ELBOW, L_WRIST), (R_SHOULDER, R_ELBOW, R_WRIST)))
    if arm is not None:
        fore = _ramp(arm[0] / (ARM_PER_T * f.torso), 0.6, 0.9) ** 2
        out["arm_length"] = (arm[0] * unit, arm[1] * fore * sharp)
    leg = f.longest(((L_HIP, L_KNEE, L_ANKLE, L_HEEL), (R_HIP, R_KNEE, R_ANKLE, R_HEEL)))
    if leg is not None:
        fore = _ramp(leg[0] / (LEG_PER_T * f.torso), 0.6, 0.9) ** 2
        out["inseam"] = (INSEAM_FACTOR * leg[0] * unit, leg[1] * fore * sharp)
    foot = f.longest(((L_HEEL, L_FOOT), (R_HEEL, R_FOOT)))
    if foot is not None:
        length = FOOT_FACTOR * foot[0]
        fore = _ramp(length / (FOOT_PER_T * f.torso), 0.5, 0.85) ** 2
        out["foot_length"] = (length * unit, foot[1] * fore * sharp)


def _hands(hands: list[HandView], unit: float, sharp: float, out: dict[str, tuple[float, float]]) -> None:
    best: tuple[float, float, float] | None = None  # quality, finger, wrist (px)
    for hand in hands:
        p = np.asarray(hand.points, np.float64)
        if p.shape[0] < 21 or not np.all(np.isfinite(p)):
            continue
        spacing = (_dist(p[13], p[9]) + _dist(p[13], p[17])) / 2
        palm_width = _dist(p[5], p[17])
        palm_length = _dist(p[0], p[9])
        if palm_length <= 0:
            continue
        q = _ramp(palm_width / palm_length / PALM_RATIO, 0.5, 0.85) ** 2 * sharp
        if best is None or q > best[0]:
            best = (q, spacing, palm_width)
    if best is not None and best[0] > 0:
        q, spacing, palm_width = best
        out["finger_circumference"] = (math.pi * FINGER_WIDTH_FACTOR * spacing * unit, q)
        out["wrist_circumference"] = (WRIST_FACTOR * palm_width * unit, q)


def _head(face: np.ndarray, unit: float, sharp: float, out: dict[str, tuple[float, float]]) -> None:
    p = np.asarray(face, np.float64)
    if p.shape[0] < 468 or not np.all(np.isfinite(p[[FACE_LEFT, FACE_RIGHT, FACE_TOP, FACE_CHIN]])):
        return
    width = _dist(p[FACE_LEFT], p[FACE_RIGHT])  # with z: turning the head does not shorten it
    height = _dist(p[FACE_TOP], p[FACE_CHIN])
    if width <= 0 or height <= 0:
        return
    q = _coverage_quality(width / height / CANONICAL_FACE_RATIO) * sharp
    out["head_circumference"] = (HEAD_FACTOR * width * unit, q)


def _head_frontal(rotation: np.ndarray | None) -> float:
    """Frontalness from the head pose (the face normal against the camera axis), for frames without hips."""
    if rotation is None:
        return 0.0
    r = np.asarray(rotation, np.float64).reshape(3, 3)
    return _ramp(abs(float(r[2, 2])), FRONTAL_MIN, 0.9) if np.all(np.isfinite(r)) else 0.0


def _bideltoid(
    f: _Frame, mask: np.ndarray, unit: float, frontal: float, sharp: float, out: dict[str, tuple[float, float]]
) -> None:
    """The silhouette's breadth across the upper arms, BIDELTOID_LEVEL shoulder widths below the shoulders: the
    person mask is far steadier there than the shoulder keypoints, which move with the photo's framing."""
    if f.shoulder_px <= 4.0 or f.v(L_SHOULDER, R_SHOULDER) < MIN_VISIBILITY or frontal <= 0:
        return
    across = (f.kp[L_SHOULDER, :2] - f.kp[R_SHOULDER, :2]) / f.shoulder_px
    down = np.array([-across[1], across[0]])
    down = down if down[1] >= 0 else -down
    # Only with the arms hanging: an arm held out leaves the silhouette at that level (torso only, or arm too).
    hanging = 1.0
    for shoulder, elbow in ((L_SHOULDER, L_ELBOW), (R_SHOULDER, R_ELBOW)):
        if f.vis[elbow] < MIN_VISIBILITY:
            hanging *= UNSEEN_ELBOW_QUALITY
            continue
        arm = f.kp[elbow, :2] - f.kp[shoulder, :2]
        cos = float(arm @ down) / max(float(np.linalg.norm(arm)), 1e-9)
        hanging *= _ramp(math.degrees(math.acos(float(np.clip(cos, -1.0, 1.0)))), *ARM_ANGLE_DEG[::-1])
    if hanging <= 0:
        return
    runs = []
    for level in np.linspace(BIDELTOID_LEVEL - LEVEL_BAND, BIDELTOID_LEVEL + LEVEL_BAND, 5):
        centre = f.shoulder + level * f.shoulder_px * down
        w = mask_width(mask, centre, across, 1.5 * f.shoulder_px)
        if w is not None:
            runs.append(w)
    if len(runs) < 3:
        return
    px = float(np.median(runs))
    coverage = _coverage_quality(px / (BIDELTOID_PER_SHOULDER * f.shoulder_px))
    q = f.v(L_SHOULDER, R_SHOULDER) * frontal * coverage * hanging * sharp
    out["bideltoid_width"] = (px * unit, q)


def _upper_body(f: _Frame, scene: Scene, unit: float, out: dict[str, tuple[float, float]]) -> None:
    """A webcam framing (shoulders, no hips): the shoulder and upper-arm breadths, turned-ness judged from the
    head."""
    if f.shoulder_px <= 0 or f.v(L_SHOULDER, R_SHOULDER) < MIN_VISIBILITY:
        return
    half = 0.5 * f.shoulder_px
    lo = np.minimum(f.kp[L_SHOULDER, :2], f.kp[R_SHOULDER, :2]) - half
    hi = np.maximum(f.kp[L_SHOULDER, :2], f.kp[R_SHOULDER, :2]) + half
    sharp = 0.5 + 0.5 * sharpness(scene.bgr, (int(lo[0]), int(lo[1]), int(hi[0]) + 1, int(hi[1]) + 1))
    frontal = _head_frontal(scene.head_rotation) * HEAD_FRONTAL_TRUST
    out["shoulder_width"] = (SHOULDER_FACTOR * f.shoulder_px * unit, f.v(L_SHOULDER, R_SHOULDER) * frontal * sharp)
    if scene.mask is not None:
        _bideltoid(f, np.asarray(scene.mask, np.float32), unit, frontal, sharp, out)


def measure(scene: Scene, scale: Scale) -> FrameMeasurements:
    """All the measurements this frame allows, with their quality; relative (ratios) when `scale` has none."""
    out: dict[str, tuple[float, float]] = {}
    kp = None if scene.keypoints is None else np.asarray(scene.keypoints, np.float64)
    f = _Frame(kp) if kp is not None and kp.shape[0] >= 33 else None
    upper = None
    if f is not None and not f.torso_ok():
        f, upper = None, f
    if upper is not None and scale.cm_per_px is not None:
        _upper_body(upper, scene, float(scale.cm_per_px), out)
    if scale.cm_per_px is not None:
        unit = float(scale.cm_per_px)
    elif f is not None and min(f.vis[L_SHOULDER], f.vis[R_SHOULDER]) >= MIN_VISIBILITY and f.shoulder_px > 0:
        unit = 1.0 / (SHOULDER_FACTOR * f.shoulder_px)  # ratios to the biacromial width
    else:
        return FrameMeasurements({}, scale.method, scale.expected_error)
    sharp_q = 1.0
    if f is not None:
        pts = np.stack([f.kp[i, :2] for i in (L_SHOULDER, R_SHOULDER, L_HIP, R_HIP)])
        pad = 0.25 * f.torso
        lo, hi = pts.min(axis=0) - pad, pts.max(axis=0) + pad
        sharp_q = 0.5 + 0.5 * sharpness(scene.bgr, (int(lo[0]), int(lo[1]), int(hi[0]) + 1, int(hi[1]) + 1))
        _limbs(f, unit, sharp_q, out)
        if scene.mask is not None:
            _torso(f, np.asarray(scene.mask, np.float32), unit, sharp_q, out)
            _bideltoid(f, np.asarray(scene.mask, np.float32), unit, f.frontal, sharp_q, out)
    _hands(scene.hands, unit, sharp_q, out)
    if scene.face is not None:
        _head(scene.face, unit, sharp_q, out)
    if scale.relative:
        out.pop("shoulder_width", None)  # the unit itself
    return FrameMeasurements(out, scale.method, scale.expected_error)
