"""Face perception: 478 face landmarks per frame (468-point mesh + 10 iris points), tracked across frames.

One job: turn RGB frames (and the pose, when there is one) into MediaPipe's refined 478 face landmarks, the
face-presence score and the head pose, batched across sessions, with the models passed in as callables.

Follows MediaPipe 0.10.14 (google/mediapipe `mediapipe/modules/...`):
- face_detection/face_detection_short_range*.pbtxt: 128x128 letterboxed input in [-1, 1], decoded by `ssd.FACE`.
  Keypoints: 0 right eye, 1 left eye (the subject's; the right eye is on the image left), 2 nose, 3 mouth,
  4 right ear, 5 left ear.
- face_landmark/face_detection_front_detection_to_roi.pbtxt: detection box, rotation eye 0 -> eye 1 to 0 degrees,
  scale 1.5, square on the long side (`face_roi_from_detection`).
- holistic_landmark/face_landmarks_from_pose_to_recrop_roi.pbtxt: box around pose keypoints 0..10, rotation right
  eye (5) -> left eye (2), scale 3.0: the region the face detector searches (`face_roi_from_pose`); then
  holistic_landmark/face_detection_front_detections_to_roi.pbtxt: box of the 6 detection keypoints, scale 2.0,
  shift_y -0.1 (`face_roi_from_pose_detection`).
- face_landmark/face_landmark_cpu.pbtxt: 192x192 crop of the rotated ROI in [0, 1], border replicated; 1404 =
  468 x (x, y, z) in crop pixels (z on the x scale); the face flag is a logit (TensorsToFloats SIGMOID), face
  present when >= 0.5.
- face_landmark/face_landmark_landmarks_to_roi.pbtxt (and the Tasks FaceLandmarker): next frame's ROI = box of
  the landmarks, rotation 33 -> 263, scale 1.5, square (`face_roi_from_landmarks`).
- iris_landmark/iris_landmark_landmarks_to_roi.pbtxt, iris_landmark_left_and_right_cpu.pbtxt, iris_landmark_cpu.pbtxt:
  eye ROI = box of the eye corners 33/133 (image-left eye) and 362/263 (image-right eye), rotation first -> second
  corner, scale 2.3, square; 64x64 crop in [0, 1]; the image-right eye is mirrored before inference (the model only
  knows one eye) and mirrored back; outputs 71 eye-contour points (213) and 5 iris points (15).
- Point order of the 478 output: that of face_landmark_with_attention (tensors_to_face_landmarks_with_attention.pbtxt):
  468..472 the iris of the image-left eye (centre, then the edges at +x, -y, -x, +y in the image), 473..477 the
  image-right eye's; iris z = mean mesh z of that eye's 16-point contour; the eye contour indices it refines are
  `LEFT_EYE_CONTOUR` / `RIGHT_EYE_CONTOUR` (also iris_tracking's update_face_landmarks_calculator.cc).
- Smoothing in video: the Tasks FaceLandmarker's One-Euro filter (min_cutoff 0.05, beta 80, derivate_cutoff 1),
  values scaled by 1 / ((box width + box height) / 2) of the landmarks.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from streams.vision import ssd
from streams.vision.face_geometry import FaceModel, as_face_model, solve_head_pose
from streams.vision.geometry import Square, letterbox, rotation_towards
from streams.vision.smoothing import POSE_BETA, POSE_DERIVATE_CUTOFF, POSE_MIN_CUTOFF, OneEuroState, one_euro

LANDMARK_SIZE = 192
IRIS_SIZE = 64
NUM_MESH = 468
NUM_POINTS = 478
MIN_FACE_PRESENCE = 0.5
ROI_SCALE = 1.5
POSE_RECROP_SCALE = 3.0
POSE_DETECTION_SCALE = 2.0
POSE_DETECTION_SHIFT_Y = -0.1
IRIS_ROI_SCALE = 2.3
MIN_ROI_SIDE = 8.0  # px: a tracked ROI smaller than this is treated as lost
# Ours: MediaPipe's holistic graph has only a TODO ("do not predict face when most of the face landmarks from pose
# are invisible"). Mean visibility of pose keypoints 0..10.
MIN_POSE_FACE_VISIBILITY = 0.5
# Still photos / first frames: a second landmark pass on the ROI from the first pass's mesh (see track_faces).
# Measured against MediaPipe's 478-point references (median px, all 478 points, detector ROI): portrait 1.94 -> 1.79,
# business-person 1.73 -> 1.47; from the pose ROI: 2.12 -> 2.05 and 2.17 -> 1.54.
REFINE_DETECTED = True
# Overwrite the mesh's 2 x 71 eye points with the iris model's eye contour (x, y), as the legacy iris_tracking graph
# does (UpdateFaceLandmarksCalculator). Off: against the 478-point references it makes the eye points worse
# (median 1.46 -> 2.42 px on the portrait, 1.34 -> 2.07 px on business-person; even the 16 eye-opening points alone).
REFINE_EYES = False
# Tasks FaceLandmarker's landmark filter (face_landmarks_detector_graph.cc): the same constants as the pose filter.
FACE_MIN_CUTOFF = POSE_MIN_CUTOFF
FACE_BETA = POSE_BETA
FACE_DERIVATE_CUTOFF = POSE_DERIVATE_CUTOFF

LEFT_EYE_CORNERS = (33, 133)  # image-left eye (the subject's right): not mirrored
RIGHT_EYE_CORNERS = (362, 263)  # image-right eye (the subject's left): mirrored for the iris model
LEFT_IRIS = tuple(range(468, 473))
RIGHT_IRIS = tuple(range(473, 478))
ROTATION_POINTS = (33, 263)  # face_landmark_landmarks_to_roi

# fmt: off
LEFT_EYE_CONTOUR = (
    33, 7, 163, 144, 145, 153, 154, 155, 133,  # lower contour
    246, 161, 160, 159, 158, 157, 173,  # upper contour (without corners)
    130, 25, 110, 24, 23, 22, 26, 112, 243,  # halo x2 lower
    247, 30, 29, 27, 28, 56, 190,  # halo x2 upper
    226, 31, 228, 229, 230, 231, 232, 233, 244,  # halo x3 lower
    113, 225, 224, 223, 222, 221, 189,  # halo x3 upper
    35, 124, 46, 53, 52, 65,  # halo x4 upper / eyebrow inner contour
    143, 111, 117, 118, 119, 120, 121, 128, 245,  # halo x5 lower
    156, 70, 63, 105, 66, 107, 55, 193,  # halo x5 upper / eyebrow outer contour
)
RIGHT_EYE_CONTOUR = (
    263, 249, 390, 373, 374, 380, 381, 382, 362,
    466, 388, 387, 386, 385, 384, 398,
    359, 255, 339, 254, 253, 252, 256, 341, 463,
    467, 260, 259, 257, 258, 286, 414,
    446, 261, 448, 449, 450, 451, 452, 453, 464,
    342, 445, 444, 443, 442, 441, 413,
    265, 353, 276, 283, 282, 295,
    372, 340, 346, 347, 348, 349, 350, 357, 465,
    383, 300, 293, 334, 296, 336, 285, 417,
)
# fmt: on
EYE_CONTOUR_CORE = 16  # the first 16 contour points are the eye opening (iris z is their mean mesh z)
# The iris model's 5 points in its (unmirrored) crop: centre, +x edge, -y edge, -x edge, +y edge. Mirroring swaps
# the two horizontal edges; this order restores the image order for the mirrored eye.
MIRRORED_IRIS_ORDER = (0, 3, 2, 1, 4)

Detector = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
LandmarkModel = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
IrisModel = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


# --- ROIs -------------------------------------------------------------------------------------------------------


def _transform_rect(
    cx: float, cy: float, width: float, height: float, rotation: float, scale: float, shift_y: float = 0.0
) -> Square:
    """MediaPipe's RectTransformationCalculator in pixels: shift along the rotated y axis, square on the long side."""
    cx = cx - height * shift_y * math.sin(rotation)
    cy = cy + height * shift_y * math.cos(rotation)
    return Square(float(cx), float(cy), float(max(width, height) * scale), float(rotation))


