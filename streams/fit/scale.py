"""Metric scale of a frame (centimetres per image pixel): from the shopper's stated height, else the eyes (iris
and inter-pupillary distance), else none.

Priority (`choose_scale`): height > iris > none. Each `Scale` carries its expected relative error (about one
standard deviation; ~95 % of shoppers within twice that), which the aggregator turns into confidence.

Height (expected error ~3 %). The stature in pixels is the length of the kinematic chain head top -> shoulders ->
hips -> knee -> ankle -> floor, summed segment by segment, so a bent or spread pose (yoga, walking) still gives the
standing height. Segment proportions of stature (Drillis & Contini; Winter, "Biomechanics and motor control of
human movement"): eye level 0.936 H, shoulder 0.818 H, hip joint 0.530 H, knee 0.285 H, ankle 0.039 H. The vertex
is not a keypoint: it lies HEAD_ABOVE_EYES = (1 - 0.936) / (0.936 - 0.818) = 0.54 of the eye -> mid-shoulder
distance above the eyes. The leg is the longer of the visible ones (foreshortening only shortens), and the ankle ->
floor part is the ankle -> heel distance (the heel keypoint sits at the back of the heel, low). Error budget:
self-reported height ~1 % (people round up by ~1-2 cm), head-proportion factor ~1.5 % of H (the vertex is ~11 cm
above the eyes, +-2.5 cm between people), keypoint placement ~1-2 % (a few px over ~500 px of body). Needs the
ankles/heels in the frame: without them, None.

Iris and inter-pupillary distance (expected error ~6-9 %). Two references on the face mesh, combined:
- the horizontal visible iris diameter, 11.7 mm, population SD ~0.5 mm (IRIS_POP_ERROR ~4 %), nearly independent
  of body size; we take the larger of the horizontal and vertical diameters of each iris (yaw shortens the
  horizontal one, pitch the vertical one) and average both eyes;
- the inter-pupillary distance (iris centre to iris centre, with the mesh z so a turned head does not shorten
  it), population mean 63 mm, SD ~3.5 mm (IPD_POP_ERROR ~5.5 %).
Each also carries the landmark model's placement error, ~1 px: +-4 % on a 25 px iris but +-12 % on the 8 px iris
of a webcam at arm's length, where the 45 px IPD is still good to 2 %. The scale is the inverse-variance weighted
mean of the two; its error the combined one, plus DEPTH_ERROR (~5 %: the face is at roughly, not exactly, the
body's depth). When the two disagree beyond DISAGREE_SIGMAS of their joint error (a squint, a wrong mesh) the
scale is flagged and its error raised to DISAGREE_ERROR.

None: no absolute measurement. The measurements become ratios to the shoulder width (relative, low confidence).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

IRIS_DIAMETER_CM = 1.17
IPD_CM = 6.3
HEAD_ABOVE_EYES = 0.54  # vertex above the eyes, as a fraction of the eye -> mid-shoulder distance
MIN_VISIBILITY = 0.5
MIN_IRIS_PX = 3.0  # below this the iris edge points are noise
HEIGHT_ERROR = 0.03
MIN_HEIGHT_CM, MAX_HEIGHT_CM = 80.0, 250.0  # a plausible stated height; the worker refuses others
IRIS_POP_ERROR = 0.04
IPD_POP_ERROR = 0.055
LANDMARK_PX_ERROR = 1.0  # px: placement error of the iris points; relative error = this / the distance
DEPTH_ERROR = 0.05
DISAGREE_SIGMAS = 2.5
DISAGREE_ERROR = 0.15

# BlazePose indices.
NOSE, LEFT_EYE, RIGHT_EYE = 0, 2, 5
LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_HIP, RIGHT_HIP = 11, 12, 23, 24
LEFT_KNEE, RIGHT_KNEE, LEFT_ANKLE, RIGHT_ANKLE = 25, 26, 27, 28
LEFT_HEEL, RIGHT_HEEL, LEFT_FOOT_INDEX, RIGHT_FOOT_INDEX = 29, 30, 31, 32
# Face mesh: iris of the image-left eye (centre, +x, -y, -x, +y edges), then the image-right eye's.
IRIS_A = (468, 469, 470, 471, 472)
IRIS_B = (473, 474, 475, 476, 477)

Method = Literal["height", "iris", "none"]


@dataclass(frozen=True)
class Scale:
    cm_per_px: float | None  # None: no absolute scale
    method: Method
    expected_error: float  # relative, ~1 SD; 1.0 when there is no scale

    @property
    def relative(self) -> bool:
        return self.cm_per_px is None


NO_SCALE = Scale(None, "none", 1.0)


@dataclass(frozen=True)
class IrisScale:
    """Scale from the iris diameter and the inter-pupillary distance, combined (see the module docstring)."""

    iris_px: float  # mean iris diameter, px
    ipd_px: float

    @property
    def iris_error(self) -> float:
        return math.hypot(IRIS_POP_ERROR, LANDMARK_PX_ERROR / self.iris_px)

    @property
    def ipd_error(self) -> float:
        return math.hypot(IPD_POP_ERROR, LANDMARK_PX_ERROR / self.ipd_px)

    @property
    def cm_per_px_iris(self) -> float:
        return IRIS_DIAMETER_CM / self.iris_px

    @property
    def cm_per_px_ipd(self) -> float:
        return IPD_CM / self.ipd_px

    @property
    def cm_per_px(self) -> float:
        wi, wp = self.iris_error**-2, self.ipd_error**-2
        return (wi * self.cm_per_px_iris + wp * self.cm_per_px_ipd) / (wi + wp)

    @property
    def disagree(self) -> bool:
        gap = abs(math.log(self.cm_per_px_iris / self.cm_per_px_ipd))
        return gap > DISAGREE_SIGMAS * math.hypot(self.iris_error, self.ipd_error)

    @property
    def expected_error(self) -> float:
        if self.disagree:
            return DISAGREE_ERROR
        combined = (self.iris_error**-2 + self.ipd_error**-2) ** -0.5
        return math.hypot(combined, DEPTH_ERROR)


def seen(keypoints: np.ndarray) -> np.ndarray:
    """Per keypoint, how surely it is seen in the frame: its visibility, capped by its presence (BlazePose gives
    points beyond the frame's edge a guessed position, sometimes with a high visibility but a low presence)."""
    kp = np.asarray(keypoints, np.float64)
    return np.minimum(kp[:, 2], kp[:, 3]) if kp.shape[1] > 3 else kp[:, 2]


def in_frame(keypoints: np.ndarray, width: int, height: int) -> np.ndarray:
    """The keypoints with the visibility of those outside the width x height frame set to 0: BlazePose places
    them anyway, at times with a high visibility and presence (hips just below a webcam's frame)."""
    kp = np.array(keypoints, np.float64)
    outside = (kp[:, 0] < 0) | (kp[:, 1] < 0) | (kp[:, 0] >= width) | (kp[:, 1] >= height)
    kp[outside, 2] = 0.0
    return kp


def _visible(keypoints: np.ndarray, *idx: int) -> bool:
    return bool(np.all(seen(keypoints)[list(idx)] >= MIN_VISIBILITY))


def _dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


def stature_px(keypoints: np.ndarray) -> float | None:
    """Standing height in pixels from the pose's kinematic chain (see the module docstring); None without feet."""
    kp = np.asarray(keypoints, np.float64)
    if not _visible(kp, LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_HIP, RIGHT_HIP):
        return None
    eyes = [i for i in (LEFT_EYE, RIGHT_EYE) if seen(kp)[i] >= MIN_VISIBILITY]
    if not eyes:
        return None
    eye = kp[eyes, :2].mean(axis=0)
    shoulder = (kp[LEFT_SHOULDER, :2] + kp[RIGHT_SHOULDER, :2]) / 2
    hip = (kp[LEFT_HIP, :2] + kp[RIGHT_HIP, :2]) / 2
    legs = []
    for h, k, a, heel in (
        (LEFT_HIP, LEFT_KNEE, LEFT_ANKLE, LEFT_HEEL),
        (RIGHT_HIP, RIGHT_KNEE, RIGHT_ANKLE, RIGHT_HEEL),
    ):
        if _visible(kp, h, k, a, heel):
            legs.append(_dist(kp[h, :2], kp[k, :2]) + _dist(kp[k, :2], kp[a, :2]) + _dist(kp[a, :2], kp[heel, :2]))
    if not legs:
        return None
    head = _dist(eye, shoulder) * (1.0 + HEAD_ABOVE_EYES)
    return head + _dist(shoulder, hip) + max(legs)


def scale_from_height(keypoints: np.ndarray | None, height_cm: float | None) -> Scale | None:
    """Scale from the stated height and the pose's stature in px; None without height, pose or visible feet."""
    if keypoints is None or height_cm is None or height_cm <= 0:
        return None
    px = stature_px(keypoints)
    if px is None or px <= 1.0:
        return None
    return Scale(float(height_cm) / px, "height", HEIGHT_ERROR)


def _iris_diameter(face: np.ndarray, idx: tuple[int, ...]) -> float:
    _, px, my, mx, py = idx
    return max(_dist(face[px, :2], face[mx, :2]), _dist(face[my, :2], face[py, :2]))


def scale_from_iris(face: np.ndarray | None) -> IrisScale | None:
    """Scale from the 478-point mesh's irises (11.7 mm) and their distance (63 mm); None without irises."""
    if face is None or len(face) < 478:
        return None
    f = np.asarray(face, np.float64)
    if not np.all(np.isfinite(f[468:478])):
        return None
    iris_px = (_iris_diameter(f, IRIS_A) + _iris_diameter(f, IRIS_B)) / 2
    ipd_px = _dist(f[IRIS_A[0]], f[IRIS_B[0]])  # with z: yaw does not shorten it
    if iris_px < MIN_IRIS_PX or ipd_px <= iris_px:
        return None
    return IrisScale(iris_px, ipd_px)


def choose_scale(
    keypoints: np.ndarray | None = None, face: np.ndarray | None = None, height_cm: float | None = None
) -> Scale:
    """Height when stated and the feet are seen, else the iris, else no scale (relative measurements)."""
    by_height = scale_from_height(keypoints, height_cm)
    if by_height is not None:
        return by_height
    iris = scale_from_iris(face)
    if iris is not None:
        return Scale(iris.cm_per_px, "iris", iris.expected_error)
    return NO_SCALE
