"""Try-on for the feet and hands: a shoe on each foot from the pose, a ring on a finger and a watch on a wrist from
the hand landmarks. Pure numpy + OpenCV (runs in Triton's python backend and in unit tests).

Shoes (`render_shoes`). The product image is a side view; `heel` / `toe` are its back and front ends in the lower
half of the shoe (streams/tryon/anchors.py), the upper on one side of the heel -> toe line. Per foot, from
BlazePose's ankle (27/28), heel (29/30) and foot index (31/32), each with visibility >= 0.5 (else no shoe there):

* Where the keypoints sit, measured on the test photos: barefoot (yoga) the heel keypoint is on the back of the
  heel, low, and the foot index 5-15 % of the heel -> foot-index distance short of the toe tips (at the toes, not
  at their base); in shoes (sitting photo, dance video) both lie at mid-height inside the shoe, the heel keypoint
  3-27 % of that distance inside the shoe's back, the foot index 4-39 % short of the shoe's tip and the sole's
  bottom 17-34 % below their line. So the item's heel anchor goes SHOE_HEEL_BEHIND (12 %) behind the heel
  keypoint, its toe anchor SHOE_TOE_BEYOND (25 %) beyond the foot index (plus SHOE_TOE_FORESHORTENED of the
  length lost to foreshortening), and the heel -> toe line is lowered until the shoe's sole reaches
  SHOE_SOLE_BELOW (20 %) of the reference foot below the keypoints: the shoe covers a shod foot (a bare foot gets
  a shoe ~20 % longer than itself).
* The upper goes to the ankle's side of the foot line: a foot pointing the other way than the product image gets
  the image mirrored (the product image may show either side). The height is fitted so that the item's ankle
  point (a quarter of the shoe's length from the heel, 80 % of the collar height there but at most
  SHOE_ANKLE_HEIGHT of the length) lands on the ankle keypoint (the ankle is inside the upper), sheared towards
  it, within [0.85, 1.5] x a reference scale that does not shrink when the foot is foreshortened: the larger of
  heel -> foot index and FOOT_PER_SHIN x knee -> ankle (knee visible).
* The shoe covers the foot; nothing beyond a line SHOE_CLIP_ABOVE_ANKLE (15 % of the reference foot) above the
  ankle, across the shin (knee -> ankle), is drawn: trousers and legs stay in front of a tall boot's shaft. The
  foot lower in the frame (nearer the camera) is drawn last.

Rings and watches. The product image is a top view: the finger / wrist runs vertically, the band across it;
`band_left` / `band_right` are the band's two ends (anchors.py). The band is wrapped around a cylinder (finger or
wrist) seen in perspective from the hand's 3D landmarks (z in x's pixel scale, scaled by Z_TRUST):

* The image's centre sits on the back of the finger / wrist (the dorsal normal: the palm plane of wrist, index
  and pinky MCPs, oriented by `handedness`, the subject's own hand). Only the cylinder's half facing the camera is
  drawn (the band's back half is behind the finger); where that half shows the palm side, the band's plain
  underside is drawn (its texture near band_left), on a watch with a clasp bar. The sides are shaded darker.
* The band's ends go to the limb's silhouette (a worn top view), unless size_mm's `band_width` and the image's
  band thickness say the image is longer than FLAT_STRAP x the limb's diameter (a strap laid flat): then it is
  wrapped by arc length with the limb's diameter in mm (`inner_diameter` for a ring, else FINGER_MM; WRIST_MM).
* Hand size (~ wrist -> middle MCP, robust to foreshortening): the largest of wrist -> middle MCP, 1.5 x index
  MCP -> pinky MCP and the middle finger's length. Finger width = FINGER_PER_HAND x hand size x FINGER_WIDTH
  [finger]; wrist width = WRIST_PER_HAND x hand size, seen as an ellipse (thickness 0.7 x width) at the wrist's
  roll. The band is 6 % wider than the limb.
* Ring: `params["finger"]` ("ring" default, "index", "middle", "little"), `params["hand"]` ("Left", "Right",
  "any": the subject's left hand when visible, else the right), `params["position"]` along MCP -> PIP
  (RING_POSITION 0.5: the MCP landmark is the knuckle's centre; a real ring in the sitting photo sits at 0.64).
  The image's up points to the fingertip. Bones of the same hand whose surface is nearer the camera than the
  band's (by OCCLUSION_MARGIN x its radius) hide it.
* Watch: `params["hand"]` (as a ring's). Wrist = hand point 0; forearm direction from the pose elbow when the pose
  wrist is on this hand, else the hand's 9 -> 0 axis; the watch sits WATCH_ABOVE_WRIST x the wrist width towards
  the elbow. The image's up points to the hand on the left wrist and to the elbow on the right one (a watch drawn
  with its crown up, tools/make_catalogue.py, has it towards the hand on the left wrist; the same watch moved to
  the right wrist, seen from above, has it towards the elbow). Without hand landmarks the pose's wrist, elbow,
  index and pinky place it (width 0.2 x elbow -> wrist, back or palm from index / pinky).
* placed: `band_left` / `band_right` = the band's edges across the limb as seen (band_left on the side of the
  image's band_left), `centre` = the band's centre on the limb's axis (between them).

Each renderer returns the frame unchanged with alpha 0 when there is nothing usable (no keypoints, hidden feet,
no hand, a broken item) and never raises (an unexpected error is logged and gives the unchanged frame).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from streams.tryon.catalogue import Item
from streams.tryon.compose import composite, shade, warp_rgba
from streams.tryon.scene import HandView, Rendered, Scene

log = logging.getLogger(__name__)

MIN_VISIBILITY = 0.5

# --- shoes ----------------------------------------------------------------------------------------------------
# BlazePose ankle, heel, foot index and knee of the subject's feet.
FEET: dict[str, tuple[int, int, int, int]] = {"left": (27, 29, 31, 25), "right": (28, 30, 32, 26)}
SHOE_HEEL_BEHIND = 0.12  # heel anchor behind the heel keypoint, fraction of heel -> foot index
SHOE_TOE_BEYOND = 0.25  # toe anchor beyond the foot index, same unit ...
SHOE_TOE_FORESHORTENED = 0.2  # ... plus this x (reference foot - heel -> foot index): toes are not flat
SHOE_SOLE_BELOW = 0.2  # the sole's bottom at least this x the reference foot below the heel -> foot index line
SHOE_ANKLE_ALONG = 0.25  # the item's ankle point: this fraction of the shoe's length from the heel ...
SHOE_ANKLE_COLLAR = 0.8  # ... at this fraction of the collar height there ...
SHOE_ANKLE_HEIGHT = 0.24  # ... but at most this fraction of the length above the heel -> toe line
FOOT_PER_SHIN = 0.45  # heel -> foot index per knee -> ankle, a foot seen side-on (0.44-0.48 on the test photos)
SHOE_HEIGHT_RANGE = (0.85, 1.5)  # height scale / reference scale
SHOE_MAX_SHEAR = 1.2  # |shear| / height scale
SHOE_CLIP_ABOVE_ANKLE = 0.15  # clip line above the ankle, fraction of the (reference) foot length

# --- hands ----------------------------------------------------------------------------------------------------
FINGERS: dict[str, tuple[int, int, int, int]] = {
    "thumb": (1, 2, 3, 4),
    "index": (5, 6, 7, 8),
    "middle": (9, 10, 11, 12),
    "ring": (13, 14, 15, 16),
    "little": (17, 18, 19, 20),
}
FINGER_WIDTH = {"thumb": 1.15, "index": 1.0, "middle": 1.0, "ring": 0.93, "little": 0.82}  # x the base width
# Hand size (~ wrist -> middle MCP, which foreshortening only shrinks): the largest of wrist -> middle MCP,
# HAND_PER_KNUCKLES x index MCP -> pinky MCP and the middle finger's length (MCP -> tip along its bones), in 3D.
HAND_PER_KNUCKLES = 1.5
FINGER_PER_HAND = 0.18  # index / middle finger width per hand size
RING_POSITION = 0.5  # along MCP -> PIP (a real ring in the sitting photo sits at 0.64)
RING_ROOM = 1.06  # band's outer diameter / finger width
FINGER_MM = 18.0
WRIST_PER_HAND = 0.5  # wrist width per hand size
WRIST_THICKNESS = 0.7  # wrist thickness / width
WATCH_ROOM = 1.06
WATCH_ABOVE_WRIST = 0.3  # watch centre from hand point 0 towards the elbow, x wrist width
WRIST_PER_FOREARM = 0.2  # wrist width / elbow -> wrist, when only the pose is known
WRIST_MM = 56.0
# BlazePose wrist, elbow, index and pinky of the subject's arms.
POSE_ARMS: dict[str, tuple[int, int, int, int]] = {"Left": (15, 13, 19, 17), "Right": (16, 14, 20, 18)}
OCCLUSION_MARGIN = 0.25  # an occluding finger must be this much x the band radius nearer the camera
FLAT_STRAP = 1.3  # an image band longer than this x the limb's diameter is a strap laid flat
CLASP_HALF_ANGLE = 0.12  # rad
CLASP_BGR = np.array([150.0, 150.0, 155.0], np.float32)
Z_TRUST = 0.5  # hand z is scaled by this for directions (MediaPipe's z is noisy and exaggerates tilts)
MAX_DZ = 0.95  # |z component| of a band's axis (a finger pointing straight at the camera is clamped)

Capsule = tuple[np.ndarray, np.ndarray, float]  # a finger bone: 3D end points (x px, y px, z px), radius px


# ----------------------------------------------------------------------------------------------------- helpers


def _unchanged(scene: Scene) -> Rendered:
    return Rendered(scene.bgr.copy(), np.zeros(scene.bgr.shape[:2], np.float32), {})


def _rgba(item: Item) -> np.ndarray | None:
    image = np.asarray(item.image)
    if image.ndim != 3 or image.shape[2] != 4 or min(image.shape[:2]) < 2:
        return None
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    return image


def _anchor(item: Item, name: str) -> np.ndarray | None:
    try:
        point = item.anchor(name)
    except (KeyError, TypeError, ValueError):
        return None
    return point if point.shape == (2,) and np.all(np.isfinite(point)) else None


def _unit(v: np.ndarray) -> np.ndarray | None:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-9 and math.isfinite(n) else None


def _perp(v: np.ndarray) -> np.ndarray:
    """v rotated by +90 degrees in image coordinates (x right, y down): (x, y) -> (-y, x)."""
    return np.array([-v[1], v[0]], np.float64)


def _keypoints(scene: Scene) -> np.ndarray | None:
    if scene.keypoints is None:
        return None
    kps = np.asarray(scene.keypoints, np.float64)
    if kps.ndim != 2 or kps.shape[0] < 33 or kps.shape[1] < 2:
        return None
    if kps.shape[1] < 3:  # no visibility: take the points as seen
        kps = np.concatenate([kps, np.ones((kps.shape[0], 1))], axis=1)
    return kps


def _visible(kps: np.ndarray, *indices: int) -> bool:
    return all(np.all(np.isfinite(kps[i, :3])) and kps[i, 2] >= MIN_VISIBILITY for i in indices)


def _roi(points: np.ndarray, width: int, height: int, pad: int = 2) -> tuple[int, int, int, int] | None:
    """Integer box (x0, y0, x1, y1) around points, padded, clipped to the frame; None when outside or empty."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    if not np.all(np.isfinite(pts)):
        return None
    x0 = max(0, math.floor(float(pts[:, 0].min())) - pad)
    y0 = max(0, math.floor(float(pts[:, 1].min())) - pad)
    x1 = min(width, math.ceil(float(pts[:, 0].max())) + pad + 1)
    y1 = min(height, math.ceil(float(pts[:, 1].max())) + pad + 1)
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    return x0, y0, x1, y1


