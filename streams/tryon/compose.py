"""Putting an item's pixels into a frame: warping RGBA images, feathered edges, shading, alpha compositing."""

from __future__ import annotations

import cv2
import numpy as np


def warp_rgba(rgba: np.ndarray, matrix: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Warp an RGBA item image into frame space with a 2x3 affine or 3x3 perspective matrix (item px -> frame px).

    Returns BGR float32 (H, W, 3) in [0, 255] and alpha float32 (H, W) in [0, 1]; colour is premultiplied-safe
    (warped premultiplied, then divided) so edges do not pick up the transparent pixels' colour."""
    rgba = np.asarray(rgba, dtype=np.float32)
    alpha = rgba[:, :, 3:4] / 255.0
    premultiplied = np.concatenate([rgba[:, :, 2::-1] * alpha, alpha], axis=2)  # BGR * a, a
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape == (2, 3):
        out = cv2.warpAffine(premultiplied, matrix, (width, height), flags=cv2.INTER_LINEAR, borderValue=0)
    else:
        out = cv2.warpPerspective(premultiplied, matrix, (width, height), flags=cv2.INTER_LINEAR, borderValue=0)
    a = out[:, :, 3]
    bgr = out[:, :, :3] / np.maximum(a, 1e-6)[:, :, None]
    return np.clip(bgr, 0, 255).astype(np.float32), np.clip(a, 0, 1).astype(np.float32)


def feather(alpha: np.ndarray, radius_px: float) -> np.ndarray:
    """Soften an alpha matte's edge over about `radius_px` pixels (inside the matte only: no halo outside)."""
    if radius_px <= 0.5:
        return np.asarray(alpha, np.float32)
    k = int(2 * round(radius_px) + 1)
    blurred = cv2.GaussianBlur(alpha, (k, k), radius_px / 2)
    return np.asarray(np.minimum(alpha, blurred), np.float32)


def shade(bgr_item: np.ndarray, frame_bgr: np.ndarray, alpha: np.ndarray, strength: float = 0.6) -> np.ndarray:
    """Let the frame's light and folds show through the item: multiply by the frame's luminance relative to its
    mean under the item (so a uniformly lit body leaves the item's colour unchanged)."""
    luma = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
    weight = alpha > 0.5
    mean = float(luma[weight].mean()) if weight.any() else float(luma.mean())
    ratio = luma / max(mean, 1.0)
    gain = 1.0 + strength * (np.clip(ratio, 0.3, 1.8) - 1.0)
    return np.asarray(np.clip(bgr_item * gain[:, :, None], 0, 255), np.float32)


def composite(frame_bgr: np.ndarray, item_bgr: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """frame * (1 - alpha) + item * alpha, as uint8."""
    a = np.clip(alpha, 0, 1)[:, :, None]
    out = frame_bgr.astype(np.float32) * (1.0 - a) + item_bgr.astype(np.float32) * a
    return np.asarray(np.clip(out + 0.5, 0, 255), np.uint8)
