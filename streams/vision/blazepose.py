"""BlazePose for video: person detection, landmarks in a rotated ROI, tracking from frame to frame and smoothing.

Pure numpy + OpenCV so that the same code runs inside Triton's python backend (its own venv) and in unit tests;
the two models are passed in as batched callables. Follows MediaPipe 0.10.14's pose_landmark_cpu graph
(FIELD_NOTES §3): the detector only runs when a session has no ROI to track (or, with several people wanted, to
find the others), the landmark model's auxiliary points give the next frame's ROI, and the shopper's landmarks
are filtered as in pose_landmark_filtering.pbtxt.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from streams.vision import ssd
from streams.vision.geometry import Square, rotation_towards
from streams.vision.smoothing import OneEuroState, low_pass, one_euro

DETECTOR_SIZE = ssd.POSE.size
LANDMARK_SIZE = 256
HEATMAP_SIZE = 64
NUM_KEYPOINTS = 33
NUM_LANDMARKS = 39  # 33 keypoints, 2 auxiliary (ROI centre and scale/rotation), 4 unused by MediaPipe
MIN_DETECTION_SCORE = ssd.POSE.min_score
MIN_POSE_PRESENCE = 0.5
ROI_SCALE = 1.25
MIN_ROI_SIDE = 8.0  # px: a tracked ROI smaller than this is treated as lost

# RefineLandmarksFromHeatmapCalculator as configured in tensors_to_pose_landmarks_and_segmentation.pbtxt.
HEATMAP_KERNEL = 7
HEATMAP_MIN_CONFIDENCE = 0.5

# pose_landmark_filtering.pbtxt (0.10.14): landmarks, then the auxiliary points (smoothed harder: stable ROI).
LANDMARK_FILTER = (0.05, 80.0, 1.0)  # min_cutoff, beta, derivate_cutoff
AUX_FILTER = (0.01, 10.0, 1.0)
VISIBILITY_ALPHA = 0.1
LANDMARK_STATE_SHAPE = (NUM_KEYPOINTS, 3)  # shapes of PoseTrack's filter states, for whoever persists them
AUX_STATE_SHAPE = (2, 3)

# Several people: a detection is another person unless its head box holds the shopper's face centre, and a
# person found in it is dropped when its keypoint box overlaps an already kept person's by this IoU or more.
SAME_PERSON_IOU = 0.5

# Landmark model outputs (tf2onnx names). `landmarks(batch, names)` is asked for LANDMARK_OUTPUTS, plus
# SEGMENTATION_OUTPUT when a mask is wanted, and returns {name: (M, ...) array}.
LANDMARKS_OUTPUT = "Identity"  # (M, 195): 39 x (x, y, z, visibility logit, presence logit) in crop px
POSE_FLAG_OUTPUT = "Identity_1"  # (M, 1): pose presence, already a probability
SEGMENTATION_OUTPUT = "Identity_2"  # (M, 256, 256, 1): person logits in ROI space
HEATMAP_OUTPUT = "Identity_3"  # (M, 64, 64, 39): heatmap logits
WORLD_OUTPUT = "Identity_4"  # (M, 117): 39 x (x, y, z) metres, hip-centred, in the ROI's rotated frame
LANDMARK_OUTPUTS = (LANDMARKS_OUTPUT, POSE_FLAG_OUTPUT, HEATMAP_OUTPUT, WORLD_OUTPUT)

DetectModel = Callable[[np.ndarray], Any]
LandmarkModel = Callable[[np.ndarray, list[str]], Mapping[str, np.ndarray]]

KEYPOINT_NAMES = (
    "nose",
    "left_eye_inner",
    "left_eye",
    "left_eye_outer",
    "right_eye_inner",
    "right_eye",
    "right_eye_outer",
    "left_ear",
    "right_ear",
    "mouth_left",
    "mouth_right",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_pinky",
    "right_pinky",
    "left_index",
    "right_index",
    "left_thumb",
    "right_thumb",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
    "left_heel",
    "right_heel",
    "left_foot_index",
    "right_foot_index",
)

# MediaPipe's POSE_CONNECTIONS.
SKELETON = (
    (0, 1),
    (1, 2),
    (2, 3),
    (3, 7),
    (0, 4),
    (4, 5),
    (5, 6),
    (6, 8),
    (9, 10),
    (11, 12),
    (11, 13),
    (13, 15),
    (15, 17),
    (15, 19),
    (15, 21),
    (17, 19),
    (12, 14),
    (14, 16),
    (16, 18),
    (16, 20),
    (16, 22),
    (18, 20),
    (11, 23),
    (12, 24),
    (23, 24),
    (23, 25),
    (24, 26),
    (25, 27),
    (26, 28),
    (27, 29),
    (28, 30),
    (29, 31),
    (30, 32),
    (27, 31),
    (28, 32),
)

Detection = ssd.Detection  # score, head box (xmin, ymin, xmax, ymax) and 4 alignment keypoints, image px


def _sigmoid32(x: np.ndarray) -> np.ndarray:
    """Logistic function in float32, as MediaPipe's calculators compute it (no clipping)."""
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(over="ignore"):
        return np.asarray(np.float32(1.0) / (np.float32(1.0) + np.exp(-x)), dtype=np.float32)


