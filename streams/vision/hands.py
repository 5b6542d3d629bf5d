"""Hands for video: 21 landmarks per hand in a rotated ROI, found by tracking, from the pose, or by palm detection.

Pure numpy + OpenCV (runs in Triton's python backend and in unit tests); the two models are batched callables.
Follows MediaPipe 0.10.14:
- palm detector (palm_detection_cpu.pbtxt): 192x192 letterbox in [0, 1], 2016 anchors, 7 keypoints, and its ROI
  (palm_detection_detection_to_roi.pbtxt): box rotated so that wrist (kp 0) -> middle-finger MCP (kp 2) points up,
  scaled 2.6, shifted -0.5 box heights towards the fingers, squared on the long side;
- landmark model (hand_landmark_cpu.pbtxt): 224x224 crop of the ROI in [0, 1] (border replicated), 21 x (x, y, z)
  in crop px with z normalised by 0.4, hand presence and handedness already probabilities (threshold 0.5);
- tracking ROI (hand_landmark_landmarks_to_roi.pbtxt + HandLandmarksToRectCalculator): the box of 12 palm/finger-base
  landmarks in the wrist -> MCPs frame, scaled 2.0, shifted -0.1;
- ROI from the pose (holistic's HandDetectionsFromPoseToRectsCalculator): centre at the estimated middle finger
  (2 * index + pinky) / 3, box 2 * |middle - wrist|, rotated wrist -> middle, only when the pose wrist's
  visibility > 0.1. Holistic then expands it 2.7x for its hand re-crop model (not available here); this module
  feeds the landmark model directly with an expansion calibrated to match the tracking ROI (POSE_ROI_SCALE);
- de-duplication: candidate ROIs overlapping by IoU > 0.5 (AssociationNormRectCalculator, unrotated boxes) and
  hands whose landmarks coincide (HandLandmarksDeduplicationCalculator of the hand_landmarker task).

Handedness is the model's label, which MediaPipe defines for a MIRRORED (selfie-view) image: on an unmirrored
camera frame "Left" is the subject's right hand. The pose's left/right are the subject's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np

from streams.vision import ssd
from streams.vision.geometry import Square, rotation_towards
from streams.vision.smoothing import POSE_BETA, POSE_DERIVATE_CUTOFF, POSE_MIN_CUTOFF, OneEuroState, one_euro

PALM_SIZE = ssd.PALM.size  # 192
NUM_PALM_KEYPOINTS = 7  # wrist centre, index/middle/ring/pinky MCP, thumb CMC, thumb MCP (MediaPipe's order)
LANDMARK_SIZE = 224
NUM_POINTS = 21
Z_NORMALIZE = 0.4  # TensorsToLandmarksCalculator normalize_z in hand_landmark_cpu.pbtxt
MIN_PRESENCE = 0.5  # hand presence threshold (also min_tracking_confidence's default)

PALM_ROI_SCALE = 2.6
PALM_ROI_SHIFT_Y = -0.5
TRACK_ROI_SCALE = 2.0
TRACK_ROI_SHIFT_Y = -0.1
# Landmarks HandLandmarksToRectCalculator keeps: wrist, thumb CMC/MCP/IP, and the MCP + PIP of the four fingers.
TRACK_ROI_POINTS = (0, 1, 2, 3, 5, 6, 9, 10, 13, 14, 17, 18)

# Pose keypoints of the subject's hands: wrist, pinky, index.
POSE_HAND_POINTS: Mapping[str, tuple[int, int, int]] = {"left": (15, 17, 19), "right": (16, 18, 20)}
POSE_MIN_VISIBILITY = 0.1  # hand_visibility_from_hand_landmarks_from_pose.pbtxt (wrist only)
# Holistic expands this box 2.7x (shift -0.1) for its re-crop model, which is not converted here. Feeding the
# landmark model directly, the box is expanded to match the tracking ROI: over 376 hands in the 4 test videos the
# tracking ROI's side was 1.64x the box (quartiles 1.47-1.84) and its centre 0.02 box lengths towards the fingers.
POSE_ROI_SCALE = 1.65
POSE_ROI_SHIFT_Y = -0.02

HANDEDNESS_ALPHA = 0.1  # low-pass of P("Left") along a track when smoothing (MediaPipe does not smooth it)
SAME_ROI_IOU = 0.5  # AssociationNormRectCalculator min_similarity_threshold
# HandDuplicatesFinder: a hand is a duplicate when >= 10 of 21 landmarks lie within 0.2 x the larger baseline
# (max of wrist-index MCP, index MCP-pinky MCP, pinky MCP-wrist) of the other hand and their boxes' IoU > 0.2.
DUPLICATE_DISTANCE = 0.2
DUPLICATE_MATCHES = 10
DUPLICATE_IOU = 0.2

# Palm detector outputs (tf2onnx names) and the landmark model's.
PALM_BOXES_OUTPUT = "Identity"  # (N, 2016, 18): box cx, cy, w, h + 7 keypoints, detector px relative to anchor
PALM_SCORES_OUTPUT = "Identity_1"  # (N, 2016, 1): logits
LANDMARKS_OUTPUT = "Identity"  # (M, 63): 21 x (x, y, z) crop px
PRESENCE_OUTPUT = "Identity_1"  # (M, 1): hand presence probability
HANDEDNESS_OUTPUT = "Identity_2"  # (M, 1): probability of "Left" (mirrored-image convention)
WORLD_OUTPUT = "Identity_3"  # (M, 63): metres, unused here

# A model maps a float32 NHWC batch to its outputs: a {tf2onnx name: array} mapping, or a sequence in the order
# above ((boxes, scores) for the palm detector; (landmarks, presence, handedness, ...) for the landmark model).
Model = Callable[[np.ndarray], Any]
Source = Literal["track", "pose", "palm"]
Side = Literal["left", "right"]
SIDES: tuple[Side, Side] = ("left", "right")


# ----------------------------------------------------------------------------------------------------- geometry


def _transform(
    cx: float, cy: float, width: float, height: float, rotation: float, scale: float, shift_y: float
) -> Square:
    """RectTransformationCalculator in pixels: shift along the rect's own y axis, square on the long side, scale."""
    cx -= height * shift_y * math.sin(rotation)
    cy += height * shift_y * math.cos(rotation)
    return Square(float(cx), float(cy), float(max(width, height) * scale), float(rotation))


