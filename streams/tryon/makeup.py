"""Make-up: lipstick on the lips of the 478-point face mesh.

The lip region is the outer lip contour minus the mouth opening, both from MediaPipe's FACEMESH_LIPS
(face_mesh_connections.py) taken in order around each contour, smoothed with a closed Catmull-Rom spline through
the mesh points (the 20-point polygons are visibly faceted on a close-up). Colour is put on in CIE Lab, keeping
the lips' own texture: the lightness keeps its detail around the lips' mean and is moved towards the shade's
lightness, a and b take the shade's chroma with a little of the lips' own variation, then the result is blended
with `opacity`. A matte finish softens the lips' own highlights; a gloss finish adds a specular highlight from the
lips' own brightest pixels (the light's reflections are where the lips already shine). The border is feathered by
about 1 px inside the lips only: `Rendered.alpha` is 0 at every pixel whose centre lies outside the lip region.

Item params: `colour` "#RRGGBB" (default a classic red), `opacity` 0..1 (default 0.8), `finish` "matte" | "gloss"
(default "matte").
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from streams.tryon.catalogue import Item
from streams.tryon.compose import composite
from streams.tryon.scene import Rendered, Scene

NUM_MESH = 468
# The outer lip contour and the mouth opening, each in order around the contour (image-left corner first, along
# the upper lip, back along the lower one), from MediaPipe's FACEMESH_LIPS edges.
LIPS_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
LIPS_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
DEFAULT_COLOUR = "#B0102C"
DEFAULT_OPACITY = 0.8
FEATHER_PX = 1.0
SPLINE_STEPS = 6  # points per mesh edge on the smoothed contours
SUPERSAMPLE = 4  # the lip coverage is rasterised at this multiple of the frame's resolution
LIGHTNESS_FOLLOW = 0.75  # how far the lips' mean lightness moves to the shade's
CHROMA_DETAIL = 0.3  # how much of the lips' own a/b variation stays
MATTE_HIGHLIGHTS = 0.5  # a matte finish keeps this much of the lips' bright detail
GLOSS_STRENGTH = 32.0  # L* added at the brightest lip pixels for a gloss finish


def _catmull_rom(points: np.ndarray, steps: int) -> np.ndarray:
    """A closed uniform Catmull-Rom curve through `points` (N, 2), `steps` samples per edge (passes through them)."""
    p = np.asarray(points, np.float64)
    t = (np.arange(steps) / steps)[:, None]
    p0, p1, p2, p3 = np.roll(p, 1, 0), p, np.roll(p, -1, 0), np.roll(p, -2, 0)
    curve = 0.5 * (
        2 * p1[:, None]
        + (p2 - p0)[:, None] * t
        + (2 * p0 - 5 * p1 + 4 * p2 - p3)[:, None] * t**2
        + (-p0 + 3 * p1 - 3 * p2 + p3)[:, None] * t**3
    )
    return np.asarray(curve.reshape(-1, 2))


def lip_polygons(face: np.ndarray, smooth: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(outer lip contour, mouth opening) in px, each (M, 2), from a (>= 468, 2+) mesh."""
    pts = np.asarray(face, np.float64)[:, :2]
    outer, inner = pts[list(LIPS_OUTER)], pts[list(LIPS_INNER)]
    if not smooth:
        return outer, inner
    return _catmull_rom(outer, SPLINE_STEPS), _catmull_rom(inner, SPLINE_STEPS)


def _fill(mask: np.ndarray, polygon: np.ndarray, origin: tuple[int, int], k: int, value: int) -> None:
    """Fill `polygon` (frame px, pixel centres at integers as everywhere in OpenCV) into `mask`, whose pixel (0, 0)
    is frame pixel `origin` and which has `k` x `k` pixels per frame pixel."""
    fine = (np.asarray(polygon) - origin + 0.5) * k - 0.5
    cv2.fillPoly(mask, [np.round(fine * 16).astype(np.int32)], value, cv2.LINE_8, 4)