def detector_input(rgb: np.ndarray) -> tuple[np.ndarray, Square]:
    """224x224x3 float32 in [-1, 1] of the letterboxed frame (padding -1), and the region it covers."""
    return ssd.detector_input(rgb, ssd.POSE)


def landmark_input(rgb: np.ndarray, roi: Square) -> np.ndarray:
    """256x256x3 float32 in [0, 1] of the rotated ROI, border replicated."""
    crop = roi.crop(rgb, LANDMARK_SIZE, cv2.BORDER_REPLICATE)
    return crop.astype(np.float32) / 255.0


def decode_detections(
    raw_boxes: np.ndarray, raw_scores: np.ndarray, region: Square, max_detections: int = 1
) -> list[Detection]:
    """One image's detector output (2254x12, 2254x1) -> up to `max_detections` people, best score first."""
    return ssd.decode(raw_boxes, raw_scores, ssd.POSE, region, max_detections)


def _alignment_roi(start: np.ndarray, end: np.ndarray) -> Square:
    """MediaPipe's AlignmentPointsRects + RectTransformation(1.25, square_long): centre on `start`, side from the
    distance to `end`, rotated so that start -> end points up (90 degrees)."""
    start, end = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    side = 2.0 * math.hypot(end[0] - start[0], end[1] - start[1]) * ROI_SCALE
    return Square(float(start[0]), float(start[1]), side, rotation_towards(start, end, math.pi / 2))


def roi_from_detection(det: Detection) -> Square:
    """The rotated square the landmark model looks at: centred on the hips, 2.5x the hip-to-top distance."""
    return _alignment_roi(det.keypoints[0, :2], det.keypoints[1, :2])


def roi_from_aux(points: np.ndarray) -> Square:
    """Next frame's ROI from the auxiliary points: point 33 is the centre, 34 gives scale and rotation.

    `points` is (39, k) (all landmarks) or (2, k) (the auxiliary points only), x and y in image px first.
    Same geometry as the detector ROI (pose_landmarks_to_roi.pbtxt).
    """
    aux = np.asarray(points)
    if len(aux) == NUM_LANDMARKS:
        aux = aux[NUM_KEYPOINTS : NUM_KEYPOINTS + 2]
    return _alignment_roi(aux[0, :2], aux[1, :2])