def _reduced(image: np.ndarray, scale: float) -> tuple[np.ndarray, float]:
    """The image shrunk (INTER_AREA) when it will be drawn at under half size, so that sampling does not alias;
    returns it and the factor applied to item coordinates."""
    if scale >= 0.5:
        return image, 1.0
    f = max(2.0 * scale, 2.0 / min(image.shape[:2]))
    w, h = max(2, round(image.shape[1] * f)), max(2, round(image.shape[0] * f))
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA), f


def _blend(out: np.ndarray, alpha: np.ndarray, box: tuple[int, int, int, int], bgr: np.ndarray, a: np.ndarray) -> None:
    """Composite an item patch into `out` in place and accumulate its coverage into `alpha`."""
    x0, y0, x1, y1 = box
    out[y0:y1, x0:x1] = composite(out[y0:y1, x0:x1], bgr, a)
    alpha[y0:y1, x0:x1] = 1.0 - (1.0 - alpha[y0:y1, x0:x1]) * (1.0 - a)


def _safe(scene: Scene, body: Rendered | None) -> Rendered:
    return body if body is not None else _unchanged(scene)


# ------------------------------------------------------------------------------------------------------- shoes


@dataclass(frozen=True)
class _Shoe:
    """The product image read as a shoe: item px, heel -> toe axis e1, e2 towards the upper."""

    image: np.ndarray
    heel: np.ndarray
    toe: np.ndarray
    e1: np.ndarray
    e2: np.ndarray
    length: float
    ankle: tuple[float, float]  # (along e1, along e2) item px from the heel anchor
    sole: float  # how far the opaque part reaches below the heel -> toe line, item px
    corners: np.ndarray  # (4, 2) the opaque part's box, item px