def hand_roi_from_palm(det: ssd.Detection) -> Square:
    """The landmark model's ROI for a palm detection (box + 7 keypoints in image px)."""
    xmin, ymin, xmax, ymax = (float(v) for v in det.box)
    rotation = rotation_towards(det.keypoints[0], det.keypoints[2], math.pi / 2)
    return _transform(
        (xmin + xmax) / 2, (ymin + ymax) / 2, xmax - xmin, ymax - ymin, rotation, PALM_ROI_SCALE, PALM_ROI_SHIFT_Y
    )


def hand_roi_from_pose(keypoints: np.ndarray, side: Side, min_visibility: float = POSE_MIN_VISIBILITY) -> Square | None:
    """ROI of the subject's `side` hand from pose keypoints (33, >=3: x px, y px, visibility), or None.

    None when the wrist's visibility is not above `min_visibility` or the three points coincide.
    """
    kps = np.asarray(keypoints, dtype=np.float64)
    wrist_i, pinky_i, index_i = POSE_HAND_POINTS[side]
    if kps.shape[1] > 2 and not kps[wrist_i, 2] > min_visibility:
        return None
    wrist, pinky, index = kps[wrist_i, :2], kps[pinky_i, :2], kps[index_i, :2]
    middle = (2.0 * index + pinky) / 3.0
    box = 2.0 * math.hypot(middle[0] - wrist[0], middle[1] - wrist[1])
    if not box > 1e-6:
        return None
    rotation = rotation_towards(wrist, middle, math.pi / 2)
    return _transform(middle[0], middle[1], box, box, rotation, POSE_ROI_SCALE, POSE_ROI_SHIFT_Y)


