"""MediaPipe's single-shot detectors (person, face, palm): anchors, box/keypoint decoding and weighted NMS.

Follows `ssd_anchors_calculator.cc`, `tensors_to_detections_calculator.cc` (reverse_output_order: raw values
are cx, cy, w, h, then keypoint x, y pairs, in input pixels relative to the anchor) and the WEIGHTED mode of
`non_max_suppression_calculator.cc`. The input is the letterboxed frame (aspect kept, zero border).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from streams.vision.geometry import Square, letterbox


@dataclass(frozen=True)
class DetectorSpec:
    """What differs between MediaPipe's detectors."""

    size: int  # square input side
    strides: tuple[int, ...]
    low: float  # input value range after normalisation
    high: float
    min_score: float = 0.5
    iou: float = 0.3


POSE = DetectorSpec(224, (8, 16, 32, 32, 32), -1.0, 1.0)
FACE = DetectorSpec(128, (8, 16, 16, 16), -1.0, 1.0)
PALM = DetectorSpec(192, (8, 16, 16, 16), 0.0, 1.0)


@lru_cache(maxsize=8)
def anchors(size: int, strides: tuple[int, ...]) -> np.ndarray:
    """Anchor centres (N, 2) in [0, 1]: fixed anchor size, aspect ratio 1 plus the interpolated-scale anchor.

    Consecutive layers with the same stride share one feature map and each adds 2 anchors per cell.
    """
    centres: list[tuple[float, float]] = []
    layer = 0
    while layer < len(strides):
        same = 0
        while layer + same < len(strides) and strides[layer + same] == strides[layer]:
            same += 1
        side = math.ceil(size / strides[layer])
        for y in range(side):
            for x in range(side):
                centres.extend([((x + 0.5) / side, (y + 0.5) / side)] * (2 * same))
        layer += same
    return np.asarray(centres, dtype=np.float32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function; MediaPipe clips detector logits at +-100 (float64 so exp cannot overflow)."""
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, dtype=np.float64), -100.0, 100.0))))


def detector_input(rgb: np.ndarray, spec: DetectorSpec) -> tuple[np.ndarray, Square]:
    """The letterboxed frame as the detector's float32 input (size x size x 3), and the region it covers."""
    h, w = rgb.shape[:2]
    region = letterbox(w, h)
    crop = region.crop(rgb, spec.size, cv2.BORDER_CONSTANT, 0.0)  # padding becomes `low`, as in MediaPipe
    return (spec.low + crop.astype(np.float32) * ((spec.high - spec.low) / 255.0)).astype(np.float32), region


@dataclass(frozen=True)
class Detection:
    """One detected object: score, box (xmin, ymin, xmax, ymax) and keypoints (K, 2), all in image pixels."""

    score: float
    box: np.ndarray
    keypoints: np.ndarray


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return np.asarray(inter / np.maximum(area + areas - inter, 1e-9))


def decode(
    raw_boxes: np.ndarray, raw_scores: np.ndarray, spec: DetectorSpec, region: Square, max_detections: int = 1
) -> list[Detection]:
    """One image's raw detector output (N, 4 + 2K) and logits (N, 1) -> up to `max_detections`, best first."""
    scores = sigmoid(raw_scores.reshape(-1))
    keep = scores >= spec.min_score
    if not np.any(keep):
        return []
    anchor = anchors(spec.size, spec.strides)[keep]
    raw, scores = raw_boxes[keep].astype(np.float64) / spec.size, scores[keep]
    cx, cy = raw[:, 0] + anchor[:, 0], raw[:, 1] + anchor[:, 1]
    w, h = raw[:, 2], raw[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    kps = raw[:, 4:].reshape(len(raw), -1, 2) + anchor[:, None, :]

    to_image = region.to_image(1)
    found: list[Detection] = []
    remaining = np.argsort(-scores)
    while remaining.size and len(found) < max_detections:
        best = remaining[0]
        cluster = remaining[_iou(boxes[best], boxes[remaining]) > spec.iou]
        cluster = np.union1d(cluster, [best])
        weights = scores[cluster] / scores[cluster].sum()
        box = (boxes[cluster] * weights[:, None]).sum(axis=0).reshape(2, 2)
        points = (kps[cluster] * weights[:, None, None]).sum(axis=0)
        box_px = box @ to_image[:, :2].T + to_image[:, 2]
        found.append(
            Detection(
                float(scores[best]),
                np.concatenate([box_px.min(axis=0), box_px.max(axis=0)]).astype(np.float32),
                (points @ to_image[:, :2].T + to_image[:, 2]).astype(np.float32),
            )
        )
        remaining = np.setdiff1d(remaining, cluster, assume_unique=True)
        remaining = remaining[np.argsort(-scores[remaining])]
    return found