def refine_from_heatmap(
    normalized: np.ndarray,
    heatmap: np.ndarray,
    kernel: int = HEATMAP_KERNEL,
    min_confidence: float = HEATMAP_MIN_CONFIDENCE,
) -> np.ndarray:
    """MediaPipe's RefineLandmarksFromHeatmapCalculator on (N, 2) crop-normalised x, y and an (H, W, N) heatmap.

    For each point: the kernel x kernel window of sigmoid(heatmap) around the cell the point falls in (clipped at
    the edges); when its maximum is >= min_confidence, the point moves to the window's confidence-weighted mean
    cell index / heatmap size. Reproduces MediaPipe exactly, including its quirks: the cell index is truncated
    towards zero, the refined coordinate is `col / width` (no half-cell offset), and the in-heatmap check tests
    the column twice instead of the row (a row below the heatmap still refines from the clipped window).
    """
    pts = np.asarray(normalized, dtype=np.float32)
    hm = np.asarray(heatmap, dtype=np.float32)
    height, width, channels = hm.shape
    if channels != len(pts):
        raise ValueError(f"heatmap has {channels} channels for {len(pts)} landmarks")
    cols = np.trunc(pts[:, 0] * np.float32(width)).astype(np.int64)
    rows = np.trunc(pts[:, 1] * np.float32(height)).astype(np.int64)
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (cols < height)  # sic: MediaPipe's check
    offset = (kernel - 1) // 2
    steps = np.arange(-offset, offset + 1)
    rr = rows[:, None, None] + steps[None, :, None]  # (N, k, 1)
    cc = cols[:, None, None] + steps[None, None, :]  # (N, 1, k)
    valid = (rr >= 0) & (rr < height) & (cc >= 0) & (cc < width)  # (N, k, k)
    channel = np.arange(len(pts))[:, None, None]
    logits = hm[np.clip(rr, 0, height - 1), np.clip(cc, 0, width - 1), channel]
    confidence = np.where(valid, _sigmoid32(logits), np.float32(0.0))
    total = confidence.sum(axis=(1, 2), dtype=np.float32)
    peak = confidence.max(axis=(1, 2))
    weighted_col = (confidence * cc.astype(np.float32)).sum(axis=(1, 2), dtype=np.float32)
    weighted_row = (confidence * rr.astype(np.float32)).sum(axis=(1, 2), dtype=np.float32)
    refine = inside & (peak >= np.float32(min_confidence)) & (total > 0)
    out = pts.copy()
    safe = np.where(total > 0, total, np.float32(1.0))
    out[refine, 0] = (weighted_col / np.float32(width) / safe)[refine]
    out[refine, 1] = (weighted_row / np.float32(height) / safe)[refine]
    return out


def decode_landmarks(raw: np.ndarray, roi: Square, heatmap: np.ndarray | None = None) -> np.ndarray:
    """Landmark model output [195] (+ heatmap (64, 64, 39)) -> (39, 5) float32 in the frame:
    x px, y px, z (px, same scale as x), visibility, presence (probabilities).

    As MediaPipe: coordinates are normalised by the crop size, refined with the heatmap when there is one, then
    projected through the ROI; z is scaled by the ROI side like x.
    """
    pts = np.asarray(raw, dtype=np.float32).reshape(NUM_LANDMARKS, 5)
    normalized = pts[:, :2] / np.float32(LANDMARK_SIZE)
    if heatmap is not None:
        normalized = refine_from_heatmap(
            normalized, np.asarray(heatmap).reshape(HEATMAP_SIZE, HEATMAP_SIZE, NUM_LANDMARKS)
        )
    to_image = roi.to_image(1)  # normalised crop -> image px
    xy = normalized.astype(np.float64) @ to_image[:, :2].T + to_image[:, 2]
    z = pts[:, 2:3].astype(np.float64) * (roi.side / LANDMARK_SIZE)
    return np.concatenate([xy, z, _sigmoid32(pts[:, 3:5])], axis=1).astype(np.float32)


def decode_world(raw: np.ndarray, roi: Square) -> np.ndarray:
    """World landmarks [117] -> (33, 3) metres, hip-centred, rotated back by the ROI angle
    (WorldLandmarkProjectionCalculator)."""
    pts = np.asarray(raw, dtype=np.float64).reshape(NUM_LANDMARKS, 3)[:NUM_KEYPOINTS]
    c, s = math.cos(roi.rotation), math.sin(roi.rotation)
    x = c * pts[:, 0] - s * pts[:, 1]
    y = s * pts[:, 0] + c * pts[:, 1]
    return np.stack([x, y, pts[:, 2]], axis=1).astype(np.float32)