def hand_roi_from_landmarks(points: np.ndarray) -> Square:
    """Next frame's ROI from this frame's 21 landmarks (x px, y px, ...): HandLandmarksToRectCalculator + 2x."""
    pts = np.asarray(points, dtype=np.float64)[list(TRACK_ROI_POINTS), :2]
    wrist = pts[0]
    # Partial indices 4, 6, 8 = index, middle, ring MCP: ((index + ring) / 2 + middle) / 2.
    towards = ((pts[4] + pts[8]) / 2.0 + pts[6]) / 2.0
    rotation = rotation_towards(wrist, towards, math.pi / 2)
    centre = (pts.min(axis=0) + pts.max(axis=0)) / 2.0
    c, s = math.cos(rotation), math.sin(rotation)
    to_rect = np.array([[c, s], [-s, c]])  # rotate by -rotation: image offsets -> the rect's own axes
    local = (pts - centre) @ to_rect.T
    lo, hi = local.min(axis=0), local.max(axis=0)
    mid = (lo + hi) / 2.0
    cx = centre[0] + c * mid[0] - s * mid[1]
    cy = centre[1] + s * mid[0] + c * mid[1]
    width, height = hi - lo
    return _transform(cx, cy, width, height, rotation, TRACK_ROI_SCALE, TRACK_ROI_SHIFT_Y)


def _box(roi: Square) -> tuple[float, float, float, float]:
    """The unrotated box MediaPipe compares ROIs with (rectangle_util ignores rotation)."""
    h = roi.side / 2.0
    return roi.cx - h, roi.cy - h, roi.cx + h, roi.cy + h


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def roi_iou(a: Square, b: Square) -> float:
    """IoU of two ROIs' unrotated boxes, as MediaPipe's hand association computes it."""
    return _iou(_box(a), _box(b))


def _in_image(roi: Square, width: int, height: int) -> bool:
    r = roi.side / math.sqrt(2.0)
    return roi.side > 1.0 and roi.cx + r > 0 and roi.cy + r > 0 and roi.cx - r < width and roi.cy - r < height


# -------------------------------------------------------------------------------------------- model in / out


def palm_input(rgb: np.ndarray) -> tuple[np.ndarray, Square]:
    """192x192x3 float32 in [0, 1] of the letterboxed frame (zero border), and the region it covers."""
    return ssd.detector_input(rgb, ssd.PALM)


def decode_palms(
    raw_boxes: np.ndarray, raw_scores: np.ndarray, region: Square, max_palms: int = 2
) -> list[ssd.Detection]:
    """One image's palm detector output (2016, 18), (2016, 1) -> up to `max_palms` palms, best first."""
    return ssd.decode(raw_boxes, raw_scores, ssd.PALM, region, max_palms)


def hand_input(rgb: np.ndarray, roi: Square) -> np.ndarray:
    """224x224x3 float32 in [0, 1] of the rotated ROI, border replicated (ImageToTensorCalculator's default)."""
    crop = roi.crop(rgb, LANDMARK_SIZE, cv2.BORDER_REPLICATE)
    return (crop.astype(np.float32) / np.float32(255.0)).astype(np.float32)


def decode_landmarks(raw: np.ndarray, roi: Square) -> np.ndarray:
    """Landmark output (63,) -> (21, 3) float32: x px, y px in the frame, z px (x's scale, + = away from camera)."""
    pts = np.asarray(raw, dtype=np.float64).reshape(NUM_POINTS, 3)
    m = roi.to_image(LANDMARK_SIZE)
    xy = pts[:, :2] @ m[:, :2].T + m[:, 2]
    z = pts[:, 2:3] * (roi.side / LANDMARK_SIZE / Z_NORMALIZE)
    return np.concatenate([xy, z], axis=1).astype(np.float32)


def handedness_label(left_probability: float) -> str:
    """MediaPipe's label (handedness.txt: Left, Right; binary classification scores "Left" with the output)."""
    return "Left" if left_probability >= 0.5 else "Right"


def subject_handedness(hand: Hand) -> str:
    """The subject's own hand, "Left" or "Right": the pose side when the hand was found from a pose wrist, else
    the model's label un-mirrored (the model labels a selfie view; camera frames are not mirrored)."""
    if hand.side:
        return hand.side.capitalize()
    return "Right" if hand.handedness == "Left" else "Left"