def lip_mask(face: np.ndarray, width: int, height: int) -> tuple[np.ndarray, tuple[int, int]] | None:
    """The lips' coverage (0..1, feathered ~1 px inside) over their bounding box, and the box's top-left corner;
    None when the lips are outside the frame or degenerate. Zero at every pixel centre outside the lip region."""
    outer, inner = lip_polygons(face)
    if not (np.all(np.isfinite(outer)) and np.all(np.isfinite(inner))):
        return None
    x0 = max(0, math.floor(outer[:, 0].min()) - 2)
    y0 = max(0, math.floor(outer[:, 1].min()) - 2)
    x1 = min(width, math.ceil(outer[:, 0].max()) + 3)
    y1 = min(height, math.ceil(outer[:, 1].max()) + 3)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    w, h = x1 - x0, y1 - y0
    inside = np.zeros((h, w), np.uint8)  # pixel centres in the lips
    _fill(inside, outer, (x0, y0), 1, 1)
    _fill(inside, inner, (x0, y0), 1, 0)
    k = SUPERSAMPLE
    fine = np.zeros((h * k, w * k), np.uint8)
    _fill(fine, outer, (x0, y0), k, 255)
    _fill(fine, inner, (x0, y0), k, 0)
    coverage = cv2.resize(fine, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    blurred = cv2.GaussianBlur(coverage, (5, 5), FEATHER_PX * 0.75)
    alpha = np.minimum(coverage, blurred) * inside
    if float(alpha.max()) <= 0.0:
        return None
    return np.asarray(alpha, np.float32), (x0, y0)


def _colour_bgr(value: object) -> tuple[int, int, int]:
    text = value if isinstance(value, str) else DEFAULT_COLOUR
    text = text.strip().lstrip("#")
    try:
        rgb = int(text, 16) if len(text) == 6 else int(DEFAULT_COLOUR[1:], 16)
    except ValueError:
        rgb = int(DEFAULT_COLOUR[1:], 16)
    return rgb & 255, (rgb >> 8) & 255, rgb >> 16


def _lab(bgr: np.ndarray) -> np.ndarray:
    return np.asarray(cv2.cvtColor(np.asarray(bgr, np.float32) / 255.0, cv2.COLOR_BGR2Lab), np.float32)


def recolour(bgr: np.ndarray, weight: np.ndarray, colour: tuple[int, int, int], finish: str) -> np.ndarray:
    """The lips in `bgr` (uint8 region) recoloured to `colour` (BGR), keeping their texture; float32 BGR 0..255.
    `weight` (0..1) says which pixels are lips (for the lips' statistics)."""
    lab = _lab(bgr)
    target = _lab(np.array([[colour]], np.uint8))[0, 0]
    w = np.asarray(weight, np.float32)
    total = max(float(w.sum()), 1e-6)
    mean = (lab * w[:, :, None]).reshape(-1, 3).sum(0) / total
    light = lab[:, :, 0]
    detail = light - mean[0]
    if finish == "gloss":
        lips = light[w > 0.5]
        if lips.size >= 4:
            lo, hi = np.percentile(lips, [80.0, 99.5])
            spec = np.clip((light - lo) / max(float(hi - lo), 1.0), 0, 1) ** 1.5
            spec = cv2.GaussianBlur(spec.astype(np.float32), (3, 3), 0) * w
        else:
            spec = np.zeros_like(light)
    else:
        detail = np.where(detail > 0, detail * MATTE_HIGHLIGHTS, detail)
        spec = np.zeros_like(light)
    new_mean = mean[0] + LIGHTNESS_FOLLOW * (float(target[0]) - mean[0])
    out = np.empty_like(lab)
    out[:, :, 0] = np.clip(new_mean + detail + GLOSS_STRENGTH * spec, 0, 100)
    # lighter than the shade (the lips' own highlights, the gloss): less chroma, so highlights go whitish, not orange
    paler = np.clip(1.0 - (out[:, :, 0] - float(target[0])) / 60.0, 0.35, 1.0) * (1.0 - 0.6 * spec)
    for c in (1, 2):
        out[:, :, c] = (float(target[c]) + CHROMA_DETAIL * (lab[:, :, c] - mean[c])) * paler
    result = cv2.cvtColor(out, cv2.COLOR_Lab2BGR) * 255.0
    return np.asarray(np.clip(result, 0, 255), np.float32)


def render_lipstick(scene: Scene, item: Item) -> Rendered:
    """Lipstick on the lips only (see the module docstring); the frame unchanged without a face."""
    none = Rendered(scene.bgr, np.zeros(scene.bgr.shape[:2], np.float32))
    if scene.face is None:
        return none
    face = np.asarray(scene.face, np.float64)
    if face.ndim != 2 or face.shape[0] < NUM_MESH or face.shape[1] < 2:
        return none
    if not np.all(np.isfinite(face[list(LIPS_OUTER) + list(LIPS_INNER), :2])):
        return none
    found = lip_mask(face, scene.width, scene.height)
    if found is None:
        return none
    mask, (x0, y0) = found
    h, w = mask.shape
    opacity = float(np.clip(float(item.params.get("opacity", DEFAULT_OPACITY)), 0.0, 1.0))
    finish = str(item.params.get("finish", "matte")).lower()
    region = scene.bgr[y0 : y0 + h, x0 : x0 + w]
    coloured = recolour(region, mask, _colour_bgr(item.params.get("colour")), finish)
    alpha = mask * opacity
    out = np.array(scene.bgr, dtype=np.uint8, copy=True)
    out[y0 : y0 + h, x0 : x0 + w] = composite(region, coloured, alpha)
    full = np.zeros(scene.bgr.shape[:2], np.float32)
    full[y0 : y0 + h, x0 : x0 + w] = alpha
    return Rendered(out, full)