def _shoe_model(item: Item) -> _Shoe | None:
    image = _rgba(item)
    heel, toe = _anchor(item, "heel"), _anchor(item, "toe")
    if image is None or heel is None or toe is None:
        return None
    length = float(np.linalg.norm(toe - heel))
    ys, xs = np.nonzero(image[:, :, 3] > 127)
    if length < 2 or len(xs) < 4:
        return None
    e1 = (toe - heel) / length
    e2 = _perp(e1)
    rel = np.stack([xs, ys], axis=1).astype(np.float64) - heel
    along, up = rel @ e1, rel @ e2
    if up.mean() < 0:
        e2, up = -e2, -up
    near = np.abs(along - SHOE_ANKLE_ALONG * length) <= 0.05 * length
    collar = float(up[near].max()) if near.any() else float(up.max())
    ankle_up = max(0.05 * length, min(SHOE_ANKLE_COLLAR * collar, SHOE_ANKLE_HEIGHT * length))
    corners = np.array(
        [[xs.min(), ys.min()], [xs.max() + 1, ys.min()], [xs.max() + 1, ys.max() + 1], [xs.min(), ys.max() + 1]],
        np.float64,
    )
    sole = max(0.0, float(-up.min()))
    return _Shoe(image, heel, toe, e1, e2, length, (SHOE_ANKLE_ALONG * length, ankle_up), sole, corners)