def _outputs(out: Any, names: Sequence[str]) -> list[np.ndarray]:
    if isinstance(out, Mapping):
        return [np.asarray(out[name]) for name in names]
    seq = list(out)
    return [np.asarray(seq[k]) for k in range(len(names))]


# ----------------------------------------------------------------------------------------------------- tracking


@dataclass(frozen=True)
class Hand:
    """One hand. handedness: MediaPipe's label ("Left" / "Right", mirrored-image convention: on an unmirrored frame
    "Left" is the subject's right hand); score: hand presence; points: (21, 3) x px, y px, z px; roi: the region
    the landmark model saw; source: where that ROI came from ("track": last frame's landmarks, "pose", "palm");
    side: the subject's own side ("left" / "right") when the pose tells it, else ""."""

    handedness: str
    score: float
    points: np.ndarray
    roi: Square
    source: str = ""
    side: str = ""


@dataclass
class HandTrack:
    """One session's hand state between frames, one entry per hand found on the last frame (up to max_hands):
    rois: next frame's ROIs; sides: the subject's side ("left" / "right") when a pose told it, else "";
    left: smoothed probability of MediaPipe's "Left" label; filters: One-Euro state of the (21, 3) points (only
    when smoothing). Lists of another length than `rois` are ignored."""

    rois: list[Square] = field(default_factory=list)
    sides: list[str] = field(default_factory=list)
    left: list[float] = field(default_factory=list)
    filters: list[OneEuroState] = field(default_factory=list)


@dataclass
class _Candidate:
    image: int
    roi: Square
    source: Source
    side: str = ""
    left: float | None = None
    filter: OneEuroState | None = None


@dataclass
class _Result:
    candidate: _Candidate
    points: np.ndarray  # (21, 3) raw (unsmoothed)
    score: float
    left: float


def _aligned(values: Sequence[Any], n: int) -> list[Any]:
    return list(values) if len(values) == n else [None] * n


def _run_palms(detect_palm: Model, images: Sequence[np.ndarray], which: list[int], max_hands: int) -> list[_Candidate]:
    if not which:
        return []
    inputs, regions = zip(*(palm_input(images[i]) for i in which), strict=True)
    boxes, scores = _outputs(detect_palm(np.stack(inputs)), (PALM_BOXES_OUTPUT, PALM_SCORES_OUTPUT))
    found = []
    for j, i in enumerate(which):
        h, w = images[i].shape[:2]
        for det in decode_palms(boxes[j], scores[j], regions[j], max_hands):
            roi = hand_roi_from_palm(det)
            if _in_image(roi, w, h):
                found.append(_Candidate(i, roi, "palm"))
    return found


def _run_landmarks(hand_landmarks: Model, images: Sequence[np.ndarray], jobs: list[_Candidate]) -> list[_Result]:
    if not jobs:
        return []
    batch = np.stack([hand_input(images[c.image], c.roi) for c in jobs])
    raw, presence, left = _outputs(hand_landmarks(batch), (LANDMARKS_OUTPUT, PRESENCE_OUTPUT, HANDEDNESS_OUTPUT))
    raw, presence, left = raw.reshape(len(jobs), -1), presence.reshape(len(jobs), -1), left.reshape(len(jobs), -1)
    return [
        _Result(c, decode_landmarks(raw[j, : NUM_POINTS * 3], c.roi), float(presence[j, 0]), float(left[j, 0]))
        for j, c in enumerate(jobs)
    ]


def _baseline(points: np.ndarray) -> float:
    a, b, c = points[0, :2], points[5, :2], points[17, :2]
    return float(max(np.linalg.norm(a - b), np.linalg.norm(b - c), np.linalg.norm(c - a)))


def _points_box(points: np.ndarray) -> tuple[float, float, float, float]:
    lo, hi = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def is_duplicate(a: np.ndarray, b: np.ndarray) -> bool:
    """HandDuplicatesFinder: do two (21, >=2) landmark sets describe the same hand?"""
    threshold = max(_baseline(a), _baseline(b)) * DUPLICATE_DISTANCE
    matched = int(np.count_nonzero(np.linalg.norm(a[:, :2] - b[:, :2], axis=1) < threshold))
    return matched >= DUPLICATE_MATCHES and _iou(_points_box(a), _points_box(b)) > DUPLICATE_IOU


