"""The person mask at frame resolution: model output back to the frame, edges, temporal smoothing and RLE.

Two sources: the pose landmark model's 256x256 mask in its rotated ROI (`mask_from_roi`), or selfie segmentation
of the whole (stretched) frame when no body is found, e.g. a face close-up (`selfie_input`, `mask_from_selfie`).
`smooth` blends each frame with the previous one where the new mask is uncertain, as MediaPipe's
SegmentationSmoothingCalculator does; the previous mask is kept small (`MaskTrack`, <= 128 px, uint8) because it
is persisted with the session. Pure numpy + OpenCV (runs in Triton's python backend and in unit tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from streams.vision.geometry import Square

MODEL_SIZE = 256  # pose-landmark and selfie masks are 256x256
COMBINE_WITH_PREVIOUS_RATIO = 0.7  # MediaPipe's pose_segmentation_filtering / holistic setting
TRACK_SIZE = 128  # long side of the persisted previous mask


def mask_from_roi(probabilities: np.ndarray, roi: Square, width: int, height: int) -> np.ndarray:
    """ROI-space (256, 256) probabilities -> (height, width) float32 frame mask; 0 outside the ROI (bilinear)."""
    prob = np.asarray(probabilities, dtype=np.float32).reshape(MODEL_SIZE, MODEL_SIZE)
    out = cv2.warpAffine(
        prob,
        roi.to_image(MODEL_SIZE),  # crop px -> image px; OpenCV inverts it to sample the crop
        (int(width), int(height)),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _stretch(width: int, height: int) -> np.ndarray:
    """2x3 affine taking 256x256 model px to frame px, aspect not kept (corners to corners)."""
    return np.array([[width / MODEL_SIZE, 0.0, 0.0], [0.0, height / MODEL_SIZE, 0.0]], dtype=np.float64)


def selfie_input(rgb: np.ndarray) -> np.ndarray:
    """Selfie segmentation's input: the whole frame stretched to 256x256x3 float32 in [0, 1]."""
    h, w = rgb.shape[:2]
    crop = cv2.warpAffine(
        rgb,
        _stretch(w, h),
        (MODEL_SIZE, MODEL_SIZE),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return (crop.astype(np.float32) / 255.0).astype(np.float32)


def mask_from_selfie(probabilities: np.ndarray, width: int, height: int) -> np.ndarray:
    """Selfie segmentation's (256, 256) probabilities -> (height, width) float32 frame mask (bilinear)."""
    prob = np.asarray(probabilities, dtype=np.float32).reshape(MODEL_SIZE, MODEL_SIZE)
    out = cv2.warpAffine(
        prob,
        _stretch(width, height),
        (int(width), int(height)),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return np.clip(out, 0.0, 1.0).astype(np.float32)


@dataclass
class MaskTrack:
    """The previous (smoothed) mask, downscaled to at most TRACK_SIZE px on its long side, uint8 0..255."""

    previous: np.ndarray  # (h, w) uint8

    @property
    def width(self) -> int:
        return int(self.previous.shape[1])

    @property
    def height(self) -> int:
        return int(self.previous.shape[0])


def track_size(width: int, height: int) -> tuple[int, int]:
    """(w, h) of the persisted mask for a frame of width x height: long side <= TRACK_SIZE, aspect kept."""
    k = min(1.0, TRACK_SIZE / max(width, height, 1))
    return max(1, round(width * k)), max(1, round(height * k))


def _uncertainty(p: np.ndarray) -> np.ndarray:
    """MediaPipe's polynomial uncertainty of a probability (segmentation_smoothing_calculator.cc): 1 at p = 0.5,
    ~0 near 0 and 1 (its constants are MediaPipe's; 0.52 at p = 0.2, 0.78 at p = 0.3)."""
    c1, c2, c3, c4, c5 = 5.68842, -0.748699, -57.8051, 291.309, -624.717
    t = p - np.float32(0.5)
    x = t * t
    return np.asarray(np.float32(1.0) - np.minimum(np.float32(1.0), x * (c1 + x * (c2 + x * (c3 + x * (c4 + x * c5))))))


def smooth(
    previous: MaskTrack | None, mask: np.ndarray, ratio: float = COMBINE_WITH_PREVIOUS_RATIO
) -> tuple[np.ndarray, MaskTrack]:
    """SegmentationSmoothingCalculator: new + (previous - new) * uncertainty(new) * ratio, per pixel.

    Confident pixels keep the new value; uncertain ones (edges, flicker) lean on the previous frame. The previous
    mask only exists at track resolution, so `previous - new` is taken there and upsampled (bilinear): the new
    mask keeps its full-resolution detail and a static mask is a fixed point. A track of another size (new
    resolution) is ignored. Returns the smoothed (H, W) float32 mask and the next track.
    """
    new = np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)
    h, w = new.shape[:2]
    small = track_size(w, h)
    new_small = cv2.resize(new, small, interpolation=cv2.INTER_AREA) if small != (w, h) else new
    out, out_small = new, new_small
    if previous is not None and (previous.width, previous.height) == small:
        delta = previous.previous.astype(np.float32) / np.float32(255.0) - new_small
        if small != (w, h):
            delta = cv2.resize(delta, (w, h), interpolation=cv2.INTER_LINEAR)
        out = np.clip(new + delta * (_uncertainty(new) * np.float32(ratio)), 0.0, 1.0).astype(np.float32)
        out_small = cv2.resize(out, small, interpolation=cv2.INTER_AREA) if small != (w, h) else out
    return out, MaskTrack(np.clip(np.rint(out_small * 255.0), 0, 255).astype(np.uint8))


def rle_encode(mask: np.ndarray) -> list[int]:
    """Row-major run lengths of a boolean (H, W) mask, alternating False/True runs, starting with a False run
    (0 when the first pixel is True)."""
    flat = np.asarray(mask, dtype=bool).reshape(-1)
    if flat.size == 0:
        return []
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(bounds).tolist()
    return [0, *runs] if flat[0] else runs


def rle_decode(counts: list[int], height: int, width: int) -> np.ndarray:
    """Inverse of `rle_encode`: (height, width) bool; ValueError when the runs do not add up to the size."""
    runs = np.asarray(counts, dtype=np.int64)
    if runs.sum() != height * width or np.any(runs < 0):
        raise ValueError(f"run lengths sum to {int(runs.sum())}, expected {height * width}")
    values = np.arange(len(runs)) % 2 == 1
    return np.repeat(values, runs).reshape(height, width)
