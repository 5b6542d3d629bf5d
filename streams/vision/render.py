"""Drawing on frames: the BlazePose skeleton over the shopper (the first try-on render)."""

from __future__ import annotations

import cv2
import numpy as np

from streams.vision.blazepose import SKELETON

MIN_VISIBILITY = 0.5
_LEFT, _RIGHT, _CENTRE = (255, 138, 0), (0, 128, 255), (230, 230, 230)  # BGR


def _colour(a: int, b: int) -> tuple[int, int, int]:
    # BlazePose numbers the subject's left side with odd indices from 11 on, and 1-3, 7, 9 on the face.
    left = {1, 2, 3, 7, 9} | set(range(11, 33, 2))
    right = {4, 5, 6, 8, 10} | set(range(12, 33, 2))
    if a in left and b in left:
        return _LEFT
    if a in right and b in right:
        return _RIGHT
    return _CENTRE


def draw_skeleton(bgr: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """Draw bones and joints of (33, 4) keypoints (x, y, visibility, presence) onto `bgr` in place."""
    scale = max(1, round(max(bgr.shape[:2]) / 400))
    visible = keypoints[:, 2] >= MIN_VISIBILITY
    pts = np.round(keypoints[:, :2]).astype(np.int32)
    for a, b in SKELETON:
        if visible[a] and visible[b]:
            cv2.line(bgr, tuple(pts[a]), tuple(pts[b]), _colour(a, b), 2 * scale, cv2.LINE_AA)
    for i in np.flatnonzero(visible):
        cv2.circle(bgr, tuple(pts[i]), 3 * scale, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(bgr, tuple(pts[i]), 3 * scale, (40, 40, 40), 1, cv2.LINE_AA)
    return bgr