NO_ROI = Square(0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Pose:
    """One person in one frame.

    keypoints: (33, 4) x px, y px, visibility, presence (smoothed when tracking). score: pose presence.
    roi: the region the landmark model saw. detector_ran: the detector found this person on this frame.
    world: (33, 3) metres when the model gave them. segmentation: (256, 256) person probabilities in `roi`
    space (see segmentation.mask_from_roi), when asked.
    """

    keypoints: np.ndarray
    score: float
    roi: Square = NO_ROI
    detector_ran: bool = False
    world: np.ndarray | None = None
    segmentation: np.ndarray | None = None

    @property
    def found(self) -> bool:
        return self.score >= MIN_POSE_PRESENCE


NO_POSE = Pose(np.zeros((NUM_KEYPOINTS, 4), dtype=np.float32), 0.0)


@dataclass
class PoseTrack:
    """One session's pose state between frames; small (a few hundred floats), persisted by the caller.

    roi: next frame's ROI (from this frame's filtered auxiliary points); None -> run the detector.
    landmarks: One-Euro state of the 33 keypoints' (x, y, z) px (LANDMARK_STATE_SHAPE).
    aux: One-Euro state of the 2 auxiliary points' (x, y, z) px (AUX_STATE_SHAPE).
    visibility: low-passed visibility (33,).
    """

    roi: Square | None = None
    landmarks: OneEuroState | None = None
    aux: OneEuroState | None = None
    visibility: np.ndarray | None = None


@dataclass
class _Found:
    """Landmark model output for one crop, decoded."""

    points: np.ndarray  # (39, 5) frame px
    score: float
    roi: Square
    detector_ran: bool
    world: np.ndarray | None
    segmentation_logits: np.ndarray | None

    def pose(self, keypoints: np.ndarray | None = None) -> Pose:
        kps = keypoints if keypoints is not None else _keypoints(self.points)
        mask = None if self.segmentation_logits is None else _sigmoid32(self.segmentation_logits)
        return Pose(kps, self.score, self.roi, self.detector_ran, self.world, mask)


def _keypoints(points: np.ndarray) -> np.ndarray:
    return np.concatenate([points[:NUM_KEYPOINTS, :2], points[:NUM_KEYPOINTS, 3:5]], axis=1).astype(np.float32)


def _run_landmarks(
    landmarks: LandmarkModel,
    images: Sequence[np.ndarray],
    jobs: list[tuple[int, Square, bool]],
    segmentation: bool,
) -> list[_Found]:
    """One batched call of the landmark model on (image index, ROI, detector_ran) jobs."""
    if not jobs:
        return []
    names = [*LANDMARK_OUTPUTS, SEGMENTATION_OUTPUT] if segmentation else list(LANDMARK_OUTPUTS)
    out = landmarks(np.stack([landmark_input(images[i], roi) for i, roi, _ in jobs]), names)
    raw = np.asarray(out[LANDMARKS_OUTPUT]).reshape(len(jobs), -1)
    flags = np.asarray(out[POSE_FLAG_OUTPUT]).reshape(len(jobs), -1)
    heatmaps = out.get(HEATMAP_OUTPUT)
    world = out.get(WORLD_OUTPUT)
    masks = out.get(SEGMENTATION_OUTPUT) if segmentation else None
    found = []
    for j, (_, roi, detector_ran) in enumerate(jobs):
        heatmap = None if heatmaps is None else np.asarray(heatmaps[j])
        found.append(
            _Found(
                decode_landmarks(raw[j], roi, heatmap),
                float(flags[j, 0]),
                roi,
                detector_ran,
                None if world is None else decode_world(np.asarray(world[j]), roi),
                None if masks is None else np.asarray(masks[j], dtype=np.float32).reshape(LANDMARK_SIZE, LANDMARK_SIZE),
            )
        )
    return found


def _detect(
    detect: DetectModel, images: Sequence[np.ndarray], which: list[int], limit: int
) -> dict[int, list[Detection]]:
    """One batched detector call; up to `limit` people per image, best score first."""
    if not which:
        return {}
    inputs, regions = zip(*(detector_input(images[i]) for i in which), strict=True)
    out = detect(np.stack(inputs))
    if isinstance(out, Mapping):
        boxes, scores = out["Identity"], out["Identity_1"]
    else:
        boxes, scores = out
    return {
        i: decode_detections(np.asarray(boxes[j]), np.asarray(scores[j]), regions[j], limit)
        for j, i in enumerate(which)
    }


def shopper_priority(roi: Square, width: int, height: int) -> float:
    """Who is the shopper among new detections: the largest ROI, discounted by distance from the frame centre.

    priority = ROI side * (1 - 0.5 * min(1, d / half diagonal)), d = distance from the ROI centre (mid-hip) to the
    frame centre: a person at a frame corner counts as half as big as the same person in the middle.
    """
    d = math.hypot(roi.cx - width / 2.0, roi.cy - height / 2.0) / max(1e-9, math.hypot(width, height) / 2.0)
    return roi.side * (1.0 - 0.5 * min(1.0, d))


def _box(points: np.ndarray) -> np.ndarray:
    xy = points[:NUM_KEYPOINTS, :2]
    return np.concatenate([xy.min(axis=0), xy.max(axis=0)])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _holds(box: np.ndarray, point: np.ndarray) -> bool:
    return bool(box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3])