def _smooth(result: _Result, time_s: float) -> tuple[np.ndarray, OneEuroState]:
    # MediaPipe's value scaling: 1 / object size, the mean of the landmarks' box width and height.
    x0, y0, x1, y1 = _points_box(result.points)
    size = max(1e-3, ((x1 - x0) + (y1 - y0)) / 2.0)
    return one_euro(
        result.candidate.filter,
        time_s,
        result.points,
        value_scale=1.0 / size,
        min_cutoff=POSE_MIN_CUTOFF,
        beta=POSE_BETA,
        derivate_cutoff=POSE_DERIVATE_CUTOFF,
    )


def pose_side(points: np.ndarray, keypoints: np.ndarray) -> str:
    """The subject's side ("left" / "right") whose visible pose wrist is nearest this hand's wrist, within two
    hand baselines (see is_duplicate), else ""."""
    kps = np.asarray(keypoints, dtype=np.float64)
    reach = 2.0 * _baseline(points)
    side, best = "", math.inf
    for s in SIDES:
        w = POSE_HAND_POINTS[s][0]
        if kps.shape[1] > 2 and not kps[w, 2] > POSE_MIN_VISIBILITY:
            continue
        d = math.hypot(float(points[0, 0]) - kps[w, 0], float(points[0, 1]) - kps[w, 1])
        if d < min(best, reach):
            side, best = s, d
    return side