@dataclass(frozen=True)
class _ShoePlacement:
    matrix: np.ndarray  # 2x3 item px -> frame px
    heel: np.ndarray
    toe: np.ndarray
    clip_point: np.ndarray  # nothing of the shoe on the far side of this line ...
    clip_up: np.ndarray  # ... in this direction (unit)
    scale: float


def _place_shoe(kps: np.ndarray, side: str, shoe: _Shoe) -> _ShoePlacement | None:
    ankle_i, heel_i, index_i, knee_i = FEET[side]
    if not _visible(kps, ankle_i, heel_i, index_i):
        return None
    ankle, heel, index = kps[ankle_i, :2], kps[heel_i, :2], kps[index_i, :2]
    u = index - heel
    foot = float(np.linalg.norm(u))
    if not foot >= 2.0:
        return None
    e1f = u / foot
    shin = float(np.linalg.norm(kps[knee_i, :2] - ankle)) if _visible(kps, knee_i) else 0.0
    reference_foot = max(foot, FOOT_PER_SHIN * shin)
    heel_at = heel - SHOE_HEEL_BEHIND * u
    toe_at = index + (SHOE_TOE_BEYOND * foot + SHOE_TOE_FORESHORTENED * (reference_foot - foot)) * e1f
    s = float(np.linalg.norm(toe_at - heel_at)) / shoe.length
    s_ref = s * reference_foot / foot
    normal = _perp(e1f)
    a2 = float((ankle - heel) @ normal)
    if abs(a2) < 0.1 * foot and abs(normal[1]) > 0.2:  # ankle on the foot line: the upper goes up in the frame
        sign = -1.0 if normal[1] > 0 else 1.0
    else:
        sign = 1.0 if a2 >= 0 else -1.0
    e2f = sign * normal
    drop = max(
        0.0, SHOE_SOLE_BELOW * reference_foot - shoe.sole * s_ref
    )  # keypoints lie inside a shod foot, not on the sole
    heel_at, toe_at = heel_at - drop * e2f, toe_at - drop * e2f
    rel = ankle - heel_at
    a2 = float(rel @ e2f)
    a1, a2 = float(rel @ e1f), max(a2, 0.0)
    ankle_along, ankle_up = shoe.ankle
    g = float(np.clip(a2 / ankle_up, SHOE_HEIGHT_RANGE[0] * s_ref, SHOE_HEIGHT_RANGE[1] * s_ref))
    shear = float(np.clip((a1 - ankle_along * s) / ankle_up, -SHOE_MAX_SHEAR * g, SHOE_MAX_SHEAR * g))
    columns = np.stack([s * e1f, g * e2f + shear * e1f], axis=1)  # frame per (item e1, item e2)
    linear = columns @ np.stack([shoe.e1, shoe.e2])
    matrix = np.concatenate([linear, (heel_at - linear @ shoe.heel)[:, None]], axis=1)
    if _visible(kps, knee_i) and shin > 1.0:
        clip_up = (kps[knee_i, :2] - ankle) / shin
    else:
        clip_up = _unit(g * e2f + shear * e1f)
        if clip_up is None:
            return None
    clip_point = ankle + SHOE_CLIP_ABOVE_ANKLE * reference_foot * clip_up
    return _ShoePlacement(matrix, heel_at, toe_at, clip_point, clip_up, max(s, g))


def _draw_shoe(
    out: np.ndarray, alpha: np.ndarray, shoe: _Shoe, place: _ShoePlacement
) -> tuple[int, int, int, int] | None:
    h, w = out.shape[:2]
    corners = shoe.corners @ place.matrix[:, :2].T + place.matrix[:, 2]
    box = _roi(corners, w, h)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    image, f = _reduced(shoe.image, place.scale)
    matrix = place.matrix.copy()
    matrix[:, :2] /= f
    matrix[:, 2] -= (x0, y0)
    bgr, a = warp_rgba(image, matrix, x1 - x0, y1 - y0)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    above = (xx - place.clip_point[0]) * place.clip_up[0] + (yy - place.clip_point[1]) * place.clip_up[1]
    a = a * np.clip(0.5 - above / 2.0, 0.0, 1.0).astype(np.float32)
    _blend(out, alpha, box, bgr, a)
    return box


def render_shoes(scene: Scene, item: Item) -> Rendered:
    """A shoe on each visible foot (see the module docstring). placed: left_toe, left_heel, right_toe, right_heel
    (the subject's feet) for the feet drawn."""
    try:
        return _safe(scene, _render_shoes(scene, item))
    except Exception:  # a renderer never fails a frame
        log.exception("shoes: rendering failed")
        return _unchanged(scene)