def _smooth(found: _Found, previous: PoseTrack | None, time_s: float) -> tuple[Pose, PoseTrack]:
    """The shopper's filters (pose_landmark_filtering.pbtxt) and next frame's ROI from the filtered aux points.

    `previous` None starts the filters afresh (a new session, a still, or a pose found by the detector).
    Object scale (value scaling) = the auxiliary points' alignment box, 2 |p34 - p33| px, as MediaPipe computes it.
    """
    pts = found.points
    prev = previous or PoseTrack()
    aux_raw = pts[NUM_KEYPOINTS : NUM_KEYPOINTS + 2, :3]
    scale = 2.0 * float(np.hypot(*(aux_raw[1, :2] - aux_raw[0, :2])))
    value_scale = 1.0 / scale if scale > 1e-6 else 1.0
    visibility = low_pass(prev.visibility, pts[:NUM_KEYPOINTS, 3], VISIBILITY_ALPHA)
    xyz, landmark_state = one_euro(prev.landmarks, time_s, pts[:NUM_KEYPOINTS, :3], value_scale, *LANDMARK_FILTER)
    aux, aux_state = one_euro(prev.aux, time_s, aux_raw, value_scale, *AUX_FILTER)
    roi: Square | None = roi_from_aux(aux)
    if roi is not None and not (roi.side >= MIN_ROI_SIDE and math.isfinite(roi.side)):
        roi = None
    keypoints = np.concatenate([xyz[:, :2], visibility[:, None], pts[:NUM_KEYPOINTS, 4:5]], axis=1)
    return found.pose(keypoints.astype(np.float32)), PoseTrack(roi, landmark_state, aux_state, visibility)


