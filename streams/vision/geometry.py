"""Image regions shared by every MediaPipe model: a rotated square (ROI) and the letterbox a detector sees.

A model looks at a square crop of the frame, possibly rotated; `Square.to_image` maps the crop's pixels back to
the frame's, and `Square.crop` samples the crop with one affine warp, as MediaPipe's ImageToTensorCalculator does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


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

    def to_crop(self, size: int) -> np.ndarray:
        """2x3 affine matrix taking image pixels to crop pixels (the inverse of `to_image`)."""
        return np.asarray(cv2.invertAffineTransform(self.to_image(size)))

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
    """The unrotated square, centred on the image, that contains it whole (a detector's input region)."""
    return Square(width / 2.0, height / 2.0, float(max(width, height)))


def normalize_radians(angle: float) -> float:
    """Angle wrapped into [-pi, pi)."""
    return (angle + math.pi) % (2 * math.pi) - math.pi


def rotation_towards(start: np.ndarray, end: np.ndarray, target: float) -> float:
    """MediaPipe's ROI rotation: the angle that turns the vector start -> end to `target` radians (y down)."""
    return normalize_radians(target - math.atan2(-(float(end[1]) - float(start[1])), float(end[0]) - float(start[0])))