def _box_rect(points: np.ndarray, start: int, end: int, scale: float, shift_y: float = 0.0) -> Square:
    """LandmarksToDetection + DetectionsToRects + RectTransformation: axis-aligned box of the points, rotated."""
    xy = np.asarray(points, dtype=np.float64)[:, :2]
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    rotation = rotation_towards(xy[start], xy[end], 0.0)
    centre = (lo + hi) / 2
    return _transform_rect(centre[0], centre[1], hi[0] - lo[0], hi[1] - lo[1], rotation, scale, shift_y)


def face_roi_from_detection(det: ssd.Detection) -> Square:
    """Landmark ROI from a full-frame face detection (face_detection_front_detection_to_roi: box, x1.5, square)."""
    x0, y0, x1, y1 = (float(v) for v in det.box)
    rotation = rotation_towards(det.keypoints[0], det.keypoints[1], 0.0)
    return _transform_rect((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, rotation, ROI_SCALE)


def face_roi_from_pose_detection(det: ssd.Detection) -> Square:
    """Landmark ROI from a detection inside the pose's face region (holistic: keypoint box, x2, shift_y -0.1)."""
    return _box_rect(det.keypoints, 0, 1, POSE_DETECTION_SCALE, POSE_DETECTION_SHIFT_Y)


def pose_face_visible(keypoints: np.ndarray | None) -> bool:
    """Whether the pose's face keypoints (0..10) are visible enough to look for a face there."""
    if keypoints is None:
        return False
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.shape[0] < 11 or not np.all(np.isfinite(kp[:11, :2])):
        return False
    visibility = kp[:11, 2] if kp.shape[1] > 2 else np.ones(11)
    return float(visibility.mean()) >= MIN_POSE_FACE_VISIBILITY


def face_roi_from_pose(keypoints: np.ndarray) -> Square | None:
    """The region to search for the face from pose keypoints (33, >=2) (holistic's re-crop ROI), or None.

    Box of keypoints 0..10 (nose, eyes, ears, mouth), rotation right eye (5) -> left eye (2), scale 3.0, square.
    None when those keypoints are not visible enough (mean visibility < MIN_POSE_FACE_VISIBILITY).
    """
    if not pose_face_visible(keypoints):
        return None
    roi = _box_rect(np.asarray(keypoints)[:11], 5, 2, POSE_RECROP_SCALE)
    return roi if roi.side > 1.0 else None


def face_roi_from_landmarks(points: np.ndarray) -> Square:
    """Next frame's landmark ROI from this frame's mesh (468 or 478, >= 2): box, rotation 33 -> 263, x1.5, square."""
    return _box_rect(np.asarray(points)[:, :2], ROTATION_POINTS[0], ROTATION_POINTS[1], ROI_SCALE)


def eye_rois(points: np.ndarray) -> tuple[Square, Square]:
    """Iris-model ROIs (image-left eye, image-right eye) from the mesh: corner box, x2.3, square."""
    pts = np.asarray(points)
    left = _box_rect(pts[list(LEFT_EYE_CORNERS)], 0, 1, IRIS_ROI_SCALE)
    right = _box_rect(pts[list(RIGHT_EYE_CORNERS)], 0, 1, IRIS_ROI_SCALE)
    return left, right


def roi_contains(roi: Square, point: np.ndarray, margin: float = 0.0) -> bool:
    """Whether an image point lies inside the rotated square (grown by `margin` of its side on each edge)."""
    u, v = roi.to_crop(1) @ np.array([float(point[0]), float(point[1]), 1.0])
    return bool(-margin <= u <= 1 + margin and -margin <= v <= 1 + margin)


# --- model inputs and outputs ----------------------------------------------------------------------------------


def detector_input(rgb: np.ndarray, region: Square) -> np.ndarray:
    """128x128x3 float32 in [-1, 1] of a (rotated) square region, zero border (the letterbox for the full frame)."""
    spec = ssd.FACE
    crop = region.crop(rgb, spec.size, cv2.BORDER_CONSTANT, 0.0)
    return (spec.low + crop.astype(np.float32) * ((spec.high - spec.low) / 255.0)).astype(np.float32)


def face_input(rgb: np.ndarray, roi: Square) -> np.ndarray:
    """192x192x3 float32 in [0, 1] of the rotated ROI, border replicated."""
    return (roi.crop(rgb, LANDMARK_SIZE, cv2.BORDER_REPLICATE).astype(np.float32) / 255.0).astype(np.float32)


def decode_landmarks(raw: np.ndarray, roi: Square) -> np.ndarray:
    """Face-mesh output (1404,) -> (468, 3) float32: x, y in image pixels, z in pixels on the x scale."""
    pts = np.asarray(raw, dtype=np.float64).reshape(NUM_MESH, 3)
    m = roi.to_image(LANDMARK_SIZE)
    xy = pts[:, :2] @ m[:, :2].T + m[:, 2]
    z = pts[:, 2:3] * (roi.side / LANDMARK_SIZE)
    return np.concatenate([xy, z], axis=1).astype(np.float32)


def face_score(flag: np.ndarray | float) -> float:
    """Face-presence probability from the mesh model's face flag (a logit)."""
    return float(ssd.sigmoid(np.asarray(flag, dtype=np.float64).reshape(-1)[0]))


def _iris_matrix(roi: Square, mirrored: bool) -> np.ndarray:
    """2x3 crop -> image matrix of an eye ROI; mirrored crops read x as IRIS_SIZE - x."""
    m = roi.to_image(IRIS_SIZE)
    if not mirrored:
        return m
    flip = np.array([[-1.0, 0.0, float(IRIS_SIZE)], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    return np.asarray(m @ flip)


def iris_input(rgb: np.ndarray, roi: Square, mirrored: bool) -> np.ndarray:
    """64x64x3 float32 in [0, 1] of an eye ROI, border replicated, mirrored left-right for the image-right eye."""
    crop = cv2.warpAffine(
        rgb,
        _iris_matrix(roi, mirrored),
        (IRIS_SIZE, IRIS_SIZE),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return (crop.astype(np.float32) / 255.0).astype(np.float32)


def decode_iris(
    contour_raw: np.ndarray, iris_raw: np.ndarray, roi: Square, mirrored: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Iris-model outputs (213,) and (15,) -> eye contour (71, 3) and iris (5, 3) in image pixels, image order."""
    m = _iris_matrix(roi, mirrored)
    k = roi.side / IRIS_SIZE

    def to_image(raw: np.ndarray, n: int) -> np.ndarray:
        pts = np.asarray(raw, dtype=np.float64).reshape(n, 3)
        return np.concatenate([pts[:, :2] @ m[:, :2].T + m[:, 2], pts[:, 2:3] * k], axis=1)

    contour, iris = to_image(contour_raw, 71), to_image(iris_raw, 5)
    if mirrored:
        iris = iris[list(MIRRORED_IRIS_ORDER)]
    return contour.astype(np.float32), iris.astype(np.float32)


def assemble_478(
    mesh: np.ndarray,
    left_contour: np.ndarray,
    left_iris: np.ndarray,
    right_contour: np.ndarray,
    right_iris: np.ndarray,
    refine_eyes: bool = REFINE_EYES,
) -> np.ndarray:
    """468 mesh + both eyes' outputs -> (478, 3) in MediaPipe's refined order (see the module docstring).

    `left_*` belong to the image-left eye (corners 33/133), `right_*` to the image-right eye (362/263). With
    `refine_eyes` the mesh's 2 x 71 eye points take the contour's x, y (their z stays the mesh's).
    """
    pts = np.asarray(mesh, dtype=np.float32)[:NUM_MESH].copy()
    if refine_eyes:
        pts[list(LEFT_EYE_CONTOUR), :2] = np.asarray(left_contour)[:, :2]
        pts[list(RIGHT_EYE_CONTOUR), :2] = np.asarray(right_contour)[:, :2]
    out = np.empty((NUM_POINTS, 3), dtype=np.float32)
    out[:NUM_MESH] = pts
    eyes = ((left_iris, LEFT_EYE_CONTOUR, LEFT_IRIS), (right_iris, RIGHT_EYE_CONTOUR, RIGHT_IRIS))
    for iris, contour_ids, target in eyes:
        out[list(target), :2] = np.asarray(iris)[:, :2]
        out[list(target), 2] = pts[list(contour_ids[:EYE_CONTOUR_CORE]), 2].mean()
    return out


# --- tracking across frames ------------------------------------------------------------------------------------


@dataclass
class FaceTrack:
    """One session's face state, small, persisted by the caller between frames."""

    roi: Square | None  # landmark ROI for the next frame (None: not tracking, detect)
    landmarks: OneEuroState | None  # One-Euro filter memory of the 478 x 3 points


@dataclass(frozen=True)
class Face:
    """One frame's face."""

    points: np.ndarray  # (478, 3) float32: x px, y px, z (px, x scale; smaller = nearer the camera)
    score: float  # face presence probability
    roi: Square  # the ROI the mesh model looked at
    rotation: np.ndarray  # (3, 3) head rotation, camera frame (face_geometry); NaN without a face model
    translation: np.ndarray  # (3,) cm, camera frame; NaN without a face model
    detector_ran: bool  # whether this frame's ROI came from the face detector (not tracking)


def _object_scale(points: np.ndarray) -> float:
    """MediaPipe's landmark-filter object scale: mean of the landmarks' box width and height."""
    xy = np.asarray(points)[:, :2]
    span = xy.max(axis=0) - xy.min(axis=0)
    return float(max((span[0] + span[1]) / 2.0, 1e-6))


def _flat(array: np.ndarray, n: int) -> np.ndarray:
    return np.asarray(array).reshape(n, -1)


def _run_detector(
    images: Sequence[np.ndarray], regions: dict[int, tuple[Square, bool]], detect: Detector
) -> dict[int, Square]:
    """One detector call for the regions {image: (region, from_pose)} -> landmark ROIs where a face was found."""
    if not regions:
        return {}
    order = sorted(regions)
    boxes, scores = detect(np.stack([detector_input(images[i], regions[i][0]) for i in order]))
    boxes, scores = np.asarray(boxes), np.asarray(scores)
    rois: dict[int, Square] = {}
    for j, i in enumerate(order):
        region, from_pose = regions[i]
        found = ssd.decode(boxes[j].reshape(-1, 16), scores[j].reshape(-1, 1), ssd.FACE, region)
        if found:
            rois[i] = face_roi_from_pose_detection(found[0]) if from_pose else face_roi_from_detection(found[0])
    return rois


def _run_landmarks(
    images: Sequence[np.ndarray], rois: dict[int, Square], landmarks: LandmarkModel
) -> dict[int, tuple[np.ndarray, float]]:
    """One mesh-model call for {image: roi} -> {image: (468 x 3 points, presence score)}."""
    if not rois:
        return {}
    order = sorted(rois)
    raw, flags = landmarks(np.stack([face_input(images[i], rois[i]) for i in order]))
    raw, flags = _flat(raw, len(order)), _flat(flags, len(order))
    return {i: (decode_landmarks(raw[j], rois[i]), face_score(flags[j])) for j, i in enumerate(order)}


def _run_iris(images: Sequence[np.ndarray], meshes: dict[int, np.ndarray], iris: IrisModel) -> dict[int, np.ndarray]:
    """One iris-model call (2 crops per face) -> {image: (478, 3)}."""
    if not meshes:
        return {}
    order = sorted(meshes)
    crops: list[np.ndarray] = []
    rois: list[tuple[Square, Square]] = []
    for i in order:
        left, right = eye_rois(meshes[i])
        rois.append((left, right))
        crops += [iris_input(images[i], left, False), iris_input(images[i], right, True)]
    contours, irises = iris(np.stack(crops))
    contours, irises = _flat(contours, len(crops)), _flat(irises, len(crops))
    out: dict[int, np.ndarray] = {}
    for j, i in enumerate(order):
        left, right = rois[j]
        lc, li = decode_iris(contours[2 * j], irises[2 * j], left, False)
        rc, ri = decode_iris(contours[2 * j + 1], irises[2 * j + 1], right, True)
        out[i] = assemble_478(meshes[i], lc, li, rc, ri, refine_eyes=REFINE_EYES)
    return out


def _search_region(rgb: np.ndarray, pose: np.ndarray | None) -> tuple[Square, bool]:
    """Where the detector looks: the pose's face region when the pose shows a face, else the whole frame."""
    if pose is not None:
        roi = face_roi_from_pose(pose)
        if roi is not None:
            return roi, True
    h, w = rgb.shape[:2]
    return letterbox(w, h), False


def _track_agrees_with_pose(roi: Square, pose: np.ndarray | None) -> bool:
    """A tracked ROI is kept unless the pose shows the face (nose) outside it (tracking drifted or jumped)."""
    if pose is None or not pose_face_visible(pose):
        return True
    return roi_contains(roi, np.asarray(pose)[0, :2])


def track_faces(
    images: Sequence[np.ndarray],
    times_s: Sequence[float],
    tracks: Sequence[FaceTrack | None],
    poses: Sequence[np.ndarray | None],
    detect: Detector,
    landmarks: LandmarkModel,
    iris: IrisModel,
    face_model: FaceModel | Mapping[str, np.ndarray] | None = None,
    *,
    smooth: bool = True,
    refine: bool = REFINE_DETECTED,
) -> tuple[list[Face | None], list[FaceTrack]]:
    """One face per image over a batch of sessions' frames; every model is called at most twice per batch.

    Models (batch in, outputs out; extra singleton dims are tolerated):
    - `detect`: (N, 128, 128, 3) in [-1, 1] -> raw boxes (N, 896, 16), logits (N, 896, 1);
    - `landmarks`: (M, 192, 192, 3) in [0, 1] -> mesh (M, 1404), face-flag logits (M, 1);
    - `iris`: (2K, 64, 64, 3) in [0, 1] -> eye contours (2K, 213), irises (2K, 15).

    ROI per image, in order of preference: the track's ROI (previous frame's mesh, MediaPipe's tracking mode) unless
    the pose puts the nose outside it; else the face detector inside the pose's face region (holistic) when `poses[i]`
    (33, 4) shows a face; else the detector on the whole frame (a face close-up without a body). Detector call 1
    serves the images without a track; landmark call 1 runs every ROI; a tracked face that is lost (presence < 0.5)
    is re-detected at once (detector call 2) and its landmarks run in landmark call 2, together with the refinement
    of faces found by the detector in this frame (`refine`: a second pass on the ROI from the first pass's mesh,
    which is what tracking would give on the next frame). The iris model runs once on the final meshes.

    `poses[i]` may be None. `times_s` drive the One-Euro filter (`smooth`). Head pose needs `face_model`: the
    canonical face model (a FaceModel, or the arrays of canonical_face_model.npz as a mapping); without it
    `Face.rotation` / `Face.translation` are NaN.
    Returns the faces (None where none) and every session's new track.
    """
    n = len(images)
    if not (len(times_s) == len(tracks) == len(poses) == n):
        raise ValueError("images, times_s, tracks and poses must have the same length")
    model = as_face_model(face_model) if face_model is not None else None

    rois: dict[int, Square] = {}
    tracked: set[int] = set()
    search: dict[int, tuple[Square, bool]] = {}
    for i in range(n):
        track = tracks[i]
        if (
            track is not None
            and track.roi is not None
            and track.roi.side >= MIN_ROI_SIDE
            and _track_agrees_with_pose(track.roi, poses[i])
        ):
            rois[i] = track.roi
            tracked.add(i)
        else:
            search[i] = _search_region(images[i], poses[i])
    rois.update(_run_detector(images, search, detect))  # detector call 1
    first = _run_landmarks(images, rois, landmarks)  # landmark call 1

    results: dict[int, tuple[np.ndarray, float, Square]] = {}
    lost: dict[int, tuple[Square, bool]] = {}
    second: dict[int, Square] = {}
    for i, (mesh, score) in first.items():
        if score >= MIN_FACE_PRESENCE:
            results[i] = (mesh, score, rois[i])
            if refine and i not in tracked:
                second[i] = face_roi_from_landmarks(mesh)
        elif i in tracked:
            lost[i] = _search_region(images[i], poses[i])
    second.update(_run_detector(images, lost, detect))  # detector call 2 (lost tracks only)
    for i, (mesh, score) in _run_landmarks(images, second, landmarks).items():  # landmark call 2
        if score >= MIN_FACE_PRESENCE:
            results[i] = (mesh, score, second[i])

    full = _run_iris(images, {i: r[0] for i, r in results.items()}, iris)  # iris call 1

    faces: list[Face | None] = [None] * n
    new_tracks: list[FaceTrack] = [FaceTrack(None, None) for _ in range(n)]
    for i, (_, score, roi) in results.items():
        h, w = images[i].shape[:2]
        raw_points = full[i]
        previous = tracks[i]
        detector_ran = i not in tracked or i in lost
        # a face found by the detector starts a new filter (MediaPipe resets it when the landmarks go missing)
        state = previous.landmarks if previous is not None and not detector_ran else None
        points, new_state = raw_points, None
        if smooth:
            points, new_state = one_euro(
                state,
                float(times_s[i]),
                raw_points,
                value_scale=1.0 / _object_scale(raw_points),
                min_cutoff=FACE_MIN_CUTOFF,
                beta=FACE_BETA,
                derivate_cutoff=FACE_DERIVATE_CUTOFF,
            )
        rotation, translation = np.full((3, 3), np.nan), np.full(3, np.nan)
        if model is not None:
            with contextlib.suppress(ValueError, cv2.error):  # a degenerate mesh: no head pose, never a failed batch
                rotation, translation = solve_head_pose(points, model, w, h)
        faces[i] = Face(
            points=np.asarray(points, dtype=np.float32),
            score=score,
            roi=roi,
            rotation=rotation,
            translation=translation,
            detector_ran=detector_ran,
        )
        new_tracks[i] = FaceTrack(face_roi_from_landmarks(raw_points), new_state)
    return faces, new_tracks