def _render_shoes(scene: Scene, item: Item) -> Rendered | None:
    kps = _keypoints(scene)
    shoe = _shoe_model(item)
    if kps is None or shoe is None:
        return None
    placements = [(side, p) for side in FEET if (p := _place_shoe(kps, side, shoe)) is not None]
    if not placements:
        return None
    placements.sort(key=lambda sp: float(sp[1].heel[1]))  # the lower heel is nearer the camera: drawn last
    out = scene.bgr.copy()
    alpha = np.zeros(out.shape[:2], np.float32)
    placed: dict[str, np.ndarray] = {}
    for side, place in placements:
        if _draw_shoe(out, alpha, shoe, place) is not None:
            placed[f"{side}_toe"] = place.toe.copy()
            placed[f"{side}_heel"] = place.heel.copy()
    return Rendered(out, alpha, placed) if placed else None


# ------------------------------------------------------------------------------------------------ hands: bands


def _hand_points(hand: HandView) -> np.ndarray | None:
    """The hand's (21, 3) points with z scaled by Z_TRUST, None when unusable."""
    points = np.asarray(hand.points, np.float64)
    if points.shape != (21, 3) or not np.all(np.isfinite(points)):
        return None
    return np.asarray(points * np.array([1.0, 1.0, Z_TRUST]), np.float64)


def _pick_hand(hands: Sequence[HandView], wanted: object) -> HandView | None:
    """The hand asked for ("Left" / "Right": the subject's own), or for "any" the left hand, else the right."""
    usable = [h for h in hands if _hand_points(h) is not None and h.handedness in ("Left", "Right")]
    side = str(wanted or "any").strip().capitalize()
    order = [side] if side in ("Left", "Right") else ["Left", "Right"]
    for s in order:
        for h in usable:
            if h.handedness == s:
                return h
    return None


def _dorsal_normal(points: np.ndarray, handedness: str) -> np.ndarray | None:
    """Unit normal of the back of the hand (z + = away from the camera), from wrist, index MCP and pinky MCP.

    (index MCP - wrist) x (pinky MCP - wrist) points out of the palm of a right hand (a right hand held up with
    its palm to the camera has its index on the image right of its pinky) and out of the back of a left one."""
    n = np.cross(points[5] - points[0], points[17] - points[0])
    if handedness == "Right":
        n = -n
    return _unit(n)


def _hand_size(points: np.ndarray) -> float:
    """About wrist -> middle MCP in px, robust to foreshortening (the largest of three measures, see
    HAND_PER_KNUCKLES)."""
    palm = float(np.linalg.norm(points[9] - points[0]))
    knuckles = HAND_PER_KNUCKLES * float(np.linalg.norm(points[5] - points[17]))
    finger = float(sum(np.linalg.norm(points[i + 1] - points[i]) for i in (9, 10, 11)))
    return max(palm, knuckles, finger)


@dataclass(frozen=True)
class _Band:
    """The product image read as a band: item px; across = band_left -> band_right, along = its +90 degree turn
    towards image up for a horizontal band."""

    image: np.ndarray
    centre: np.ndarray
    across: np.ndarray
    along: np.ndarray
    half: float  # half the band's length, item px
    radius: float  # the limb's radius, item px (= half for a worn top view)
    along_range: tuple[float, float]  # the opaque part's extent along `along`, item px from the centre
    plain_u: float  # where along `across` the band is plain (underside texture), item px from the centre


def _band_model(item: Item, limb_mm: float) -> _Band | None:
    image = _rgba(item)
    left, right = _anchor(item, "band_left"), _anchor(item, "band_right")
    if image is None or left is None or right is None:
        return None
    across = _unit(right - left)
    ys, xs = np.nonzero(image[:, :, 3] > 127)
    if across is None or len(xs) < 4:
        return None
    along = np.array([across[1], -across[0]])
    centre = (left + right) / 2.0
    half = float(np.linalg.norm(right - left)) / 2.0
    rel = np.stack([xs, ys], axis=1).astype(np.float64) - centre
    u, v = rel @ across, rel @ along
    radius = half
    width_mm = float(item.size_mm.get("band_width", 0.0) or 0.0)
    if width_mm > 0:
        ends = [np.abs(u - side * 0.85 * half) <= max(1.0, 0.01 * half) for side in (-1, 1)]
        thickness = [float(v[e].max() - v[e].min() + 1.0) for e in ends if e.any()]
        if thickness:
            px_per_mm = float(np.mean(thickness)) / width_mm
            if 2.0 * half / px_per_mm > FLAT_STRAP * limb_mm:
                radius = limb_mm / 2.0 * px_per_mm
    return _Band(image, centre, across, along, half, radius, (float(v.min()), float(v.max()) + 1.0), -0.85 * half)


@dataclass(frozen=True)
class _Cylinder:
    """Where the band goes: a cylinder around a finger or wrist, frame px (z in x's scale, + away)."""

    centre: np.ndarray  # (3,)
    axis: np.ndarray  # (3,) unit: the item's `along` direction
    dorsal: np.ndarray  # (3,) unit, perpendicular to axis: where the item's top-view centre faces
    radius: float  # frame px
    clasp: bool = False