def track(
    images: Sequence[np.ndarray],
    times_s: Sequence[float],
    tracks: Sequence[PoseTrack | None],
    detect: DetectModel,
    landmarks: LandmarkModel,
    max_people: int | Sequence[int] = 1,
    segmentation: bool = False,
) -> tuple[list[list[Pose]], list[PoseTrack]]:
    """Pose of a batch of frames from many sessions, each model called at most twice for the whole batch.

    images: RGB uint8 frames; times_s: capture times (s) driving the filters; tracks: each session's previous
    PoseTrack, or None for a still / a new session (single-image mode: no smoothing history).
    detect(batch (N, 224, 224, 3)) -> (raw boxes (N, 2254, 12), logits (N, 2254, 1)) (or a dict with
    'Identity', 'Identity_1'). landmarks(batch (M, 256, 256, 3), names) -> {name: (M, ...)} for the requested
    output names: LANDMARK_OUTPUTS, plus SEGMENTATION_OUTPUT only when `segmentation` is True; a missing
    heatmap or world output is tolerated (no refinement / no world points).

    Order: (1) landmarks on every tracked ROI; (2) one detector batch on the frames without a track, whose
    tracked pose was lost (presence < 0.5), and on every frame that wants max_people > 1; (3) landmarks on the
    new ROIs. A pose found by the detector starts its filters afresh.

    People (max_people: one number for the batch, or one per frame): person 0 is the session's shopper: the
    tracked person, else the first detection, in `shopper_priority` order (largest ROI discounted by distance
    from the frame centre), whose landmarks are present. With max_people > 1, up to max_people - 1 other people
    follow, unsmoothed: detections whose head box does not hold the shopper's face centre, kept when their
    keypoint box overlaps no already kept person's (IoU < SAME_PERSON_IOU). Only found poses (presence >= 0.5)
    are returned.

    Returns per frame the people found (shopper first) and the session's next PoseTrack (empty when lost).
    """
    n = len(images)
    wanted_people = [max_people] * n if isinstance(max_people, int) else list(max_people)
    if not (len(times_s) == len(tracks) == len(wanted_people) == n):
        raise ValueError("images, times_s, tracks (and a max_people list) must have the same length")
    limit = [max(1, int(k)) for k in wanted_people]

    # 1. landmarks on tracked ROIs
    tracked = [(i, t.roi, False) for i, t in enumerate(tracks) if t is not None and t.roi is not None]
    shopper: dict[int, _Found] = {}
    for (i, _, _), found in zip(tracked, _run_landmarks(landmarks, images, tracked, segmentation), strict=True):
        if found.score >= MIN_POSE_PRESENCE:
            shopper[i] = found

    # 2. one detector batch
    wanted = [i for i in range(n) if i not in shopper or limit[i] > 1]
    detections = _detect(detect, images, wanted, max(limit, default=1) + 2)

    # 3. landmarks on the new ROIs: shopper candidates (best first) and other people
    jobs: list[tuple[int, Square, bool]] = []
    for i in wanted:
        h, w = images[i].shape[:2]
        candidates = detections[i]
        if i in shopper:
            face = shopper[i].points[:11, :2].mean(axis=0)
            candidates = [d for d in candidates if not _holds(d.box, face)]
        rois = sorted((roi_from_detection(d) for d in candidates), key=lambda r: -shopper_priority(r, w, h))
        jobs.extend((i, roi, True) for roi in rois[: limit[i] - (1 if i in shopper else 0)])
    new: dict[int, list[_Found]] = {}
    for (i, _, _), found in zip(jobs, _run_landmarks(landmarks, images, jobs, segmentation), strict=True):
        if found.score >= MIN_POSE_PRESENCE:
            new.setdefault(i, []).append(found)

    people: list[list[Pose]] = []
    next_tracks: list[PoseTrack] = []
    for i in range(n):
        found_here = new.get(i, [])
        main = shopper.get(i)
        previous = tracks[i] if main is not None else None  # a new detection starts the filters afresh
        if main is None and found_here:
            main = found_here.pop(0)
        if main is None:
            people.append([])
            next_tracks.append(PoseTrack())
            continue
        pose, next_track = _smooth(main, previous, float(times_s[i]))
        kept = [pose]
        boxes = [_box(main.points)]
        for other in found_here:
            if len(kept) >= limit[i]:
                break
            box = _box(other.points)
            if all(_iou(box, b) < SAME_PERSON_IOU for b in boxes):
                kept.append(other.pose())
                boxes.append(box)
        people.append(kept)
        next_tracks.append(next_track)
    return people, next_tracks


def estimate(images: Sequence[np.ndarray], detect: DetectModel, landmarks: LandmarkModel) -> list[Pose]:
    """Single-image BlazePose over a batch (no tracking, no smoothing): the shopper per image, or NO_POSE."""
    people, _ = track(images, [0.0] * len(images), [None] * len(images), detect, landmarks)
    return [found[0] if found else NO_POSE for found in people]
