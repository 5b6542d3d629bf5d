"""BlazePose two-stage geometry: detector anchors and decoding, the rotated ROI, crops and back-projection.

Pure numpy + OpenCV so that the same code runs inside Triton's python backend (its own venv) and in unit
tests. Follows MediaPipe 0.10.14's pose_detection_cpu / pose_landmark_by_roi_cpu graphs (FIELD_NOTES §3).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

DETECTOR_SIZE = 224
LANDMARK_SIZE = 256
NUM_KEYPOINTS = 33
MIN_DETECTION_SCORE = 0.5
NMS_IOU = 0.3
MIN_POSE_PRESENCE = 0.5
ROI_SCALE = 1.25

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


def ssd_anchors() -> np.ndarray:
    """Anchor centres (2254, 2) in [0, 1] for the 224x224 detector (fixed anchor size: w = h = 1)."""
    strides = (8, 16, 32, 32, 32)
    centres: list[tuple[float, float]] = []
    layer = 0
    while layer < len(strides):
        # Consecutive layers with the same stride share one feature map; each adds 2 anchors per cell
        # (aspect ratio 1.0 plus the interpolated-scale anchor).
        same = 0
        while layer + same < len(strides) and strides[layer + same] == strides[layer]:
            same += 1
        side = math.ceil(DETECTOR_SIZE / strides[layer])
        per_cell = 2 * same
        for y in range(side):
            for x in range(side):
                centres.extend([((x + 0.5) / side, (y + 0.5) / side)] * per_cell)
        layer += same
    return np.asarray(centres, dtype=np.float32)


ANCHORS = ssd_anchors()


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function; MediaPipe clips detector logits at +-100 (float64 so exp cannot overflow)."""
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, dtype=np.float64), -100.0, 100.0))))


@dataclass(frozen=True)
class Square:
    """A square region of an image: centre and side in pixels, rotation in radians (clockwise on screen)."""

    cx: float
    cy: float
    side: float
    rotation: float = 0.0

    def to_image(self, size: int) -> np.ndarray:
        """2x3 affine matrix taking crop pixels (0..size) to image pixels."""
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        k = self.side / size
        # image = centre + R(rotation) @ ((crop - size/2) * k)
        return np.array(
            [
                [c * k, -s * k, self.cx - (c * size / 2 - s * size / 2) * k],
                [s * k, c * k, self.cy - (s * size / 2 + c * size / 2) * k],
            ],
            dtype=np.float64,
        )

    def crop(self, image: np.ndarray, size: int, border: int, border_value: float = 0.0) -> np.ndarray:
        """Sample this square of `image` into a size x size crop (one affine warp, as MediaPipe does)."""
        return cv2.warpAffine(
            image,
            self.to_image(size),
            (size, size),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=border,
            borderValue=border_value,
        )


def letterbox(width: int, height: int) -> Square:
    """The unrotated square, centred on the image, that contains it whole (the detector's input region)."""
    return Square(width / 2.0, height / 2.0, float(max(width, height)))


def detector_input(rgb: np.ndarray) -> tuple[np.ndarray, Square]:
    """224x224x3 float32 in [-1, 1], letterboxed with -1, and the region it covers."""
    h, w = rgb.shape[:2]
    region = letterbox(w, h)
    crop = region.crop(rgb, DETECTOR_SIZE, cv2.BORDER_CONSTANT, 0.0)
    return crop.astype(np.float32) / 127.5 - 1.0, region


def landmark_input(rgb: np.ndarray, roi: Square) -> np.ndarray:
    """256x256x3 float32 in [0, 1] of the rotated ROI, border replicated."""
    crop = roi.crop(rgb, LANDMARK_SIZE, cv2.BORDER_REPLICATE)
    return crop.astype(np.float32) / 255.0


@dataclass(frozen=True)
class Detection:
    """Best person detection: score and the 4 alignment keypoints in image pixels."""

    score: float
    keypoints: np.ndarray  # (4, 2): mid-hip, full-body size/rotation point, mid-shoulder, upper-body point


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (xmin, ymin, xmax, ymax) box against many."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return np.asarray(inter / np.maximum(area + areas - inter, 1e-9))


