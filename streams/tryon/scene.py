"""What a renderer knows about one frame: the image and everything perception found in it, in image pixels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class HandView:
    handedness: str  # the subject's own hand: "Left" or "Right"
    points: np.ndarray  # (21, 3) x px, y px, z (px scale), MediaPipe hand order


@dataclass(frozen=True)
class Scene:
    bgr: np.ndarray  # (H, W, 3) uint8, the camera frame
    time_s: float = 0.0  # capture time (0 for a still)
    keypoints: np.ndarray | None = None  # (33, 4) the shopper's BlazePose x px, y px, visibility, presence
    face: np.ndarray | None = None  # (478, 3) x px, y px, z (px scale): 468 mesh + 10 iris
    head_rotation: np.ndarray | None = None  # (3, 3) camera frame, streams/vision/face_geometry.py conventions
    head_translation: np.ndarray | None = None  # (3,) cm
    hands: list[HandView] = field(default_factory=list)
    mask: np.ndarray | None = None  # (H, W) float32 person probability

    @property
    def width(self) -> int:
        return int(self.bgr.shape[1])

    @property
    def height(self) -> int:
        return int(self.bgr.shape[0])


@dataclass(frozen=True)
class Rendered:
    """A renderer's result: the composited frame, where the item ended up, and its anchors in the frame."""

    bgr: np.ndarray  # (H, W, 3) uint8: the frame with the item on
    alpha: np.ndarray  # (H, W) float32 in [0, 1]: how much of the item covers each pixel (after occlusion)
    placed: dict[str, np.ndarray] = field(default_factory=dict)  # anchor name -> (x, y) px in the frame