def track_hands(
    images: Sequence[np.ndarray],
    times_s: Sequence[float],
    tracks: Sequence[HandTrack | None],
    poses: Sequence[np.ndarray | None],
    detect_palm: Model,
    hand_landmarks: Model,
    max_hands: int = 2,
    smooth: bool = True,
    palm_fallback: bool = False,
) -> tuple[list[list[Hand]], list[HandTrack]]:
    """Hands in a batch of RGB frames from different sessions; each model runs at most twice per batch.

    images: RGB uint8 frames; times_s: capture times (s) for the filters; tracks: each session's HandTrack from
    its previous frame (None: new session / still image); poses: the frame's (33, 4) pose keypoints (x px, y px,
    visibility, presence) of the session's shopper, or None when no body is visible.
    detect_palm(batch (N, 192, 192, 3)) -> raw boxes (N, 2016, 18) and logits (N, 2016, 1); hand_landmarks(batch
    (M, 224, 224, 3)) -> landmarks (M, 63), presence (M, 1), P("Left") (M, 1) [, world (M, 63)]; either may
    return a {tf2onnx name: array} mapping or a sequence in that order.

    ROIs per image, by priority: (1) last frame's tracked ROIs; (2) the pose's hand ROIs (subject's left, then
    right) for sides no tracked hand is known to be, while fewer than `max_hands` are tracked, unless they
    overlap a tracked ROI (IoU > 0.5); (3) palm detection, only for images with neither: no pose hand ROI and
    fewer than `max_hands` tracked ROIs (MediaPipe's tracker likewise detects while short of hands).
    Round 1 runs the palm detector on those images, then the landmark model on all ROIs. Round 2 runs the
    landmark model on the pose ROI of each side whose tracked hand was lost in round 1 (same frame recovery),
    and, with `palm_fallback`, palm detection + landmarks for images whose ROIs all missed (off by default: on
    the test videos it recovered 2 frames of 452 for 31 more detector batches).
    Hands with presence >= 0.5 are kept in priority order, dropping duplicates (is_duplicate), up to
    `max_hands`; each hand's raw landmarks give its ROI for the next frame. With `smooth`, points are One-Euro
    filtered and P("Left") low-passed along a track (a new hand starts fresh).

    Returns the hands per image and each session's new HandTrack (empty lists when no hand was found).
    """
    n = len(images)
    if not (len(times_s) == len(tracks) == len(poses) == n):
        raise ValueError("images, times_s, tracks and poses must have the same length")
    candidates: list[list[_Candidate]] = [[] for _ in range(n)]
    backups: list[tuple[_Candidate, _Candidate]] = []  # (pose candidate, the tracked candidate it stands in for)
    from_pose_count = [0] * n
    for i in range(n):
        h, w = images[i].shape[:2]
        track = tracks[i]
        if track is not None:
            k = len(track.rois)
            extras = zip(_aligned(track.sides, k), _aligned(track.left, k), _aligned(track.filters, k), strict=True)
            for roi, (side, left, state) in list(zip(track.rois, extras, strict=True))[:max_hands]:
                if _in_image(roi, w, h):
                    candidates[i].append(_Candidate(i, roi, "track", side or "", left, state if smooth else None))
        pose = poses[i]
        if pose is not None:
            tracked = list(candidates[i])
            for side in SIDES:
                from_pose = hand_roi_from_pose(pose, side)
                if from_pose is None or not _in_image(from_pose, w, h):
                    continue
                candidate = _Candidate(i, from_pose, "pose", side)
                from_pose_count[i] += 1
                # A side whose hand is tracked needs no pose ROI (even when the pose's wrist has drifted off the
                # hand) unless that track is lost: then the pose ROI is tried in round 2.
                same_side = [t for t in tracked if t.side == side]
                if same_side:
                    candidate.left, candidate.filter = same_side[0].left, same_side[0].filter
                    backups.append((candidate, same_side[0]))
                elif len(tracked) < max_hands and all(roi_iou(from_pose, t.roi) <= SAME_ROI_IOU for t in tracked):
                    candidates[i].append(candidate)

    # Round 1: palms where neither enough tracked hands nor the pose say where to look (MediaPipe: palm detection
    # runs while fewer than max_hands are tracked), then one landmark batch for everything.
    need = [i for i in range(n) if len(candidates[i]) < max_hands and not from_pose_count[i]]
    for c in _run_palms(detect_palm, images, need, max_hands):
        if all(roi_iou(c.roi, t.roi) <= SAME_ROI_IOU for t in candidates[c.image]):
            candidates[c.image].append(c)
    jobs = [c for cs in candidates for c in cs]
    results: list[list[_Result]] = [[] for _ in range(n)]
    found: dict[int, bool] = {}
    for r in _run_landmarks(hand_landmarks, images, jobs):
        results[r.candidate.image].append(r)
        found[id(r.candidate)] = r.score >= MIN_PRESENCE

    # Round 2: the pose ROI of a side whose tracked hand was just lost and, with `palm_fallback`, palm detection
    # for images whose tracked / pose ROIs all missed.
    second = [pose_c for pose_c, tracked_c in backups if not found.get(id(tracked_c), False)]
    if palm_fallback:
        ran = set(need)
        retry = [i for i in range(n) if i not in ran and all(r.score < MIN_PRESENCE for r in results[i])]
        second.extend(_run_palms(detect_palm, images, retry, max_hands))
    for r in _run_landmarks(hand_landmarks, images, second):
        results[r.candidate.image].append(r)

    hands: list[list[Hand]] = []
    new_tracks: list[HandTrack] = []
    for i in range(n):
        kept: list[_Result] = []
        for r in results[i]:  # already in priority order: track, pose, palm
            if r.score < MIN_PRESENCE or not np.all(np.isfinite(r.points)):
                continue
            if any(is_duplicate(r.points, k.points) for k in kept):
                continue
            kept.append(r)
        kept = kept[:max_hands]
        out: list[Hand] = []
        track = HandTrack()
        pose = poses[i]
        for r in kept:
            points = r.points
            if smooth:
                points, state = _smooth(r, float(times_s[i]))
                track.filters.append(state)
            left = r.left
            if smooth and r.candidate.left is not None:
                left = HANDEDNESS_ALPHA * r.left + (1.0 - HANDEDNESS_ALPHA) * r.candidate.left
            side = r.candidate.side or ("" if pose is None else pose_side(r.points, pose))
            track.rois.append(hand_roi_from_landmarks(r.points))
            track.sides.append(side)
            track.left.append(float(left))
            out.append(Hand(handedness_label(left), r.score, points, r.candidate.roi, r.candidate.source, side))
        hands.append(out)
        new_tracks.append(track)
    return hands, new_tracks