def decode_detection(raw_boxes: np.ndarray, raw_scores: np.ndarray, region: Square) -> Detection | None:
    """Decode one image's detector output (2254x12, 2254x1) into the best person, weighted-NMS merged."""
    scores = sigmoid(raw_scores.reshape(-1))
    keep = scores >= MIN_DETECTION_SCORE
    if not np.any(keep):
        return None
    raw, scores, anchors = raw_boxes[keep] / DETECTOR_SIZE, scores[keep], ANCHORS[keep]
    cx, cy = raw[:, 0] + anchors[:, 0], raw[:, 1] + anchors[:, 1]
    w, h = raw[:, 2], raw[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    kps = raw[:, 4:12].reshape(-1, 4, 2) + anchors[:, None, :]

    best = int(np.argmax(scores))
    cluster = _iou(boxes[best], boxes) > NMS_IOU
    cluster[best] = True
    weights = scores[cluster] / scores[cluster].sum()
    merged = (kps[cluster] * weights[:, None, None]).sum(axis=0)  # (4, 2) in [0, 1] of the letterbox
    to_image = region.to_image(1)
    pixels = merged @ to_image[:, :2].T + to_image[:, 2]
    return Detection(float(scores[best]), pixels)


def roi_from_detection(det: Detection) -> Square:
    """The rotated square the landmark model looks at: centred on the hips, 2.5x hip-to-top distance."""
    (x0, y0), (x1, y1) = det.keypoints[0], det.keypoints[1]
    rotation = math.pi / 2 - math.atan2(-(y1 - y0), x1 - x0)
    rotation = (rotation + math.pi) % (2 * math.pi) - math.pi
    side = 2.0 * math.hypot(x1 - x0, y1 - y0) * ROI_SCALE
    return Square(float(x0), float(y0), side, rotation)


def decode_landmarks(raw: np.ndarray, roi: Square) -> np.ndarray:
    """Landmark model output [195] -> (33, 4): x, y in image pixels, visibility, presence (probabilities)."""
    pts = raw.reshape(39, 5)[:NUM_KEYPOINTS]
    to_image = roi.to_image(LANDMARK_SIZE)
    xy = pts[:, :2] @ to_image[:, :2].T + to_image[:, 2]
    return np.concatenate([xy, sigmoid(pts[:, 3:5])], axis=1).astype(np.float32)


@dataclass(frozen=True)
class Pose:
    """One image's result: (33, 4) keypoints (x, y px, visibility, presence) and the pose-presence score."""

    keypoints: np.ndarray
    score: float

    @property
    def found(self) -> bool:
        return self.score >= MIN_POSE_PRESENCE


NO_POSE = Pose(np.zeros((NUM_KEYPOINTS, 4), dtype=np.float32), 0.0)


def estimate(
    images: list[np.ndarray],
    detect: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    landmarks: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
) -> list[Pose]:
    """Two-stage BlazePose over a batch of RGB images; each model runs once for the whole batch.

    `detect` maps (N, 224, 224, 3) to raw boxes (N, 2254, 12) and logits (N, 2254, 1); `landmarks` maps
    (M, 256, 256, 3) to raw landmarks (M, 195) and the pose flag (M, 1).
    """
    if not images:
        return []
    inputs, regions = zip(*(detector_input(rgb) for rgb in images), strict=True)
    boxes, scores = detect(np.stack(inputs))
    rois: dict[int, Square] = {}
    for i, region in enumerate(regions):
        det = decode_detection(boxes[i], scores[i], region)
        if det is not None:
            rois[i] = roi_from_detection(det)
    poses = [NO_POSE] * len(images)
    if rois:
        order = sorted(rois)
        raw, flags = landmarks(np.stack([landmark_input(images[i], rois[i]) for i in order]))
        for j, i in enumerate(order):
            poses[i] = Pose(decode_landmarks(raw[j], rois[i]), float(flags[j].reshape(-1)[0]))
    return poses