def _axis3(direction: np.ndarray, dz: float) -> np.ndarray | None:
    """A 3D unit axis from a 2D image direction and the z component wanted, clamped to MAX_DZ."""
    d2 = _unit(np.asarray(direction[:2], np.float64))
    if d2 is None or not math.isfinite(dz):
        return None
    dz = float(np.clip(dz, -MAX_DZ, MAX_DZ))
    return np.array([d2[0] * math.sqrt(1 - dz * dz), d2[1] * math.sqrt(1 - dz * dz), dz])


def _orthogonal(dorsal: np.ndarray | None, axis: np.ndarray) -> np.ndarray:
    """`dorsal` made perpendicular to axis; facing the camera when unknown or along the axis."""
    if dorsal is not None:
        d = _unit(dorsal - (dorsal @ axis) * axis)
        if d is not None:
            return d
    toward = np.array([0.0, 0.0, -1.0])
    d = _unit(toward - (toward @ axis) * axis)
    return d if d is not None else np.array([1.0, 0.0, 0.0])


def _occlusion(xx: np.ndarray, yy: np.ndarray, depth: np.ndarray, occluders: Sequence[Capsule]) -> np.ndarray:
    """Coverage (0..1) of capsules (3D segment, radius px) whose surface is nearer the camera than `depth`."""
    hidden = np.zeros(xx.shape, np.float32)
    for p, q, rad in occluders:
        d = q[:2] - p[:2]
        dd = float(d @ d)
        t = np.zeros(xx.shape) if dd < 1e-9 else np.clip(((xx - p[0]) * d[0] + (yy - p[1]) * d[1]) / dd, 0.0, 1.0)
        dist = np.hypot(xx - (p[0] + t * d[0]), yy - (p[1] + t * d[1]))
        cover = np.clip(rad - dist + 0.5, 0.0, 1.0)
        z = p[2] + t * (q[2] - p[2]) - np.sqrt(np.maximum(rad * rad - dist * dist, 0.0))
        hidden = np.maximum(hidden, np.where(z < depth, cover, 0.0).astype(np.float32))
    return hidden


def _draw_band(
    out: np.ndarray,
    alpha: np.ndarray,
    band: _Band,
    cyl: _Cylinder,
    occluders: Sequence[Capsule],
    shading: float = 0.25,
) -> dict[str, np.ndarray] | None:
    """Wrap the band around the cylinder's camera-facing half; returns the anchors placed, None if off-frame."""
    h, w = out.shape[:2]
    r = cyl.radius
    k = r / band.radius  # frame px per item px
    d = cyl.axis
    dz = float(d[2])
    c = math.hypot(float(d[0]), float(d[1]))
    if not (r > 0.5 and c > 1e-6 and math.isfinite(k)):
        return None
    a2 = d[:2] / c  # the axis in the image
    n2 = np.array([-a2[1], a2[0]])  # lateral, in the image (= N = d x Z')
    z_toward = np.array([a2[0] * dz, a2[1] * dz, -c])  # Z': perpendicular to d, towards the camera
    cos_phi = float(cyl.dorsal @ z_toward)
    sin_phi = float(cyl.dorsal[:2] @ n2)
    phi = math.atan2(sin_phi, cos_phi)
    s0, s1 = band.along_range[0] * k, band.along_range[1] * k
    cx, cy = float(cyl.centre[0]), float(cyl.centre[1])
    extent = [
        (
            cx + lat * r * n2[0] + (s * c + front * r * dz) * a2[0],
            cy + lat * r * n2[1] + (s * c + front * r * dz) * a2[1],
        )
        for lat in (-1, 1)
        for s in (s0, s1)
        for front in (0, 1)
    ]
    box = _roi(np.array(extent), w, h)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    rel_x, rel_y = xx - cx, yy - cy
    lateral = rel_x * n2[0] + rel_y * n2[1]
    sin_t = np.clip(lateral / r, -1.0, 1.0)
    cos_t = np.sqrt(1.0 - sin_t * sin_t)
    s = (rel_x * a2[0] + rel_y * a2[1] - r * cos_t * dz) / c
    angle = np.arctan2(sin_t, cos_t) - phi
    angle = (angle + math.pi) % (2 * math.pi) - math.pi  # around the cylinder from the dorsal side
    if band.radius < band.half * 0.999:  # a strap laid flat: wrapped by arc length
        u = band.radius * angle
        on_item = np.abs(u) <= band.half
    else:  # a worn top view: orthographic from above the dorsal side
        u = band.radius * np.sin(angle)
        on_item = np.abs(angle) <= math.pi / 2
    u = np.where(on_item, u, np.where(angle < 0, band.plain_u, -band.plain_u))
    v = s / k
    image, f = _reduced(band.image, k)
    map_x = (band.centre[0] + u * band.across[0] + v * band.along[0]) * f
    map_y = (band.centre[1] + u * band.across[1] + v * band.along[1]) * f
    rgba = image.astype(np.float32)
    a_item = rgba[:, :, 3:4] / 255.0
    premultiplied = np.concatenate([rgba[:, :, 2::-1] * a_item, a_item], axis=2)
    sampled = cv2.remap(
        premultiplied,
        map_x.astype(np.float32),
        map_y.astype(np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0.0, 0.0, 0.0, 0.0),
    )
    a = sampled[:, :, 3]
    bgr = sampled[:, :, :3] / np.maximum(a, 1e-6)[:, :, None]
    if cyl.clasp:
        bar = (~on_item) & (np.abs(np.abs(angle) - math.pi) < CLASP_HALF_ANGLE)
        bgr[bar] = CLASP_BGR
    edge = np.clip((r - np.abs(lateral)) + 0.5, 0.0, 1.0)  # anti-aliased silhouette
    a = a * edge.astype(np.float32)
    bgr = bgr * (0.75 + 0.25 * cos_t)[:, :, None].astype(np.float32)  # rounder: the sides are darker
    depth = cyl.centre[2] + s * dz - r * c * cos_t - OCCLUSION_MARGIN * r
    a = a * (1.0 - _occlusion(xx, yy, depth, occluders))
    a = np.clip(a, 0.0, 1.0).astype(np.float32)
    if shading > 0 and float(a.max()) > 0.5:
        bgr = shade(bgr, out[y0:y1, x0:x1], a, shading)
    _blend(out, alpha, box, np.clip(bgr, 0, 255).astype(np.float32), a)
    # The band's edges across the limb as seen (its silhouette), band_left on the side of the item's band_left.
    side = 1.0 if float(np.cross(cyl.axis, cyl.dorsal)[:2] @ n2) >= 0 else -1.0
    centre = np.array([cx, cy])
    return {"band_left": centre - side * r * n2, "band_right": centre + side * r * n2, "centre": centre}


