"""Face and neck items: glasses, hats, earrings and necklaces, placed with the 478-point face mesh and the head pose.

Every renderer is `render_<x>(scene, item) -> Rendered` and never raises on missing perception: without a face
(or, for a necklace, without a face and without shoulders) it returns the frame unchanged with alpha 0.

Geometry. Items live in the **head frame** of `streams.vision.face_geometry` (MediaPipe's canonical face model, cm;
x to the subject's left = image right of a face looking into the camera, y down, z into the head) and are
projected with the head pose (R, t) and the face-geometry camera (`project`). Real sizes therefore come from the
canonical model's metric scale: it is life-size (outer eye corners 8.9 cm apart, eye centres 6.3 cm = the mean
adult pupil distance, face width 234-454 15.3 cm), and the pose's depth makes the projected canonical face as
large as the observed one, so 14 cm in the head frame is 14 cm on an average face. A face smaller than the
canonical one gets items proportionally too large relative to it. The iris (11.7 mm in nearly every adult) measures
this: on MediaPipe's two reference photos it reads 11.7 mm (portrait) and 12.6 mm (business person, a face ~7 %
smaller) at the canonical scale. It is not used as a correction: one landmark pixel is 5 % of a 20 px iris, which
would make a still item breathe from frame to frame. When the scene has no head pose, it is solved here from the
mesh with the same 33 points and method as `face_geometry.solve_head_pose` (their canonical coordinates are
embedded below, Apache-2.0).

* Glasses: a 2.5D warp of the product image. Its front plane is a plane of the head frame at z = -5.7 cm (just in
  front of the nose bridge, mesh 168 at z -5.24, ~2 cm in front of the eyes), with the image's bridge anchor on the
  nose bridge (168) and the lens line along the head's x axis; cm per item pixel = frame_width / (distance between
  the temple anchors along the lens line). The four image corners are projected with (R, t): that is the homography
  (the perspective and foreshortening of a turned head included). The projection is then shifted so the bridge
  lands on the *observed* mesh point 168 (the pose fit leaves a few % of the face width as residual there), and
  slid along the nose ridge by at most 3 mm towards where the lens centres sit 3 mm below the pupils (frames
  whose bar is high above the lens centres, as most product shots, otherwise sit low on real meshes, whose 168 is
  at the pupils' height). Temples are strips from the hinges (temple anchors) back to the ear (x 8 cm, z +4 cm), in
  the frame's colour at the hinge, darker towards the ear. A temple whose side of the head faces away from the
  camera is hidden where the face (convex hull of the mesh) is in front of it; the near one is drawn over the face.
  `params["lens_opacity"]` (0..1, default 1) makes the lens areas (flood fill from the lens anchors, inside the
  rims) see-through; `params["temples"] = False` draws no temples, `params["temple_colour"]` "#RRGGBB" sets them.
* Hats: a billboard facing the camera (a round hat does not foreshorten when the head turns), turned with the
  head's roll (the projected head y axis), scaled by the real brim width (`size_mm["width"]`, at least 16 cm: never
  narrower than the head) at the depth of the skull's axis. The hat meets the forehead 4 cm above the eye line
  (y -6.6, the forehead line of 54/284, 1.5 cm above the eyebrows), corrected by the observed forehead (151); the
  brim is a disc around the skull's axis (9.6 cm behind the forehead), so its widest row (the brim anchors) shows
  above that point by sin(elevation) x 9.6 cm and is centred over the skull's axis when the head turns. Product
  images show the brim from above (the part below the widest row is the brim's front): that part is squashed to
  how the camera sees the brim, from its elevation over the head's horizontal plane + 8 degrees, kept within
  5..15 degrees so the front of a wide brim never hangs over the eyes. The hat is drawn over everything.
* Earrings: the hook anchor at each ear lobe (head frame (+-8.2, 1.2, 2.6) cm: below the tragus, just outside the
  face oval at 93/323), hanging down (gravity: the image turns with only 25 % of the head's roll), its height from
  the hook to the image's lowest opaque row = `size_mm["length"]`. The wearer's right earring is the mirrored image.
  An ear turning away hides its earring: from ~15 degrees of yaw where the face is in front of it, entirely from
  ~30 degrees (`_Head.away`). `placed` has `left_hook` / `right_hook` for the earrings that show.
* Necklaces: the two end anchors at the sides of the neck base (11 cm apart, 4.5 cm above the shoulder line), the
  centre anchor below by a drop from the real length (`size_mm["length"]`: 40 cm sits at the base of the neck, 45
  cm at the collarbones, 60 cm at the top of the bust), an affine warp through the three anchors. Placement from
  the shoulders (pose 11/12) and the chin (152): along the shoulder line, its centre 60 % of the way from the
  shoulders' midpoint to the chin's side position (the neck turns with the head); without shoulders, from the face
  alone; shoulders seen from behind (11 on the image left of 12) hide it. The face is in front of it (a lowered
  chin hides the chain).

Cost: the item images are cached per item as premultiplied uint8 pyramids (halved levels) and warped from the
level at most 2x their footprint, only over the region they cover. Measured on one CPU core, real perception,
per frame: 0.2-0.9 ms per item on a 640x360 video frame; 0.3-3.5 ms on a 600x600 face close-up; up to 11 ms for a
wide hat on a 958x1358 photo (whole-frame copies and the region's float blend dominate).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import cv2
import numpy as np

from streams.tryon.catalogue import Item
from streams.tryon.scene import Rendered, Scene
from streams.vision.face_geometry import FaceModel, camera_matrix, project, solve_head_pose

NUM_MESH = 468
MIN_VISIBILITY = 0.5  # pose keypoints (shoulders) at least this visible are used

# --- the canonical face model (head frame, cm): the 33 pose-fit points + the ones items are placed on -----------

# MediaPipe's canonical_face_model (Apache-2.0), head frame of face_geometry. The model is symmetric: each entry is
# the image-right (+x) point of a pair (right id, left id) or a point on the midline (left id None).
# fmt: off
_CANONICAL_HALF: dict[int, tuple[int | None, tuple[float, float, float]]] = {
    4: (None, (0.0, 0.463, -7.587)), 6: (None, (0.0, -2.473, -5.789)), 10: (None, (0.0, -8.262, -4.482)),
    151: (None, (0.0, -6.545, -5.027)), 168: (None, (0.0, -3.271, -5.236)),
    263: (33, (4.446, -2.664, -3.173)), 284: (54, (6.279, -6.615, -1.426)), 297: (67, (3.524, -8.006, -3.729)),
    346: (117, (5.259, -0.946, -2.974)), 348: (119, (3.301, -0.862, -3.873)), 350: (121, (1.821, -1.468, -4.224)),
    356: (127, (7.743, -2.365, 2.005)), 358: (129, (1.786, 0.978, -4.850)), 361: (132, (7.271, 2.891, 2.252)),
    362: (133, (1.856, -2.585, -3.758)), 365: (136, (5.085, 7.179, -0.715)), 372: (143, (6.408, -2.236, -1.561)),
    376: (147, (6.235, 1.944, -1.664)), 420: (198, (1.247, -0.230, -5.681)), 425: (205, (3.833, 1.537, -4.138)),
}
# fmt: on
_POSE_FIT_EXTRA = (151, 168)  # embedded for placement only, not part of MediaPipe's pose-fit subset


def _canonical() -> dict[int, np.ndarray]:
    points: dict[int, np.ndarray] = {}
    for right, (left, (x, y, z)) in _CANONICAL_HALF.items():
        points[right] = np.array([x, y, z])
        if left is not None:
            points[left] = np.array([-x, y, z])
    return points


CANONICAL = _canonical()
_FIT_IDS = np.array(sorted(i for i in CANONICAL if i not in _POSE_FIT_EXTRA), dtype=np.int64)


def _fit_model() -> FaceModel:
    vertices = np.zeros((NUM_MESH, 3))
    for i, p in CANONICAL.items():
        vertices[i] = p
    return FaceModel(
        vertices=vertices,
        uv=np.zeros((NUM_MESH, 2)),
        triangles=np.zeros((0, 3), np.int64),
        procrustes_ids=_FIT_IDS,
        procrustes_weights=np.ones(len(_FIT_IDS)),
    )


FIT_MODEL = _fit_model()

# --- placement constants (head frame, cm) ----------------------------------------------------------------------

BRIDGE_POINT = 168  # the glasses' bridge anchor sits on this mesh point
GLASSES_PLANE_Z = -5.7  # the glasses' front plane: just in front of the nose bridge (168 is at z -5.24)
DEFAULT_FRAME_WIDTH_CM = 14.0
LENS_BELOW_PUPIL_CM = 0.3  # a lens's centre sits a little below the pupil
NOSE_SLIDE_CM = 0.2  # how far the bridge may slide along the nose ridge from 168 to bring the lenses to the eyes
TEMPLE_END = (8.0, 0.5, 4.0)  # x (at least), drop below the hinge, z: where a temple meets the ear
TEMPLE_WIDTH_CM = 0.45
HAT_BAND_Y = -6.6  # where a hat meets the forehead: the forehead line of 54/284, 1.5 cm above the eyebrows
HAT_FRONT_Z = -4.6  # the forehead's depth at that height
HAT_SKULL_Z = 5.0  # the skull's vertical axis: what a hat is centred over when the head turns
HAT_ANCHOR_POINT = 151  # the observed forehead point the hat follows (pose-fit residual removed there)
DEFAULT_HAT_WIDTH_CM = 20.0
# The brim's front below the brim line is shown as seen from the camera's elevation over the head's horizontal
# plane plus a tilt (hats sit tilted back a little), kept within a range: a steep view would put the front of a wide
# brim over the eyes, which a shopper never wants to see.
HAT_VIEW_TILT = math.radians(8.0)
HAT_VIEW_RANGE = (math.radians(5.0), math.radians(15.0))
MIN_HAT_WIDTH_CM = 16.0  # wider than the head (15.3 cm at the ears): a hat never looks narrower than the head
LOBE = (8.2, 1.2, 2.6)  # the wearer's left ear lobe (x mirrored for the right one), beside 93/323
DEFAULT_EARRING_LENGTH_CM = 3.0
EARRING_ROLL_FOLLOW = 0.25  # how much of the head's roll an earring follows (the rest is gravity)
# How far an ear's side faces away from the camera (`_Head.away`: the sine of the angle; a frontal face at arm's
# length already reads 0.1-0.3 from perspective): beyond the first the face hides the earring where it is in front
# of it, over the range the earring fades out (hidden from ~30 degrees of yaw).
EAR_AWAY_OCCLUDED = 0.35
EAR_AWAY_HIDDEN = (0.45, 0.55)
DEFAULT_NECKLACE_LENGTH_CM = 45.0
NECK_WIDTH_CM = 11.0
NECK_BASE_CM = 4.5  # the ends sit this far above the shoulder line
SHOULDER_WIDTH_CM = 38.0  # scale when there is no head pose
CHIN_TO_SHOULDERS_CM = 14.0  # shoulder line below the chin when the shoulders are not seen
NECK_FOLLOWS_CHIN = 0.6  # how much of the chin's sideways offset the neck's centre line follows


# --- perception inputs ------------------------------------------------------------------------------------------


def _unchanged(scene: Scene) -> Rendered:
    return Rendered(scene.bgr, np.zeros(scene.bgr.shape[:2], np.float32))


def face_points(scene: Scene) -> np.ndarray | None:
    """The scene's mesh as (N >= 468, 2+) float64, or None when missing or not finite."""
    if scene.face is None:
        return None
    pts = np.asarray(scene.face, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[0] < NUM_MESH or pts.shape[1] < 2 or not np.all(np.isfinite(pts[:NUM_MESH, :2])):
        return None
    return pts


def head_pose(scene: Scene, points: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(R, t cm) from the scene, else solved from the mesh (embedded canonical points); None when impossible."""
    if scene.head_rotation is not None and scene.head_translation is not None:
        r = np.asarray(scene.head_rotation, dtype=np.float64)
        t = np.asarray(scene.head_translation, dtype=np.float64).reshape(-1)
        if r.shape == (3, 3) and t.shape == (3,) and np.all(np.isfinite(r)) and np.all(np.isfinite(t)) and t[2] > 0:
            return r, t
    try:
        r, t = solve_head_pose(points, FIT_MODEL, scene.width, scene.height)
    except (ValueError, cv2.error):
        return None
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(t)) and t[2] > 0):
        return None
    return r, t


@dataclass(frozen=True)
class _Head:
    points: np.ndarray  # (N, 2+) mesh px
    rotation: np.ndarray
    translation: np.ndarray
    width: int
    height: int

    @property
    def focal(self) -> float:
        return float(camera_matrix(self.width, self.height)[0, 0])

    def camera(self, p: np.ndarray) -> np.ndarray:
        """Head-frame points (..., 3) -> camera frame (cm)."""
        return np.asarray(np.asarray(p, np.float64) @ self.rotation.T + self.translation)

    def project(self, p: np.ndarray) -> np.ndarray:
        return project(
            np.asarray(p, np.float64).reshape(-1, 3), self.rotation, self.translation, self.width, self.height
        )

    def px_per_cm(self, p: np.ndarray) -> float:
        return self.focal / float(self.camera(np.asarray(p, np.float64).reshape(3))[2])

    def axes(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image directions at head point `p`: (u, v) unit, v the head's projected down (+y) axis, u = v turned to
        the image right. The head's roll on screen, whatever its yaw."""
        p = np.asarray(p, np.float64).reshape(3)
        dy = np.array([0.0, 1.0, 0.0])
        top, bottom = self.project(np.stack([p - dy, p + dy]))
        v = _unit(bottom - top, (0.0, 1.0))
        return np.array([v[1], -v[0]]), v

    def residual(self, point_id: int) -> np.ndarray:
        """Observed mesh point minus the projected canonical one (px): what the pose fit leaves there."""
        return np.asarray(self.points[point_id, :2] - self.project(CANONICAL[point_id])[0])

    def away(self, side: float, p: np.ndarray) -> float:
        """How much the head's side `side` (+1 the subject's left, -1 right) at head point `p` faces away from the
        camera: sin of the angle between that side's outward normal and the view direction (< 0: facing it)."""
        normal = self.rotation @ np.array([side, 0.0, 0.0])
        position = self.camera(p)
        return float(normal @ position / max(float(np.linalg.norm(position)), 1e-9))


def _head(scene: Scene) -> _Head | None:
    pts = face_points(scene)
    if pts is None:
        return None
    pose = head_pose(scene, pts)
    if pose is None:
        return None
    return _Head(pts, pose[0], pose[1], scene.width, scene.height)


def _size_cm(item: Item, key: str, default_cm: float) -> float:
    value = item.size_mm.get(key)
    if value is None or not math.isfinite(float(value)) or float(value) <= 0:
        return default_cm
    return float(value) / 10.0


def _unit(v: np.ndarray, fallback: tuple[float, float] = (1.0, 0.0)) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return np.asarray(v / n) if n > 1e-9 and math.isfinite(n) else np.array(fallback, dtype=np.float64)


def _perp(u: np.ndarray) -> np.ndarray:
    """The image-down perpendicular of an image-right unit vector."""
    return np.array([-u[1], u[0]])


# --- layers: an item's pixels warped into a region of the frame ----------------------------------------------


@dataclass
class _Layer:
    x0: int
    y0: int
    pre: np.ndarray  # (h, w, 3) float32: BGR 0..255 premultiplied by alpha
    alpha: np.ndarray  # (h, w) float32 0..1

    def region(self) -> tuple[slice, slice]:
        h, w = self.alpha.shape
        return slice(self.y0, self.y0 + h), slice(self.x0, self.x0 + w)


def _bounds(points: np.ndarray, width: int, height: int, pad: int = 2) -> tuple[int, int, int, int] | None:
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    if not np.all(np.isfinite(pts)):
        return None
    x0 = max(0, math.floor(pts[:, 0].min()) - pad)
    y0 = max(0, math.floor(pts[:, 1].min()) - pad)
    x1 = min(width, math.ceil(pts[:, 0].max()) + pad)
    y1 = min(height, math.ceil(pts[:, 1].max()) + pad)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


Pyramid = list[np.ndarray]  # an RGBA image as premultiplied BGRA uint8, halved level by level (area averaging)


def pyramid(rgba: np.ndarray, weight: np.ndarray | None = None) -> Pyramid:
    """An item image (RGBA uint8, times `weight` 0..1 if given) ready to warp at any scale without aliasing."""
    f = np.asarray(rgba, np.float32)
    a = f[:, :, 3:4] if weight is None else f[:, :, 3:4] * np.asarray(weight, np.float32)[:, :, None]
    levels = [np.asarray(np.clip(np.concatenate([f[:, :, 2::-1] * (a / 255.0), a], axis=2) + 0.5, 0, 255), np.uint8)]
    while min(levels[-1].shape[:2]) >= 32:
        h, w = levels[-1].shape[:2]
        levels.append(np.asarray(cv2.resize(levels[-1], ((w + 1) // 2, (h + 1) // 2), interpolation=cv2.INTER_AREA)))
    return levels


def _level(levels: Pyramid, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pyramid level to sample for a 3x3 image -> frame matrix (at most 2 source px per frame px: bilinear
    sampling does not alias), and that level's matrix."""
    h, w = levels[0].shape[:2]
    corners = np.array([[[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]]])
    dst = cv2.perspectiveTransform(corners, matrix)[0]
    footprint = math.sqrt(max(abs(float(cv2.contourArea(dst.astype(np.float32)))), 1.0) / float(w * h))
    k = int(np.clip(math.floor(math.log2(1.0 / max(footprint, 1e-6))), 0, len(levels) - 1))
    sx, sy = w / levels[k].shape[1], h / levels[k].shape[0]
    # level pixel centres -> level-0 pixel centres
    to_base = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
    return levels[k], matrix @ to_base


def _warp_layer(parts: list[tuple[Pyramid, np.ndarray]], width: int, height: int) -> _Layer | None:
    """Warp item images (each a pyramid with a 3x3 image px -> frame px matrix) into the frame region they cover;
    the parts are added (premultiplied), so complementary parts of one image join without a seam."""
    quads = []
    for levels, matrix in parts:
        h, w = levels[0].shape[:2]
        corners = np.array([[[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]]])
        quads.append(cv2.perspectiveTransform(corners, np.asarray(matrix, np.float64))[0])
    box = _bounds(np.concatenate(quads), width, height)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    shift = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]])
    total = np.zeros((y1 - y0, x1 - x0, 4), np.float32)
    for levels, matrix in parts:
        image, m = _level(levels, np.asarray(matrix, np.float64))
        warped = cv2.warpPerspective(image, shift @ m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderValue=0)
        total += warped
    if len(parts) > 1:
        np.minimum(total, 255.0, out=total)
    return _Layer(x0, y0, total[:, :, :3], total[:, :, 3] * np.float32(1.0 / 255.0))


def _hull_mask(points: np.ndarray, layer: _Layer) -> np.ndarray:
    """The face (convex hull of the 468 mesh points) as a soft 0..1 mask over a layer's region."""
    h, w = layer.alpha.shape
    hull = cv2.convexHull(np.asarray(points[:NUM_MESH, :2], np.float32))
    shifted = np.round((hull.reshape(-1, 2) - [layer.x0, layer.y0]) * 16).astype(np.int32)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mask, shifted, 255, cv2.LINE_AA, 4)
    return np.asarray(mask, np.float32) / 255.0


class _Canvas:
    """The frame being composited, and the item's total coverage."""

    def __init__(self, bgr: np.ndarray) -> None:
        self.bgr = np.array(bgr, dtype=np.uint8, copy=True)
        self.alpha = np.zeros(bgr.shape[:2], np.float32)

    def draw(self, layer: _Layer, keep: np.ndarray | float | None = None) -> None:
        """Composite a layer over the frame, its coverage multiplied by `keep` (occlusion, visibility) if given."""
        a, pre = layer.alpha, layer.pre
        if keep is not None:
            k = np.asarray(keep, np.float32)
            a = a * k
            pre = pre * (k[:, :, None] if k.ndim == 2 else k)
        rows, cols = layer.region()
        frame = self.bgr[rows, cols].astype(np.float32)
        self.bgr[rows, cols] = (frame * (1.0 - a)[:, :, None] + pre + 0.5).astype(np.uint8)
        self.alpha[rows, cols] = 1.0 - (1.0 - self.alpha[rows, cols]) * (1.0 - a)

    def result(self, placed: dict[str, np.ndarray]) -> Rendered:
        return Rendered(self.bgr, self.alpha, placed)


def _transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, np.float64).reshape(1, -1, 2)
    return np.asarray(cv2.perspectiveTransform(pts, np.asarray(matrix, np.float64))[0])


def _affine3(m: np.ndarray) -> np.ndarray:
    return np.vstack([np.asarray(m, np.float64).reshape(2, 3), [0.0, 0.0, 1.0]])


def _similarity(
    src: np.ndarray, dst: np.ndarray, src_axis: np.ndarray, dst_axis: np.ndarray, scale: float
) -> np.ndarray:
    """3x3 item -> frame: `src` goes to `dst`, the unit `src_axis` turns into `dst_axis`, lengths x `scale`."""
    a = math.atan2(float(dst_axis[1]), float(dst_axis[0])) - math.atan2(float(src_axis[1]), float(src_axis[0]))
    c, s = math.cos(a) * scale, math.sin(a) * scale
    lin = np.array([[c, -s], [s, c]])
    off = np.asarray(dst, np.float64) - lin @ np.asarray(src, np.float64)
    return np.array([[lin[0, 0], lin[0, 1], off[0]], [lin[1, 0], lin[1, 1], off[1]], [0.0, 0.0, 1.0]])


# --- per-item image preparation (cached: items are immutable, the same few are rendered on every frame) ----------

_CACHE: OrderedDict[tuple[str, str, int], tuple[Any, np.ndarray]] = OrderedDict()
_CACHE_SIZE = 32
T = TypeVar("T")


def _cached(kind: str, item: Item, make: Callable[[], T]) -> T:
    """`make()` once per item (and kind): items are immutable and the same few are rendered on every frame."""
    key = (kind, item.id, id(item.image))
    hit = _CACHE.get(key)
    if hit is not None and hit[1] is item.image:
        _CACHE.move_to_end(key)
        return cast(T, hit[0])
    value = make()
    _CACHE[key] = (value, item.image)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value


def _lens_mask(rgba: np.ndarray, seeds: list[np.ndarray]) -> np.ndarray:
    """The lens areas of a glasses image: flood fill from each lens anchor over smoothly varying colour. A fill that
    reaches the silhouette's outline (no frame around the lens: rimless, or a leak) is dropped."""
    h, w = rgba.shape[:2]
    bgr = np.ascontiguousarray(cv2.GaussianBlur(rgba[:, :, :3], (3, 3), 0))
    outside = cv2.dilate((rgba[:, :, 3] < 128).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    lens = np.zeros((h, w), np.float32)
    for seed in seeds:
        x, y = round(float(seed[0])), round(float(seed[1]))
        if not (0 <= x < w and 0 <= y < h and rgba[y, x, 3] >= 128 and lens[y, x] == 0):
            continue
        mask = np.zeros((h + 2, w + 2), np.uint8)
        cv2.floodFill(bgr, mask, (x, y), (0, 0, 0), (3, 3, 3), (3, 3, 3), 4 | cv2.FLOODFILL_MASK_ONLY | (1 << 8))
        fill = mask[1:-1, 1:-1] > 0
        if not np.any(fill & outside):
            lens[fill] = 1.0
    return np.asarray(cv2.GaussianBlur(lens, (3, 3), 0), np.float32)


def _glasses_image(item: Item) -> np.ndarray:
    """The glasses' RGBA with the lens areas made `lens_opacity` transparent (as is without that param)."""
    opacity = float(item.params.get("lens_opacity", 1.0))
    if not 0.0 <= opacity < 1.0:
        return np.asarray(item.image)

    def make() -> np.ndarray:
        rgba = np.array(item.image, dtype=np.uint8, copy=True)
        lens = _lens_mask(rgba, [item.anchor("left_lens"), item.anchor("right_lens")])
        rgba[:, :, 3] = np.clip(rgba[:, :, 3] * (1.0 - lens * (1.0 - opacity)) + 0.5, 0, 255).astype(np.uint8)
        return rgba

    return _cached(f"glasses:{opacity:.3f}", item, make)


def _pyramid_of(item: Item, kind: str = "image") -> Pyramid:
    """The item's image pyramid: "image", "mirrored" (left-right), or "glasses" (lens opacity applied)."""
    if kind == "glasses":
        opacity = float(item.params.get("lens_opacity", 1.0))
        return _cached(f"pyramid:glasses:{opacity:.3f}", item, lambda: pyramid(_glasses_image(item)))
    if kind == "mirrored":
        return _cached("pyramid:mirrored", item, lambda: pyramid(np.asarray(item.image)[:, ::-1]))
    return _cached("pyramid:image", item, lambda: pyramid(np.asarray(item.image)))


def _colour_at(rgba: np.ndarray, point: np.ndarray, radius: int = 6) -> tuple[float, float, float]:
    """Median colour (BGR) of the opaque item pixels near `point` (RGBA input): a temple's colour at the hinge."""
    h, w = rgba.shape[:2]
    x, y = round(float(point[0])), round(float(point[1]))
    for r in (radius, 2 * radius, 4 * radius):
        patch = rgba[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1].reshape(-1, 4)
        opaque = patch[patch[:, 3] > 200]
        if len(opaque) >= 4:
            med = np.median(opaque[:, :3].astype(np.float64), axis=0)
            return float(med[2]), float(med[1]), float(med[0])
    opaque = rgba.reshape(-1, 4)
    opaque = opaque[opaque[:, 3] > 200]
    if len(opaque) == 0 or h * w == 0:
        return 40.0, 40.0, 40.0
    med = np.median(opaque[:, :3].astype(np.float64), axis=0)
    return float(med[2]), float(med[1]), float(med[0])


def _hex_bgr(value: object) -> tuple[float, float, float] | None:
    if not isinstance(value, str) or len(value.strip().lstrip("#")) != 6:
        return None
    try:
        rgb = int(value.strip().lstrip("#"), 16)
    except ValueError:
        return None
    return float(rgb & 255), float((rgb >> 8) & 255), float(rgb >> 16)


# --- glasses ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Temple:
    """One glasses temple in the frame: its strip (4 px corners, hinge side first) and whether it is the near one."""

    side: str  # the wearer's "left" or "right"
    quad: np.ndarray  # (4, 2) px: hinge top, end top, end bottom, hinge bottom
    near: bool  # its side of the head faces the camera: drawn over the face, else hidden behind it


@dataclass(frozen=True)
class GlassesPlacement:
    matrix: np.ndarray  # 3x3 item px -> frame px (homography of the front plane)
    placed: dict[str, np.ndarray]
    temples: tuple[Temple, ...]


def place_glasses(scene: Scene, item: Item) -> GlassesPlacement | None:
    """Where the glasses go (see the module docstring); None without a face or a head pose."""
    head = _head(scene)
    if head is None:
        return None
    right_lens, left_lens = item.anchor("right_lens"), item.anchor("left_lens")
    bridge = item.anchor("bridge")
    right_temple, left_temple = item.anchor("right_temple"), item.anchor("left_temple")
    u = _unit(left_lens - right_lens)  # item px: towards the wearer's left = head +x
    v = _perp(u)
    span_px = abs(float((left_temple - right_temple) @ u))
    if span_px < 1.0:
        return None
    cm_per_px = _size_cm(item, "frame_width", DEFAULT_FRAME_WIDTH_CM) / span_px
    bridge_y = float(CANONICAL[BRIDGE_POINT][1])

    def to_head(q: np.ndarray) -> np.ndarray:
        d = np.asarray(q, np.float64).reshape(-1, 2) - bridge
        return np.stack([d @ u * cm_per_px, bridge_y + d @ v * cm_per_px, np.full(len(d), GLASSES_PLANE_Z)], 1)

    # the bridge on the observed nose bridge, then slid along the nose ridge (at most NOSE_SLIDE_CM) towards
    # where the lens centres sit just below the pupils
    offset = head.residual(BRIDGE_POINT)
    on_nose = to_head(bridge)[0]
    lenses = head.project(to_head((left_lens + right_lens) / 2))[0] + offset
    _, down = head.axes(on_nose)
    px_per_cm = head.px_per_cm(on_nose)
    wanted = float((_pupils(head.points) + down * LENS_BELOW_PUPIL_CM * px_per_cm - lenses) @ down)
    if math.isfinite(wanted):
        offset = offset + down * float(np.clip(wanted, -NOSE_SLIDE_CM * px_per_cm, NOSE_SLIDE_CM * px_per_cm))
    h, w = item.image.shape[:2]
    corners = np.array([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]])
    projected = head.project(to_head(corners)) + offset
    if not np.all(np.isfinite(projected)):
        return None
    matrix = cv2.getPerspectiveTransform(corners.astype(np.float32), projected.astype(np.float32))
    names = ("left_lens", "right_lens", "bridge", "left_temple", "right_temple")
    anchors = np.stack([item.anchor(n) for n in names])
    placed = dict(zip(names, _transform_points(matrix, anchors), strict=True))

    temples: list[Temple] = []
    half = TEMPLE_WIDTH_CM / 2
    for side, sign, anchor in (("left", 1.0, left_temple), ("right", -1.0, right_temple)):
        hinge = to_head(anchor)[0]
        end = np.array([sign * max(abs(hinge[0]) + 0.4, TEMPLE_END[0]), hinge[1] + TEMPLE_END[1], TEMPLE_END[2]])
        dy = np.array([0.0, half, 0.0])
        quad3 = np.array([hinge - dy, end - 0.8 * dy, end + 0.8 * dy, hinge + dy])
        quad = head.project(quad3) + offset
        if np.all(np.isfinite(quad)):
            temples.append(Temple(side, quad, head.away(sign, hinge) < 0))
    return GlassesPlacement(matrix, placed, tuple(temples))


def _pupils(points: np.ndarray) -> np.ndarray:
    """Midpoint of the two pupils (iris centres 468 / 473), or of the four eye corners on a 468-point mesh."""
    if len(points) > 473 and np.all(np.isfinite(points[[468, 473], :2])):
        return np.asarray((points[468, :2] + points[473, :2]) / 2)
    return np.asarray(points[[33, 133, 362, 263], :2].mean(axis=0))


def _temple_layer(quad: np.ndarray, colour: tuple[float, float, float], width: int, height: int) -> _Layer | None:
    box = _bounds(quad, width, height)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    pts = np.round((quad - [x0, y0]) * 16).astype(np.int32)
    cv2.fillConvexPoly(mask, pts, 255, cv2.LINE_AA, 4)
    alpha = mask.astype(np.float32) / 255.0
    # darker towards the ear: the temple turns away from the light
    hinge, end = (quad[0] + quad[3]) / 2 - [x0, y0], (quad[1] + quad[2]) / 2 - [x0, y0]
    axis = end - hinge
    ys, xs = np.mgrid[0 : y1 - y0, 0 : x1 - x0].astype(np.float32)
    along = np.clip(((xs - hinge[0]) * axis[0] + (ys - hinge[1]) * axis[1]) / max(float(axis @ axis), 1e-6), 0, 1)
    shade = 1.0 - 0.35 * along
    pre = np.asarray(colour, np.float32)[None, None, :] * (shade * alpha)[:, :, None]
    return _Layer(x0, y0, pre.astype(np.float32), alpha)


def render_glasses(scene: Scene, item: Item) -> Rendered:
    """Glasses on the nose at the eyes, in perspective with the head; temples back to the ears (the far one hidden
    behind the face). `placed`: left_lens, right_lens, bridge, left_temple, right_temple (hinges)."""
    placement = place_glasses(scene, item)
    points = face_points(scene)
    if placement is None or points is None:
        return _unchanged(scene)
    canvas = _Canvas(scene.bgr)
    if item.params.get("temples", True):
        colour = _hex_bgr(item.params.get("temple_colour"))
        for temple in placement.temples:
            anchor = item.anchor(f"{temple.side}_temple")
            layer = _temple_layer(temple.quad, colour or _colour_at(item.image, anchor), scene.width, scene.height)
            if layer is None:
                continue
            canvas.draw(layer, None if temple.near else 1.0 - _hull_mask(points, layer))
    front = _warp_layer([(_pyramid_of(item, "glasses"), placement.matrix)], scene.width, scene.height)
    if front is not None:
        canvas.draw(front)
    return canvas.result(placement.placed)


# --- hats -------------------------------------------------------------------------------------------------------


def _hat_brim_drop(item: Item) -> float:
    """How far the item's silhouette reaches below its brim line, over the brim's half width (the sine of the
    elevation the product was seen from, for a round brim); 0 for a hat seen straight from the front."""

    def make() -> np.ndarray:
        left, right = item.anchor("left_brim"), item.anchor("right_brim")
        half = float(np.linalg.norm(left - right)) / 2
        down = _perp(_unit(left - right))
        ys, xs = np.nonzero(np.asarray(item.image)[:, :, 3] > 127)
        if half < 1.0 or len(xs) == 0:
            return np.zeros(1)
        below = (np.stack([xs, ys], 1) - (left + right) / 2) @ down
        return np.array([max(0.0, float(below.max())) / half])

    return float(_cached("hat_drop", item, make)[0])


@dataclass(frozen=True)
class HatPlacement:
    matrix: np.ndarray  # 3x3 item px -> frame px for the part above the brim line
    squash: float  # the part below the brim line is scaled by this along the item's down direction
    placed: dict[str, np.ndarray]


def place_hat(scene: Scene, item: Item) -> HatPlacement | None:
    """Where the hat goes (see the module docstring); None without a face or a head pose."""
    head = _head(scene)
    if head is None:
        return None
    left, right, crown = item.anchor("left_brim"), item.anchor("right_brim"), item.anchor("crown")
    span_px = float(np.linalg.norm(left - right))
    if span_px < 1.0:
        return None
    offset = head.residual(HAT_ANCHOR_POINT)
    band = np.array([0.0, HAT_BAND_Y, HAT_FRONT_Z])  # where the hat meets the forehead
    axis = np.array([0.0, HAT_BAND_Y, HAT_SKULL_Z])  # the skull's vertical axis at that height
    front, centre = head.project(np.stack([band, axis]))
    if not (np.all(np.isfinite(front)) and np.all(np.isfinite(centre))):
        return None
    u, v = head.axes(axis)
    px_per_cm = head.px_per_cm(axis)
    # the camera's elevation over the head's horizontal plane: how much of the brim's top it sees
    to_camera = head.rotation.T @ -head.camera(axis)
    elevation = math.asin(max(-1.0, min(1.0, -float(to_camera[1]) / max(float(np.linalg.norm(to_camera)), 1e-9))))
    seen = math.sin(min(max(elevation + HAT_VIEW_TILT, HAT_VIEW_RANGE[0]), HAT_VIEW_RANGE[1]))
    # the brim is a disc around the skull's axis: its widest row (the brim line) shows above the band's front by
    # `seen` x the head's half depth; laterally it is centred over the skull's axis
    lift = seen * (HAT_SKULL_Z - HAT_FRONT_Z) * px_per_cm
    seat = front + u * float((centre - front) @ u) - v * lift + offset
    scale = max(_size_cm(item, "width", DEFAULT_HAT_WIDTH_CM), MIN_HAT_WIDTH_CM) * px_per_cm
    matrix = _similarity((left + right) / 2, seat, _unit(left - right), u, scale / span_px)
    drop = _hat_brim_drop(item)
    squash = 1.0 if drop <= seen else max(0.2, seen / drop)
    names = ("left_brim", "right_brim", "crown")
    placed = dict(zip(names, _transform_points(matrix, np.stack([left, right, crown])), strict=True))
    return HatPlacement(matrix, squash, placed)


def _hat_halves(item: Item) -> tuple[Pyramid, Pyramid]:
    """The hat image split at the brim line (1 px ramp) into the part above and the brim's front below."""

    def make() -> tuple[Pyramid, Pyramid]:
        left, right = item.anchor("left_brim"), item.anchor("right_brim")
        down = _perp(_unit(left - right))
        h, w = item.image.shape[:2]
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        below = (xs - float((left + right)[0] / 2)) * float(down[0]) + (ys - float((left + right)[1] / 2)) * float(
            down[1]
        )
        top = np.clip(0.5 - below, 0.0, 1.0)
        image = np.asarray(item.image)
        return pyramid(image, top), pyramid(image, 1.0 - top)

    return _cached("hat_halves", item, make)


def _hat_layer(item: Item, placement: HatPlacement, width: int, height: int) -> _Layer | None:
    if placement.squash >= 0.999:
        return _warp_layer([(_pyramid_of(item), placement.matrix)], width, height)
    # piecewise: above the brim line the similarity, below it the same after squashing the item's down axis
    left, right = item.anchor("left_brim"), item.anchor("right_brim")
    mid, n = (left + right) / 2, _perp(_unit(left - right))
    squash = np.eye(3)
    squash[:2, :2] -= (1.0 - placement.squash) * np.outer(n, n)
    squash[:2, 2] = (1.0 - placement.squash) * np.outer(n, n) @ mid
    top, bottom = _hat_halves(item)
    return _warp_layer([(top, placement.matrix), (bottom, placement.matrix @ squash)], width, height)


def render_hat(scene: Scene, item: Item) -> Rendered:
    """A hat seated on the head above the forehead, crown up, turned with the head's roll, drawn over everything.
    `placed`: left_brim, right_brim, crown."""
    placement = place_hat(scene, item)
    if placement is None:
        return _unchanged(scene)
    canvas = _Canvas(scene.bgr)
    layer = _hat_layer(item, placement, scene.width, scene.height)
    if layer is not None:
        canvas.draw(layer)
    return canvas.result(placement.placed)


# --- earrings ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EarringPlacement:
    side: str  # the wearer's "left" or "right" ear
    matrix: np.ndarray  # 3x3 item px -> frame px (the right ear's uses the mirrored image)
    hook: np.ndarray  # (2,) px: the lobe
    visibility: float  # 0 hidden (the ear turned away) .. 1
    occluded_by_face: bool  # the face is in front of it (ear turning away)


def _earring_length_px(item: Item) -> float:
    def make() -> np.ndarray:
        ys = np.nonzero(np.asarray(item.image)[:, :, 3] > 127)[0]
        hook_y = float(item.anchor("hook")[1])
        if len(ys) == 0:
            return np.ones(1)
        length = float(ys.max()) + 1.0 - hook_y
        return np.array([length if length >= 1.0 else float(ys.max() - ys.min() + 1)])

    return float(_cached("earring_length", item, make)[0])


def place_earrings(scene: Scene, item: Item) -> list[EarringPlacement]:
    """Both ears' earrings (hidden ones with visibility 0); empty without a face or a head pose."""
    head = _head(scene)
    if head is None:
        return []
    hook = item.anchor("hook")
    w = item.image.shape[1]
    length_px = _earring_length_px(item)
    u, _ = head.axes(np.array([0.0, LOBE[1], LOBE[2]]))
    roll = math.atan2(float(u[1]), float(u[0]))
    swing = EARRING_ROLL_FOLLOW * roll
    out: list[EarringPlacement] = []
    for side, sign in (("left", 1.0), ("right", -1.0)):
        lobe3 = np.array([sign * LOBE[0], LOBE[1], LOBE[2]])
        lobe = head.project(lobe3)[0]
        if not np.all(np.isfinite(lobe)):
            continue
        away = head.away(sign, lobe3)
        lo, hi = EAR_AWAY_HIDDEN
        visibility = float(np.clip((hi - away) / (hi - lo), 0.0, 1.0))
        scale = _size_cm(item, "length", DEFAULT_EARRING_LENGTH_CM) * head.px_per_cm(lobe3) / max(length_px, 1.0)
        src = hook if sign > 0 else np.array([w - float(hook[0]), float(hook[1])])
        matrix = _similarity(src, lobe, np.array([0.0, 1.0]), np.array([-math.sin(swing), math.cos(swing)]), scale)
        out.append(EarringPlacement(side, matrix, lobe, visibility, away > EAR_AWAY_OCCLUDED))
    return out


def render_earrings(scene: Scene, item: Item) -> Rendered:
    """Earrings hanging from both ear lobes; an ear turned away hides its earring. `placed`: left_hook and/or
    right_hook (the wearer's sides) for the earrings that show."""
    placements = place_earrings(scene, item)
    points = face_points(scene)
    if not placements or points is None:
        return _unchanged(scene)
    canvas = _Canvas(scene.bgr)
    placed: dict[str, np.ndarray] = {}
    for p in placements:
        if p.visibility <= 0.0:
            continue
        levels = _pyramid_of(item, "image" if p.side == "left" else "mirrored")
        layer = _warp_layer([(levels, p.matrix)], scene.width, scene.height)
        if layer is None:
            continue
        keep: np.ndarray | float = (
            p.visibility * (1.0 - _hull_mask(points, layer)) if p.occluded_by_face else p.visibility
        )
        if float((layer.alpha * keep).max()) <= 0.0:
            continue
        canvas.draw(layer, keep)
        placed[f"{p.side}_hook"] = p.hook
    return canvas.result(placed)


# --- necklaces --------------------------------------------------------------------------------------------------


def necklace_drop_cm(length_cm: float) -> float:
    """How far the lowest point of a necklace of this length hangs below the sides of the neck base (cm)."""
    return 1.5 + 0.7 * max(0.0, length_cm - 40.0)


def _shoulders(scene: Scene) -> tuple[np.ndarray, np.ndarray] | None:
    """(subject's left shoulder, right shoulder) px when both are visible."""
    if scene.keypoints is None:
        return None
    kp = np.asarray(scene.keypoints, np.float64)
    if kp.ndim != 2 or kp.shape[0] < 13 or kp.shape[1] < 2:
        return None
    left, right = kp[11], kp[12]
    if not (np.all(np.isfinite(left[:2])) and np.all(np.isfinite(right[:2]))):
        return None
    if kp.shape[1] > 2 and min(float(left[2]), float(right[2])) < MIN_VISIBILITY:
        return None
    if float(np.linalg.norm(left[:2] - right[:2])) < 2.0:
        return None
    return left[:2], right[:2]


def place_necklace(scene: Scene, item: Item) -> dict[str, np.ndarray] | None:
    """Frame positions of the necklace's anchors (left_end, right_end, centre); None without a face and shoulders."""
    head = _head(scene)
    shoulders = _shoulders(scene)
    if head is None and shoulders is None:
        return None
    if head is None:
        assert shoulders is not None
        left, right = shoulders
        u = _unit(left - right)
        px_per_cm = float(np.linalg.norm(left - right)) / SHOULDER_WIDTH_CM
        base_line = (left + right) / 2
        chin = base_line - _perp(u) * CHIN_TO_SHOULDERS_CM * px_per_cm
    else:
        chin = head.points[152, :2]
        px_per_cm = head.focal / float(head.translation[2])
        if shoulders is not None:
            left, right = shoulders
            u = _unit(left - right)
            base_line = (left + right) / 2
        else:
            u, _ = head.axes(np.array([0.0, 4.0, 2.0]))
            base_line = chin + _perp(u) * CHIN_TO_SHOULDERS_CM * px_per_cm
    v = _perp(u)
    if shoulders is not None and head is not None and float(u @ head.axes(np.array([0.0, 4.0, 2.0]))[0]) < 0:
        return None  # the shoulders are seen from behind: the front of the neck faces away
    if shoulders is not None and head is None and u[0] < 0:
        return None
    centre_line = base_line + u * float((chin - base_line) @ u) * NECK_FOLLOWS_CHIN
    neck_height = max(float((base_line - chin) @ v), 0.0)
    base = centre_line - v * min(NECK_BASE_CM * px_per_cm, 0.45 * neck_height)
    half = NECK_WIDTH_CM / 2 * px_per_cm
    drop = necklace_drop_cm(_size_cm(item, "length", DEFAULT_NECKLACE_LENGTH_CM)) * px_per_cm
    return {"left_end": base + u * half, "right_end": base - u * half, "centre": base + v * drop}


def render_necklace(scene: Scene, item: Item) -> Rendered:
    """A necklace around the neck base hanging towards the sternum, behind the chin. `placed`: left_end,
    right_end, centre."""
    placed = place_necklace(scene, item)
    if placed is None:
        return _unchanged(scene)
    names = ("left_end", "right_end", "centre")
    src = np.stack([item.anchor(n) for n in names]).astype(np.float32)
    dst = np.stack([placed[n] for n in names]).astype(np.float32)
    e1, e2 = src[1] - src[0], src[2] - src[0]
    if abs(float(e1[0] * e2[1] - e1[1] * e2[0])) < 1.0:
        return _unchanged(scene)
    matrix = _affine3(cv2.getAffineTransform(src, dst))
    layer = _warp_layer([(_pyramid_of(item), matrix)], scene.width, scene.height)
    if layer is None:
        return _unchanged(scene)
    canvas = _Canvas(scene.bgr)
    points = face_points(scene)
    canvas.draw(layer, None if points is None else 1.0 - _hull_mask(points, layer))
    return canvas.result(placed)
