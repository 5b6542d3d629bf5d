"""Tops and dresses on a shopper: the item's anchors warped onto the BlazePose body, sleeves following the upper
arms, arms and hands in front of the body hiding the garment, clipped to the person's outline, lit by the frame.

Placement depends only on the frame's keypoints (already smoothed by perception): no state, no randomness, so a
still pose gives the same pixels every frame and a 1 px keypoint step moves the anchors by about 1 px (a dress's
hem, two torso lengths down, by up to ~1.7 px).

* **Garment frame** (per item, cached): origin at the midpoint of the item's shoulder anchors, x along
  right_shoulder -> left_shoulder in units of the item's shoulder width g (shoulders at x = -0.5 and +0.5), y
  perpendicular, towards the hem. Each sleeve is cut off the torso along its armhole: the line from the shoulder
  anchor to the armpit (the deepest concavity of the outline beside the torso) and the sleeve's underside from
  there. An item whose sleeve anchor is within MIN_SLEEVE g of its shoulder anchor (a strap dress: put its sleeve
  anchors on its shoulder anchors) has no sleeves.
* **Torso**: garment (x, y) -> frame. The shoulder line goes onto the BlazePose shoulders (11 left, 12 right),
  SHOULDER_OUT of the shoulder width further out (the keypoints are joint centres); the hem line onto the hips
  (23, 24) extended down the torso's axis: a top's hem TOP_HEM torso lengths below the shoulders (its own length
  over TORSO_RATIO, clamped: always a bit below the hips), a dress's by its own proportions (at least DRESS_HEM).
  Across, the garment follows the shoulder line at the top, narrows by WRAP below it (a flat garment wraps round
  the body) and lies square to the torso's axis at the hips, a little wider for wider hips (HIP_FOLLOW). The
  neckline is lifted to the neck (shoulder midpoint moved NECK_RAISE of the way to the nose) by a smooth bump that
  is zero at the shoulders; a deep neckline (collar anchor well below the shoulder line) is not lifted. The map is
  sampled at ~60 garment points, inverted as a thin-plate spline (frame px -> item px) sampled every TPS_STRIDE px
  on a frame-aligned grid, and read with cv2.remap.
* **Sleeves**: a sleeve is a tube from the middle of its armhole to the sleeve anchor. Each is warped on its own,
  by a similarity about the shoulder (mirrored with the torso in a back view): the tube's axis is laid along the
  upper arm (shoulder -> elbow, 13/14) from the placed shoulder, with the item's own sleeve length in body units,
  so a short sleeve ends part-way down the upper arm and a raised arm turns its sleeve without touching the
  torso; across the arm it is SLEEVE_WRAP narrower than flat (at most SLEEVE_WIDTH at the armhole). Sleeves shot
  hanging down over the body (the cut is not on the garment's side or holds over MAX_SLEEVE_SHARE of it) are
  not cut off: the item is worn with its sleeves as photographed. As an arm rises the torso also shows the sleeve's
  gusset (the strip along the lower armhole), so no hole opens at the armpit. A sleeve is drawn over the torso,
  under it when its elbow is not visible (an arm behind the body). Sleeves do not bend at the elbow.
* **Occlusion**: arm capsules (upper arm from ARM_START of the way down, forearm, hand = hull of wrist, pinky,
  index, thumb), radii from the shoulder width, only for segments whose keypoints are visible (a hand behind the
  back is not in front), intersected with the person mask. Both arms hide the torso; a sleeve is hidden by the
  other arm and its own hand, never by its own arm. Scene keypoints carry no z, so visibility is the depth cue.
* **Clip** to the person mask grown by MASK_GROW of the shoulder width (a dress's skirt below the hips is not
  clipped: it hangs away from the legs). Then feathered (compose.feather), shaded (compose.shade) with the
  frame's luminance blurred by SHADE_BLUR, its ratio to the mean compressed (SHADE_GAMMA) and clipped
  (SHADE_RANGE), so folds and shadows show through but the old clothes' print and a white shirt under a dark
  suit do not, flat off the person and on a skirt), and composited (compose.composite).
* **Back view** (keypoint 11 on the image left of 12): placed by the same rules, so the garment comes out
  mirrored: its left sleeve on the wearer's left arm, its front picture seen mirrored (there is no back image).
* **Hips out of view** (an upper-body webcam shot): hips the model predicts outside the frame are used when the
  torso they give is plausible, else hips are estimated below the shoulders (TORSO_RATIO, HIP_RATIO).
* **Nothing to wear it on** (no keypoints, non-finite shoulders, visibility < MIN_VISIBILITY on a shoulder, an
  item that is not a top or dress or lacks anchors, a body off the frame): the frame unchanged with alpha 0; never
  raises.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np

from streams.tryon import compose
from streams.tryon.catalogue import ANCHORS, Item
from streams.tryon.scene import Rendered, Scene

CATEGORIES = ("top", "dress")

NOSE = 0
L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = 11, 12, 13, 14, 15, 16
L_PINKY, R_PINKY, L_INDEX, R_INDEX, L_THUMB, R_THUMB = 17, 18, 19, 20, 21, 22
L_HIP, R_HIP = 23, 24
# side -> (shoulder, elbow, wrist, pinky, index, thumb); "left"/"right" are the subject's own sides
ARM = {
    "left": (L_SHOULDER, L_ELBOW, L_WRIST, L_PINKY, L_INDEX, L_THUMB),
    "right": (R_SHOULDER, R_ELBOW, R_WRIST, R_PINKY, R_INDEX, R_THUMB),
}
SIDES = ("left", "right")

MIN_VISIBILITY = 0.5  # shoulders and hips below this: nothing to put the garment on
SHOULDER_OUT = 0.04  # placed shoulder anchors: this fraction of the shoulder width outside the joint centres
NECK_RAISE = 0.22  # neck = shoulder midpoint moved this fraction of the way to the nose
NECK_MAX = 0.2  # ... but at most this many shoulder widths
CREW_DEPTH = 0.05  # a crew neck's collar anchor sits this far (garment units) below the shoulder line
DEEP_NECK = 0.3  # the neck lift fades out for collar anchors this much deeper than a crew neck
TORSO_RATIO = 1.45  # shoulder-to-hip distance / shoulder width, frontal adults (measured on the sample people)
HIP_RATIO = 0.6  # hip width / shoulder width, same
HIP_FOLLOW = 0.3  # the garment's width at the hips follows the body's hip width (relative to HIP_RATIO) this much
HIP_SCALE = (0.9, 1.15)  # ... within these factors
MIN_WIDTH = 0.6  # near side views the body is at least this fraction of a frontal width (torso length / ratio)
WRAP = 0.82  # below the shoulders a flat garment is narrower on the body (it wraps round it) by this factor ...
WRAP_DEPTH = 0.3  # ... reached this many torso lengths below the shoulder line (smoothly)
TOP_HEM = (1.05, 1.3)  # a top's hem, in torso lengths below the shoulder line
DRESS_HEM = 1.3  # a dress's hem is at least this far down
GUSSET = 0.12  # garment units of the sleeve next to the armhole that the torso also shows when the arm rises
SLEEVE_WRAP = 0.7  # a sleeve on an arm is this much narrower than flat (it wraps round the arm) ...
SLEEVE_WIDTH = 0.34  # ... and at most this wide (garment units) at its armhole (cartoon sleeves are huge)
MAX_SLEEVE_SHARE = 0.2  # a "sleeve" cut holding more of the item than this is not one (sleeves shot hanging down)
MIN_SLEEVE = 0.1  # garment units: a shorter shoulder -> sleeve-end distance means no sleeve
UPPER_ARM_RADIUS = 0.13  # occluder radii, in shoulder widths
FOREARM_RADIUS = 0.1
HAND_RADIUS = 0.07
ARM_START = 0.3  # the upper-arm occluder starts this fraction of the way from shoulder to elbow
MASK_GROW = 0.03  # clip to the person mask grown by this many shoulder widths (at least 2 px)
FEATHER = 0.012  # edge feather radius, shoulder widths (at least 1 px)
SHADE_STRENGTH = 0.7
SHADE_GAMMA = 0.5  # the person's luminance ratio is compressed (ratio ** gamma): the old clothes' own light and
# dark parts (a white shirt under a dark suit) would otherwise show through as a ghost
SHADE_RANGE = (0.75, 1.1)  # ... and clipped: shadows darken, a bright patch underneath barely lightens
SHADE_BLUR = 0.04  # the frame's luminance is blurred over this many shoulder widths before shading
TPS_STRIDE = 8  # px between thin-plate-spline samples (bilinear in between)
TPS_REGULARISATION = 1e-6
GRID = (7, 9)  # torso control points across, down

ANCHOR_NAMES = ANCHORS["top"]


@dataclass(frozen=True)
class _Sleeve:
    premultiplied: np.ndarray  # (h, w, 4) float32: BGR * a, a of the sleeve alone, cropped to its box ...
    corner: np.ndarray  # (2,) ... whose top-left corner is here in item px
    gusset: np.ndarray  # same, of its gusset (see _sleeve_mask), added to the torso as the arm rises
    pivot: np.ndarray  # (2,) garment units: where the sleeve's tube axis passes the shoulder (goes on the joint)
    axis: np.ndarray  # (2,) garment units: pivot -> sleeve anchor
    wrap: float  # across the arm, the sleeve is this fraction of its flat width (SLEEVE_WRAP, SLEEVE_WIDTH)


@dataclass(frozen=True)
class _Garment:
    """An item analysed once: its garment frame, the torso and sleeves cut apart, premultiplied."""

    origin: np.ndarray  # (2,) item px of the shoulder midpoint
    basis: np.ndarray  # (2, 2) item px per garment unit, columns x, y
    torso: np.ndarray  # (h, w, 4) float32 premultiplied BGR * a, a
    sleeves: dict[str, _Sleeve]  # side -> sleeve; empty for a sleeveless item
    anchors: dict[str, np.ndarray]  # name -> (2,) garment units
    hem_y: float  # garment units, mean of the hem anchors
    grid: np.ndarray  # (N, 2) garment units: torso control points (anchors included)

    def to_item(self, q: np.ndarray) -> np.ndarray:
        return np.asarray(self.origin + q @ self.basis.T, np.float64)


@dataclass(frozen=True)
class _Body:
    """The shopper's torso in frame px (see the module docstring)."""

    mid: np.ndarray  # shoulder midpoint
    across: np.ndarray  # frame px per garment x unit at the shoulder line (includes SHOULDER_OUT)
    across_hip: np.ndarray  # same at the hip line
    torso: np.ndarray  # shoulder midpoint -> hip midpoint
    neck: np.ndarray
    width: float  # shoulder width used for scales (px)
    handedness: float  # +1 front view, -1 back view (the map from garment to frame is mirrored)
    keypoints: np.ndarray  # (33, 4)