def _finger_occluders(points: np.ndarray, base_width: float, skip: tuple[int, int]) -> list[Capsule]:
    occluders: list[Capsule] = []
    for name, joints in FINGERS.items():
        rad = 0.5 * base_width * FINGER_WIDTH[name]
        for i in range(3):
            bone = (joints[i], joints[i + 1])
            if bone != skip:
                occluders.append((points[bone[0]], points[bone[1]], rad))
    return occluders


def render_ring(scene: Scene, item: Item) -> Rendered:
    """A ring on one finger (see the module docstring). placed: band_left, band_right, centre."""
    try:
        return _safe(scene, _render_ring(scene, item))
    except Exception:  # a renderer never fails a frame
        log.exception("ring: rendering failed")
        return _unchanged(scene)


def _render_ring(scene: Scene, item: Item) -> Rendered | None:
    params = item.params or {}
    finger = str(params.get("finger", "ring")).strip().lower()
    finger = {"pinky": "little", "pinkie": "little"}.get(finger, finger)
    if finger not in FINGERS or finger == "thumb":
        finger = "ring"
    hand = _pick_hand(scene.hands, params.get("hand", "any"))
    inner = item.size_mm.get("inner_diameter") if isinstance(item.size_mm, dict) else None
    finger_mm = float(inner) if isinstance(inner, int | float) and 5.0 < float(inner) < 40.0 else FINGER_MM
    band = _band_model(item, finger_mm)
    if hand is None or band is None:
        return None
    points = _hand_points(hand)
    if points is None:
        return None
    try:
        position = float(params.get("position", RING_POSITION))
    except (TypeError, ValueError):
        position = RING_POSITION
    position = float(np.clip(position, 0.0, 1.0)) if math.isfinite(position) else RING_POSITION
    mcp, pip = FINGERS[finger][0], FINGERS[finger][1]
    bone = points[pip] - points[mcp]
    length = float(np.linalg.norm(bone))
    if not length > 1.0:
        return None
    base = FINGER_PER_HAND * _hand_size(points)
    width = base * FINGER_WIDTH[finger]
    axis = _axis3(bone[:2] if np.linalg.norm(bone[:2]) > 1e-6 else np.array([0.0, -1.0]), float(bone[2]) / length)
    if axis is None or not width > 0:
        return None
    centre = points[mcp] + position * bone
    cyl = _Cylinder(centre, axis, _orthogonal(_dorsal_normal(points, hand.handedness), axis), 0.5 * width * RING_ROOM)
    out = scene.bgr.copy()
    alpha = np.zeros(out.shape[:2], np.float32)
    placed = _draw_band(out, alpha, band, cyl, _finger_occluders(points, base, (mcp, pip)))
    return None if placed is None else Rendered(out, alpha, placed)


# ------------------------------------------------------------------------------------------------------ watches


def _pose_arm(kps: np.ndarray | None, side: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Pose wrist and elbow (x, y) of the subject's side, both visible."""
    if kps is None:
        return None
    wrist, elbow = POSE_ARMS[side][:2]
    if not _visible(kps, wrist, elbow):
        return None
    return kps[wrist, :2], kps[elbow, :2]


def _watch_from_hand(kps: np.ndarray | None, hand: HandView, points: np.ndarray) -> _Cylinder | None:
    palm = float(np.linalg.norm(points[9] - points[0]))
    if not palm > 1.0:
        return None
    towards_arm = points[0] - points[9]
    forearm2 = towards_arm[:2]
    arm = _pose_arm(kps, hand.handedness)
    if arm is not None and float(np.linalg.norm(arm[0] - points[0, :2])) < palm:
        forearm2 = arm[1] - arm[0]
    dz = 0.5 * float(towards_arm[2]) / palm
    forearm = _axis3(forearm2, dz)
    if forearm is None:
        return None
    wrist_width = WRIST_PER_HAND * _hand_size(points)
    axis = -forearm if hand.handedness == "Left" else forearm  # the item's up: to the hand on the left wrist
    dorsal = _orthogonal(_dorsal_normal(points, hand.handedness), axis)
    radius = 0.5 * WATCH_ROOM * _visible_width(wrist_width, dorsal, axis)
    centre = points[0] + WATCH_ABOVE_WRIST * wrist_width * forearm
    return _Cylinder(centre, axis, dorsal, radius, clasp=True)


def _visible_width(width: float, dorsal: np.ndarray, axis: np.ndarray) -> float:
    """Width of an elliptical limb (width x WRIST_THICKNESS width, thickness along `dorsal`) across the image."""
    lateral = np.array([-axis[1], axis[0], 0.0])
    lateral = lateral / max(1e-9, float(np.linalg.norm(lateral)))
    sin_phi = abs(float(dorsal @ lateral))
    cos_phi = math.sqrt(max(0.0, 1.0 - sin_phi * sin_phi))
    return width * math.hypot(cos_phi, WRIST_THICKNESS * sin_phi)


def _watch_from_pose(kps: np.ndarray, side: str) -> _Cylinder | None:
    arm = _pose_arm(kps, side)
    if arm is None:
        return None
    wrist, elbow = arm
    forearm_len = float(np.linalg.norm(elbow - wrist))
    forearm = _axis3(elbow - wrist, 0.0)
    if forearm is None or forearm_len < 2.0:
        return None
    _, _, index_i, pinky_i = POSE_ARMS[side]
    wrist_width = WRIST_PER_FOREARM * forearm_len
    dorsal: np.ndarray | None = None
    if _visible(kps, index_i, pinky_i):
        v1, v2 = kps[index_i, :2] - wrist, kps[pinky_i, :2] - wrist
        wrist_width = max(wrist_width, 0.9 * float(np.linalg.norm(v1 - v2)))
        cross = float(v1[0] * v2[1] - v1[1] * v2[0]) * (1.0 if side == "Left" else -1.0)  # see _dorsal_normal
        if abs(cross) > 1e-6:
            dorsal = np.array([0.0, 0.0, 1.0 if cross > 0 else -1.0])
    axis = -forearm if side == "Left" else forearm
    dorsal_axis = _orthogonal(dorsal, axis)
    centre = np.array([wrist[0], wrist[1], 0.0]) + WATCH_ABOVE_WRIST * wrist_width * forearm
    radius = 0.5 * WATCH_ROOM * _visible_width(wrist_width, dorsal_axis, axis)
    return _Cylinder(centre, axis, dorsal_axis, radius, clasp=True)


def render_watch(scene: Scene, item: Item) -> Rendered:
    """A watch on one wrist (see the module docstring). placed: band_left, band_right, centre."""
    try:
        return _safe(scene, _render_watch(scene, item))
    except Exception:  # a renderer never fails a frame
        log.exception("watch: rendering failed")
        return _unchanged(scene)


def _render_watch(scene: Scene, item: Item) -> Rendered | None:
    params = item.params or {}
    band = _band_model(item, WRIST_MM)
    if band is None:
        return None
    kps = _keypoints(scene)
    wanted = params.get("hand", "any")
    hand = _pick_hand(scene.hands, wanted)
    cyl: _Cylinder | None = None
    occluders: list[Capsule] = []
    if hand is not None:
        points = _hand_points(hand)
        if points is not None:
            cyl = _watch_from_hand(kps, hand, points)
            occluders = _finger_occluders(points, FINGER_PER_HAND * _hand_size(points), (-1, -1))
    if cyl is None and kps is not None:
        side = str(wanted or "any").strip().capitalize()
        for s in [side] if side in POSE_ARMS else list(POSE_ARMS):
            if (cyl := _watch_from_pose(kps, s)) is not None:
                break
    if cyl is None:
        return None
    out = scene.bgr.copy()
    alpha = np.zeros(out.shape[:2], np.float32)
    placed = _draw_band(out, alpha, band, cyl, occluders)
    return None if placed is None else Rendered(out, alpha, placed)