def render_garment(scene: Scene, item: Item) -> Rendered:
    """The frame with the top or dress on; the frame unchanged (alpha 0) when there is nothing to put it on."""
    frame = scene.bgr
    height, width = frame.shape[:2]
    unchanged = Rendered(frame, np.zeros((height, width), np.float32))
    garment = _prepare(item)
    body = _body(scene.keypoints)
    if garment is None or body is None:
        return unchanged
    try:
        return _render(scene, item, garment, body)
    except (np.linalg.LinAlgError, cv2.error):  # degenerate geometry (e.g. all points on a line)
        return unchanged


def place_garment(keypoints: np.ndarray | None, item: Item) -> dict[str, np.ndarray]:
    """Where the item's anchors go in the frame for these keypoints (empty when it cannot be placed)."""
    garment = _prepare(item)
    body = _body(keypoints)
    if garment is None or body is None:
        return {}
    return _placed(garment, body, item.category)


# ---------------------------------------------------------------------------------------------------------------
# The item


_CACHE: OrderedDict[tuple[object, ...], _Garment | None] = OrderedDict()
_CACHE_SIZE = 32


def _prepare(item: Item) -> _Garment | None:
    image = np.asarray(item.image)
    if item.category not in CATEGORIES or image.ndim != 3 or image.shape[2] != 4 or min(image.shape[:2]) < 4:
        return None
    if any(name not in item.anchors for name in ANCHOR_NAMES):
        return None
    anchors = {name: np.asarray(item.anchors[name], np.float64).reshape(-1)[:2] for name in ANCHOR_NAMES}
    if not all(np.isfinite(a).all() for a in anchors.values()):
        return None
    sample = np.ascontiguousarray(image[:: max(1, image.shape[0] // 64), :: max(1, image.shape[1] // 64)])
    key = (
        item.id,
        item.category,
        image.shape,
        tuple(round(float(v), 3) for a in anchors.values() for v in a),
        hashlib.blake2b(sample.tobytes(), digest_size=8).hexdigest(),
    )
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    garment = _analyse(image, anchors)
    _CACHE[key] = garment
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return garment


def _analyse(rgba: np.ndarray, anchors: dict[str, np.ndarray]) -> _Garment | None:
    left, right = anchors["left_shoulder"], anchors["right_shoulder"]
    across = left - right
    g = float(np.hypot(*across))
    if g < 2.0:
        return None
    ex = across / g
    down = (anchors["left_hem"] + anchors["right_hem"]) / 2 - (left + right) / 2
    ey = np.array([-ex[1], ex[0]])
    if float(ey @ down) < 0:
        ey = -ey
    origin = (left + right) / 2
    basis = np.stack([ex * g, ey * g], axis=1)
    inverse = np.linalg.inv(basis)
    q_anchor = {name: inverse @ (p - origin) for name, p in anchors.items()}
    hem_y = float((q_anchor["left_hem"][1] + q_anchor["right_hem"][1]) / 2)
    if hem_y < 0.2:
        return None

    h, w = rgba.shape[:2]
    alpha = rgba[:, :, 3].astype(np.float32) / 255.0
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    q = np.stack([xs - origin[0], ys - origin[1]], axis=-1) @ inverse.T  # (h, w, 2) garment units

    sleeve_masks: dict[str, np.ndarray] = {}
    gussets: dict[str, np.ndarray] = {}
    pivots: dict[str, np.ndarray] = {}
    fits: dict[str, float] = {}
    armpits = _armpits(alpha, origin, inverse, hem_y)
    for side in SIDES:
        shoulder, end = q_anchor[f"{side}_shoulder"], q_anchor[f"{side}_sleeve"]
        axis = end - shoulder
        if float(np.hypot(*axis)) < MIN_SLEEVE:
            continue
        cut = _sleeve_mask(alpha, q, shoulder, end, armpits[side])
        pivot = _sleeve_pivot(shoulder, end, armpits[side])
        if cut is None or pivot is None:
            continue
        # a sleeve lies on its own side of the garment and is a small part of it; otherwise (sleeves hanging
        # down over the body in the photo) the cut is not a sleeve: the item is worn with its sleeves as shot
        mask, gusset = cut
        outer = (q[:, :, 0] * np.sign(shoulder[0]) > 0.2) | (mask < 0.5)
        if outer.all() and float((mask * alpha).sum()) < MAX_SLEEVE_SHARE * float(alpha.sum()):
            sleeve_masks[side], gussets[side] = mask, gusset
            pivots[side] = pivot
            fits[side] = min(SLEEVE_WRAP, SLEEVE_WIDTH / max(float(np.hypot(*(armpits[side] - shoulder))), 1e-6))
    sleeve_total = sum(sleeve_masks.values(), np.zeros((h, w), np.float32))
    torso_weight = np.clip(1.0 - sleeve_total, 0.0, 1.0)

    premultiplied = _premultiply(rgba)
    torso = premultiplied * torso_weight[:, :, None]
    sleeves = {
        side: _Sleeve(
            *_crop(np.asarray(premultiplied * m[:, :, None], np.float32)),
            np.asarray(premultiplied * gussets[side][:, :, None], np.float32),
            pivots[side],
            q_anchor[f"{side}_sleeve"] - pivots[side],
            fits[side],
        )
        for side, m in sleeve_masks.items()
    }
    torso_alpha = alpha * torso_weight
    grid = _control_points(torso_alpha, q, q_anchor)
    return _Garment(origin, basis, np.asarray(torso, np.float32), sleeves, q_anchor, hem_y, grid)


def _crop(layer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A premultiplied layer cropped to its non-transparent box (1 px margin), and the box's corner."""
    ys, xs = np.nonzero(layer[:, :, 3] > 0)
    if len(xs) == 0:
        return layer[:1, :1].copy(), np.zeros(2)
    x0, y0 = max(0, int(xs.min()) - 1), max(0, int(ys.min()) - 1)
    x1, y1 = min(layer.shape[1], int(xs.max()) + 2), min(layer.shape[0], int(ys.max()) + 2)
    return np.ascontiguousarray(layer[y0:y1, x0:x1]), np.array([x0, y0], np.float64)


def _premultiply(rgba: np.ndarray) -> np.ndarray:
    rgba = rgba.astype(np.float32)
    a = rgba[:, :, 3:4] / 255.0
    return np.concatenate([rgba[:, :, 2::-1] * a, a], axis=2)  # BGR * a, a


def _armpits(alpha: np.ndarray, origin: np.ndarray, inverse: np.ndarray, hem_y: float) -> dict[str, np.ndarray]:
    """Each side's armpit in garment units: the deepest concavity of the item's outline beside the torso between
    the shoulder line and 80 % of the way to the hem; (+-0.5, 0.35) when there is none."""
    found = {"left": np.array([0.5, 0.35]), "right": np.array([-0.5, 0.35])}
    binary = (alpha > 0.5).astype(np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return found
    contour = max(contours, key=cv2.contourArea)
    if len(contour) < 8:
        return found
    hull = cv2.convexHull(contour, returnPoints=False)
    try:
        defects = cv2.convexityDefects(contour, hull)
    except cv2.error:  # self-intersecting hull order on odd outlines
        return found
    if defects is None:
        return found
    best = {"left": 0.0, "right": 0.0}
    for _, _, far, depth in np.asarray(defects).reshape(-1, 4):
        point = inverse @ (contour[far, 0].astype(np.float64) - origin)
        if not (0.02 < point[1] < 0.8 * hem_y) or abs(point[0]) < 0.25:
            continue
        side = "left" if point[0] > 0 else "right"
        if depth > best[side]:
            best[side] = float(depth)
            found[side] = point
    return found


def _sleeve_pivot(shoulder: np.ndarray, end: np.ndarray, armpit: np.ndarray) -> np.ndarray | None:
    """The sleeve is a tube whose axis runs from the armhole's middle to the sleeve anchor; the pivot is the point
    of that axis level with the shoulder anchor (the foot of the perpendicular from it), which goes on the
    shoulder joint so that the tube lies along the arm. None when the tube is too short to be a sleeve."""
    middle = (shoulder + armpit) / 2
    tube = end - middle
    length = float(np.hypot(*tube))
    if length < 1e-6:
        return None
    unit = tube / length
    pivot = middle + float((shoulder - middle) @ unit) * unit
    if float(np.hypot(*(end - pivot))) < MIN_SLEEVE / 2:
        return None
    return np.asarray(pivot, np.float64)


def _sleeve_mask(
    alpha: np.ndarray, q: np.ndarray, shoulder: np.ndarray, end: np.ndarray, armpit: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """The sleeve's share of the item's pixels: beyond the armhole line (shoulder -> armpit) on the sleeve's side,
    above the sleeve's underside (the line through the armpit along the sleeve's axis); the part connected to the
    sleeve anchor; edges softened over ~1 px. Also its gusset: the band of the sleeve within GUSSET of the lower
    half of the armhole, which the torso shows too (under the sleeve) when the arm rises, so that a raised arm
    opens no hole at the armpit."""

    def side_of(a: np.ndarray, b: np.ndarray, p: np.ndarray) -> np.ndarray:
        d = b - a
        return np.asarray(d[0] * (p[..., 1] - a[1]) - d[1] * (p[..., 0] - a[0]))

    axis = end - shoulder
    armhole = armpit - shoulder
    armhole_length = float(np.hypot(*armhole))
    if armhole_length < 1e-3:
        return None
    outward = float(np.sign(side_of(shoulder, armpit, end)))
    if outward == 0.0:
        return None
    beyond = side_of(shoulder, armpit, q) * outward / armhole_length  # garment units past the armhole
    unit = axis / float(np.hypot(*axis))
    upper = float(np.sign(side_of(armpit, armpit + unit, shoulder))) or 1.0
    above = side_of(armpit, armpit + unit, q) * upper > -0.03
    binary = ((alpha > 0.02) & (beyond > 0) & above).astype(np.uint8)
    count, labels = cv2.connectedComponents(binary, connectivity=8)
    if count < 2:
        return None
    # the component holding the sleeve anchor, else the one nearest to it
    ys, xs = np.nonzero(binary)
    nearest = int(np.argmin(np.hypot(q[ys, xs, 0] - end[0], q[ys, xs, 1] - end[1])))
    mask = (labels == labels[ys[nearest], xs[nearest]]).astype(np.float32)
    mask = np.asarray(np.minimum(cv2.GaussianBlur(mask, (3, 3), 0.7), 1.0), np.float32)
    down_armhole = ((q[..., 0] - shoulder[0]) * armhole[0] + (q[..., 1] - shoulder[1]) * armhole[1]) / armhole_length**2
    band = np.clip(1.0 - beyond / GUSSET, 0.0, 1.0) * np.clip((down_armhole - 0.4) / 0.4, 0.0, 1.0)
    return mask, np.asarray(mask * band.astype(np.float32), np.float32)


def _control_points(torso_alpha: np.ndarray, q: np.ndarray, anchors: dict[str, np.ndarray]) -> np.ndarray:
    """A regular grid over the torso's extent (garment units) plus the torso's anchors, points too close to an
    anchor dropped (they would make the spline ill-conditioned)."""
    inside = torso_alpha > 0.1
    pts = q[inside] if inside.any() else np.array([[-0.5, 0.0], [0.5, 1.0]])
    x0, y0 = pts.min(axis=0) - 0.05
    x1, y1 = pts.max(axis=0) + 0.05
    gx, gy = np.meshgrid(np.linspace(x0, x1, GRID[0]), np.linspace(y0, y1, GRID[1]))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    fixed = np.array([anchors[n] for n in ("collar", "left_shoulder", "right_shoulder", "left_hem", "right_hem")])
    far = np.min(np.hypot(*(grid[:, None, :] - fixed[None, :, :]).transpose(2, 0, 1)), axis=1) > 0.06
    return np.concatenate([fixed, grid[far]], axis=0)


# ---------------------------------------------------------------------------------------------------------------
# The body


def _hips_usable(kp: np.ndarray) -> bool:
    """Both hips seen (visibility >= MIN_VISIBILITY), or predicted out of view at a plausible torso length."""
    hips = kp[[L_HIP, R_HIP], :3]
    if not np.isfinite(hips).all():
        return False
    if (hips[:, 2] >= MIN_VISIBILITY).all():
        return True
    shoulder_width = float(np.hypot(*(kp[L_SHOULDER, :2] - kp[R_SHOULDER, :2])))
    torso = float(np.hypot(*((hips[0, :2] + hips[1, :2]) / 2 - (kp[L_SHOULDER, :2] + kp[R_SHOULDER, :2]) / 2)))
    return 0.8 * TORSO_RATIO * shoulder_width < torso < 1.3 * TORSO_RATIO * shoulder_width


def _estimated_hips(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(left hip, right hip) of a frontal adult below these shoulders (TORSO_RATIO, HIP_RATIO)."""
    left, right = xy[L_SHOULDER], xy[R_SHOULDER]
    mid, across = (left + right) / 2, left - right
    width = max(float(np.hypot(*across)), 1e-6)
    down = np.array([-across[1], across[0]]) / width
    if np.isfinite(xy[NOSE]).all() and float((xy[NOSE] - mid) @ down) > 0:
        down = -down  # away from the face
    hip_mid = mid + down * TORSO_RATIO * width
    return hip_mid + across * HIP_RATIO / 2, hip_mid - across * HIP_RATIO / 2


def _body(keypoints: np.ndarray | None) -> _Body | None:
    if keypoints is None:
        return None
    kp = np.asarray(keypoints, np.float64)
    if kp.ndim != 2 or kp.shape[0] < 25 or kp.shape[1] < 3:
        return None
    shoulders = kp[[L_SHOULDER, R_SHOULDER], :3]
    if not np.isfinite(shoulders).all() or (shoulders[:, 2] < MIN_VISIBILITY).any():
        return None
    xy = kp[:, :2].copy()
    mid = (xy[L_SHOULDER] + xy[R_SHOULDER]) / 2
    if not _hips_usable(kp):
        # An upper-body shot (a webcam at a desk): the hips are out of view. Put them where a frontal adult's
        # are, square below the shoulder line on the side away from the nose, and wear the garment on that.
        xy[L_HIP], xy[R_HIP] = _estimated_hips(xy)
    hip_mid = (xy[L_HIP] + xy[R_HIP]) / 2
    torso = hip_mid - mid
    length = float(np.hypot(*torso))
    if length < 2.0:
        return None
    # across (towards the subject's left shoulder); near a side view at least MIN_WIDTH of a frontal width
    across = xy[L_SHOULDER] - xy[R_SHOULDER]
    perp = np.array([-torso[1], torso[0]]) / length
    sign = 1.0 if float(across @ perp) >= 0 else -1.0
    shoulder_width = float(np.hypot(*across))
    least = MIN_WIDTH * length / TORSO_RATIO
    if shoulder_width < least:
        across = across + sign * perp * (least - shoulder_width)
    width = float(np.hypot(*across))
    if width < 1.0:
        return None
    across_eff = across * (1 + 2 * SHOULDER_OUT)
    hips = xy[L_HIP] - xy[R_HIP]
    hip_width = float(np.hypot(*hips))
    # at the hip line the garment lies square to the torso's axis (the hip joints are close together: their own
    # line would swing a wide hem by several px per px of keypoint noise), a little wider for wider hips
    hip_scale = float(np.clip(1.0 + HIP_FOLLOW * (hip_width / width / HIP_RATIO - 1.0), *HIP_SCALE))
    across_hip = sign * perp * float(np.hypot(*across_eff)) * hip_scale
    # the neck: towards the nose (its visibility does not matter: on a back view it is still predicted)
    to_nose = xy[NOSE] - mid
    nose_distance = float(np.hypot(*to_nose)) if np.isfinite(to_nose).all() else 0.0
    if nose_distance > 1e-6 and float(to_nose @ -torso) > 0:
        neck = mid + to_nose / nose_distance * min(NECK_RAISE * nose_distance, NECK_MAX * width)
    else:  # no usable nose: straight up the torso, by a typical amount
        neck = mid - torso / length * NECK_RAISE * 0.55 * width
    handedness = 1.0 if across[0] * torso[1] - across[1] * torso[0] >= 0 else -1.0
    return _Body(mid, across_eff, across_hip, torso, neck, width, handedness, kp)


def _hem_t(garment: _Garment, category: str) -> float:
    """Where the hem line goes, in torso lengths below the shoulder line."""
    natural = garment.hem_y / TORSO_RATIO
    if category == "dress":
        return max(natural, DRESS_HEM)
    return float(np.clip(natural, *TOP_HEM))


def _torso_map(garment: _Garment, body: _Body, category: str, q: np.ndarray) -> np.ndarray:
    """Garment units (N, 2) -> frame px (N, 2)."""
    q = np.asarray(q, np.float64).reshape(-1, 2)
    return np.asarray(_plain_map(garment, body, category, q) + _neck_lift(garment, body, category, q), np.float64)


def _plain_map(garment: _Garment, body: _Body, category: str, q: np.ndarray) -> np.ndarray:
    """The torso map without the neck lift."""
    t = q[:, 1] / garment.hem_y * _hem_t(garment, category)
    s = np.clip(t, 0.0, 1.0)[:, None]
    ramp = np.clip(t / WRAP_DEPTH, 0.0, 1.0)[:, None]
    wrap = 1.0 - (1.0 - WRAP) * ramp * ramp * (3 - 2 * ramp)
    across = ((1 - s) * body.across + s * body.across_hip) * wrap
    return np.asarray(body.mid + t[:, None] * body.torso + q[:, :1] * across, np.float64)


def _neck_lift(garment: _Garment, body: _Body, category: str, q: np.ndarray) -> np.ndarray:
    """A smooth displacement that takes a crew neck's collar to the neck: full at the collar's x and above it,
    zero at the shoulders (|x| >= 0.5) and from 0.4 garment units below the collar; none for deep necklines."""
    collar = garment.anchors["collar"]
    weight = float(np.clip(1.0 - (collar[1] - CREW_DEPTH) / DEEP_NECK, 0.0, 1.0))
    if weight == 0.0:
        return np.zeros_like(q)
    crew = _plain_map(garment, body, category, np.array([[collar[0], CREW_DEPTH]]))[0]
    delta = (body.neck - crew) * weight
    dx = np.clip(np.abs(q[:, 0] - collar[0]) / 0.5, 0.0, 1.0)
    bump = 0.5 * (1 + np.cos(np.pi * dx))
    dy = np.clip((q[:, 1] - collar[1]) / 0.4, 0.0, 1.0)
    fade = 1.0 - dy * dy * (3 - 2 * dy)
    return np.asarray((bump * fade)[:, None] * delta[None, :], np.float64)


def _sleeve_affine(garment: _Garment, body: _Body, category: str, side: str) -> tuple[np.ndarray, np.ndarray]:
    """The sleeve's 2x3 affine, item px -> frame px, and where its end lands."""
    sleeve = garment.sleeves[side]
    shoulder_q = sleeve.pivot
    shoulder_px = _torso_map(garment, body, category, garment.anchors[f"{side}_shoulder"][None])[0]
    kp = body.keypoints
    joint, elbow = ARM[side][0], ARM[side][1]
    arm = kp[elbow, :2] - kp[joint, :2]
    length_q = float(np.hypot(*sleeve.axis))
    scale = float(np.hypot(*body.across))  # frame px per garment unit
    if np.isfinite(arm).all() and float(np.hypot(*arm)) > 1e-6:
        direction = arm / float(np.hypot(*arm))
    else:  # no elbow: the sleeve keeps the item's own angle to the torso
        linear = np.stack([body.across, body.torso * _hem_t(garment, category) / garment.hem_y], axis=1)
        mapped = linear @ sleeve.axis
        direction = mapped / max(float(np.hypot(*mapped)), 1e-9)
    along = direction * length_q * scale
    across = body.handedness * np.array([-direction[1], direction[0]]) * length_q * scale * sleeve.wrap
    g_axis = sleeve.axis
    g_perp = np.array([-g_axis[1], g_axis[0]])
    linear_q = np.stack([along, across], axis=1) @ np.linalg.inv(np.stack([g_axis, g_perp], axis=1))
    # frame = shoulder_px + linear_q @ (q - shoulder_q);   q = inverse_basis @ (item - origin)
    inverse_basis = np.linalg.inv(garment.basis)
    linear = linear_q @ inverse_basis
    offset = shoulder_px - linear_q @ shoulder_q - linear @ garment.origin
    return np.concatenate([linear, offset[:, None]], axis=1), shoulder_px + along


def _placed(garment: _Garment, body: _Body, category: str) -> dict[str, np.ndarray]:
    names = ("collar", "left_shoulder", "right_shoulder", "left_hem", "right_hem")
    points = _torso_map(garment, body, category, np.array([garment.anchors[n] for n in names]))
    placed = {name: np.asarray(p, np.float64) for name, p in zip(names, points, strict=True)}
    for side in SIDES:
        if side in garment.sleeves:
            placed[f"{side}_sleeve"] = _sleeve_affine(garment, body, category, side)[1]
        else:  # sleeveless: the sleeve anchor sits on (or next to) the shoulder
            placed[f"{side}_sleeve"] = _torso_map(garment, body, category, garment.anchors[f"{side}_sleeve"][None])[0]
    return placed


# ---------------------------------------------------------------------------------------------------------------
# Rendering


def _tps_fit(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Thin-plate spline through src -> dst (N, 2 each); coordinates normalised for conditioning."""
    centre = src.mean(axis=0)
    scale = max(float(np.abs(src - centre).max()), 1e-6)
    s = (src - centre) / scale
    n = len(s)
    kernel = _tps_kernel(s, s)
    system = np.zeros((n + 3, n + 3))
    system[:n, :n] = kernel + TPS_REGULARISATION * np.eye(n)
    system[:n, n] = 1.0
    system[:n, n + 1 :] = s
    system[n, :n] = 1.0
    system[n + 1 :, :n] = s.T
    rhs = np.zeros((n + 3, 2))
    rhs[:n] = dst
    solution = np.linalg.solve(system, rhs)
    return s, solution, centre, scale


def _tps_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = (a[:, None, 0] - b[None, :, 0]) ** 2 + (a[:, None, 1] - b[None, :, 1]) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        k = 0.5 * d2 * np.log(d2)
    return np.asarray(np.where(d2 > 0, k, 0.0), np.float64)


def _tps_eval(fit: tuple[np.ndarray, np.ndarray, np.ndarray, float], points: np.ndarray) -> np.ndarray:
    s, solution, centre, scale = fit
    p = (points - centre) / scale
    n = len(s)
    out = _tps_kernel(p, s) @ solution[:n] + solution[n] + p @ solution[n + 1 :]
    return np.asarray(out, np.float64)


def _render(scene: Scene, item: Item, garment: _Garment, body: _Body) -> Rendered:
    frame = scene.bgr
    height, width = frame.shape[:2]
    category = item.category
    placed = _placed(garment, body, category)

    # torso control points: garment grid -> frame (the spline goes the other way: frame px -> item px)
    frame_pts = _torso_map(garment, body, category, garment.grid)
    item_pts = garment.to_item(garment.grid)
    sleeve_affines = {}  # cropped sleeve px -> frame px
    for side, sleeve in garment.sleeves.items():
        affine = _sleeve_affine(garment, body, category, side)[0]
        affine[:, 2] += affine[:, :2] @ sleeve.corner
        sleeve_affines[side] = affine

    # the region of interest: where the torso and sleeves can land, padded
    corners = [frame_pts, *(np.asarray(p, np.float64)[None] for p in placed.values())]
    for side, affine in sleeve_affines.items():
        h, w = garment.sleeves[side].premultiplied.shape[:2]
        box = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64)
        corners.append(box @ affine[:, :2].T + affine[:, 2])
    allpts = np.concatenate(corners, axis=0)
    pad = TPS_STRIDE * 2
    # the ROI starts on a multiple of TPS_STRIDE: the spline is sampled at the same frame px whatever the ROI
    x0 = int(max(0, math.floor(allpts[:, 0].min()) - pad)) // TPS_STRIDE * TPS_STRIDE
    y0 = int(max(0, math.floor(allpts[:, 1].min()) - pad)) // TPS_STRIDE * TPS_STRIDE
    x1 = int(min(width, math.ceil(allpts[:, 0].max()) + pad))
    y1 = int(min(height, math.ceil(allpts[:, 1].max()) + pad))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return Rendered(frame, np.zeros((height, width), np.float32), placed)
    roi_w, roi_h = x1 - x0, y1 - y0
    origin = np.array([x0, y0], np.float64)

    # torso: spline sampled at block centres every TPS_STRIDE px, upsampled exactly by the same factor
    source = garment.torso
    for side, sleeve in garment.sleeves.items():
        rise = _arm_rise(body, side)
        if rise > 0.0:
            source = source + sleeve.gusset * np.float32(rise)
    fit = _tps_fit(frame_pts, item_pts)
    nx, ny = -(-roi_w // TPS_STRIDE), -(-roi_h // TPS_STRIDE)
    cx = x0 + np.arange(nx) * TPS_STRIDE + (TPS_STRIDE - 1) / 2
    cy = y0 + np.arange(ny) * TPS_STRIDE + (TPS_STRIDE - 1) / 2
    gx, gy = np.meshgrid(cx, cy)
    coarse = _tps_eval(fit, np.stack([gx.ravel(), gy.ravel()], axis=1)).reshape(ny, nx, 2).astype(np.float32)
    fine = cv2.resize(coarse, (nx * TPS_STRIDE, ny * TPS_STRIDE), interpolation=cv2.INTER_LINEAR)[:roi_h, :roi_w]
    torso = cv2.remap(
        source,
        np.ascontiguousarray(fine[:, :, 0]),
        np.ascontiguousarray(fine[:, :, 1]),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0.0, 0.0, 0.0, 0.0),
    )

    # occluders
    kp = body.keypoints
    mask = None if scene.mask is None else np.asarray(scene.mask, np.float32)[y0:y1, x0:x1]
    if mask is not None and mask.shape != (roi_h, roi_w):
        mask = None
    arms = {side: _arm_masks(kp, side, body.width, origin, (roi_h, roi_w)) for side in SIDES}
    person = None if mask is None else np.clip(mask * 2.0, 0.0, 1.0)

    def in_front(occluder: np.ndarray, box: tuple[int, int, int, int] = (0, roi_h, 0, roi_w)) -> np.ndarray:
        return occluder if person is None else occluder * person[box[0] : box[1], box[2] : box[3]]

    torso_occ = in_front(np.maximum(arms["left"][0], arms["right"][0]))
    torso = np.asarray(torso * (1.0 - torso_occ)[:, :, None], np.float32)

    # sleeves, each warped into its own box of the ROI; over the torso, or under it when the arm is behind
    out = torso
    for behind in (True, False):
        for side, affine in sleeve_affines.items():
            if (kp[ARM[side][1], 2] < MIN_VISIBILITY) != behind:
                continue
            sleeve = garment.sleeves[side]
            h, w = sleeve.premultiplied.shape[:2]
            box = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64) @ affine[:, :2].T + affine[:, 2] - origin
            bx0, by0 = (max(0, math.floor(v) - 1) for v in box.min(axis=0))
            bx1, by1 = min(roi_w, math.ceil(box[:, 0].max()) + 2), min(roi_h, math.ceil(box[:, 1].max()) + 2)
            if bx1 <= bx0 or by1 <= by0:
                continue
            shifted = affine.copy()
            shifted[:, 2] -= origin + np.array([bx0, by0])
            layer = cv2.warpAffine(
                sleeve.premultiplied,
                shifted,
                (bx1 - bx0, by1 - by0),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=(0.0, 0.0, 0.0, 0.0),
            )
            other = "right" if side == "left" else "left"
            occ = in_front(np.maximum(arms[other][0], arms[side][1])[by0:by1, bx0:bx1], (by0, by1, bx0, bx1))
            layer = np.asarray(layer * (1.0 - occ)[:, :, None], np.float32)
            under = out[by0:by1, bx0:bx1]
            if behind:  # premultiplied "over": the torso over the sleeve
                out[by0:by1, bx0:bx1] = under + layer * (1.0 - under[:, :, 3:4])
            else:
                out[by0:by1, bx0:bx1] = layer + under * (1.0 - layer[:, :, 3:4])
    alpha = np.clip(out[:, :, 3], 0.0, 1.0)
    colour = out[:, :, :3] / np.maximum(alpha, 1e-6)[:, :, None]

    # clip to the person (grown a little); a dress's skirt below the hips hangs free
    skirt = _below_hips(body, origin, (roi_h, roi_w)) if category == "dress" else None
    if mask is not None:
        grow = max(2, round(MASK_GROW * body.width))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        clip = cv2.dilate(np.clip((mask - 0.3) / 0.4, 0.0, 1.0), kernel)
        if skirt is not None:
            clip = np.maximum(clip, skirt)
        alpha = alpha * clip

    alpha = compose.feather(np.asarray(alpha, np.float32), max(1.0, FEATHER * body.width))
    roi_frame = frame[y0:y1, x0:x1]
    light_weight = person
    if skirt is not None:  # the skirt hangs away from the legs: their light and shade are not its own
        light_weight = 1.0 - skirt if person is None else person * (1.0 - skirt)
    lit = _lighting(roi_frame, light_weight, alpha, body.width)
    shaded = compose.shade(np.asarray(np.clip(colour, 0, 255), np.float32), lit, alpha, SHADE_STRENGTH)
    out_frame = frame.copy()
    out_frame[y0:y1, x0:x1] = compose.composite(roi_frame, shaded, alpha)
    full_alpha = np.zeros((height, width), np.float32)
    full_alpha[y0:y1, x0:x1] = alpha
    return Rendered(out_frame, full_alpha, placed)


def _arm_rise(body: _Body, side: str) -> float:
    """0 for an arm hanging within 60 degrees of the torso's downward direction, rising to 1 at horizontal."""
    shoulder, elbow = ARM[side][0], ARM[side][1]
    arm = body.keypoints[elbow, :2] - body.keypoints[shoulder, :2]
    norm = float(np.hypot(*arm)) * float(np.hypot(*body.torso))
    if not np.isfinite(norm) or norm < 1e-9:
        return 0.0
    cosine = float(arm @ body.torso) / norm
    return float(np.clip((0.5 - cosine) / 0.5, 0.0, 1.0))


def _lighting(roi_frame: np.ndarray, person: np.ndarray | None, alpha: np.ndarray, width: float) -> np.ndarray:
    """What compose.shade sees: the frame's luminance blurred a little, its ratio to the mean under the garment
    compressed (SHADE_GAMMA), and flat (the mean) off the person, so a skirt over a bright background is not
    lightened by it. A grey BGR image."""
    blur = max(1.0, SHADE_BLUR * width)
    k = int(2 * math.ceil(2 * blur) + 1)
    luma = cv2.GaussianBlur(cv2.cvtColor(roi_frame, cv2.COLOR_BGR2GRAY).astype(np.float32), (k, k), blur)
    weight = np.ones_like(luma) if person is None else person
    under = (alpha > 0.5) & (weight > 0.5)
    mean = float(luma[under].mean()) if under.any() else float(luma.mean())
    mean = max(mean, 1.0)
    ratio = np.clip(np.power(np.clip(luma / mean, 0.05, 20.0), SHADE_GAMMA), *SHADE_RANGE)
    level = mean * (weight * ratio + (1.0 - weight))
    grey = np.clip(level, 0, 255).astype(np.uint8)
    return np.asarray(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), np.uint8)


def _arm_masks(
    kp: np.ndarray, side: str, body_width: float, origin: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(whole arm, hand only) occluder masks in the ROI, float32 0..1, from visible keypoints only."""
    shoulder, elbow, wrist, pinky, index, thumb = ARM[side]
    whole = np.zeros(shape, np.uint8)
    hand = np.zeros(shape, np.uint8)

    def ok(*indices: int) -> bool:
        pts = kp[list(indices)]
        return bool(np.isfinite(pts[:, :3]).all() and (pts[:, 2] >= MIN_VISIBILITY).all())

    def pt(p: np.ndarray) -> tuple[int, int]:
        q = np.clip(p - origin, -1e5, 1e5)
        return round(float(q[0]) * 4), round(float(q[1]) * 4)  # 2 fractional bits

    def capsule(img: np.ndarray, a: np.ndarray, b: np.ndarray, radius: float) -> None:
        r = max(1, round(radius))
        cv2.line(img, pt(a), pt(b), 255, 2 * r, cv2.LINE_AA, shift=2)
        cv2.circle(img, pt(a), r * 4, 255, -1, cv2.LINE_AA, shift=2)
        cv2.circle(img, pt(b), r * 4, 255, -1, cv2.LINE_AA, shift=2)

    xy = kp[:, :2]
    if ok(shoulder, elbow):
        start = xy[shoulder] + ARM_START * (xy[elbow] - xy[shoulder])
        capsule(whole, start, xy[elbow], UPPER_ARM_RADIUS * body_width)
    if ok(elbow, wrist):
        capsule(whole, xy[elbow], xy[wrist], FOREARM_RADIUS * body_width)
    if ok(wrist):
        hull_pts = [xy[wrist]] + [xy[i] for i in (pinky, index, thumb) if ok(i)]
        r = HAND_RADIUS * body_width
        if len(hull_pts) >= 3:
            hull = cv2.convexHull(np.array([pt(p) for p in hull_pts], np.int32))
            cv2.fillConvexPoly(hand, hull, 255, cv2.LINE_AA, shift=2)
        for i in range(len(hull_pts)):
            capsule(hand, hull_pts[i], hull_pts[(i + 1) % len(hull_pts)], r)
    whole = np.maximum(whole, hand)
    return whole.astype(np.float32) / 255.0, hand.astype(np.float32) / 255.0


def _below_hips(body: _Body, origin: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """1 below the hip line (along the torso's direction), 0 above, a ramp over a tenth of the torso length."""
    length = float(np.hypot(*body.torso))
    down = body.torso / length
    hip_mid = body.mid + body.torso
    xs = (np.arange(shape[1], dtype=np.float32) + np.float32(origin[0] - hip_mid[0])) * np.float32(down[0])
    ys = (np.arange(shape[0], dtype=np.float32) + np.float32(origin[1] - hip_mid[1])) * np.float32(down[1])
    depth = ys[:, None] + xs[None, :]
    return np.asarray(np.clip(depth / (0.1 * length) + 0.5, 0.0, 1.0), np.float32)
