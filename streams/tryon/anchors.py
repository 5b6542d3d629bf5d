"""Automatic item preparation: cutting a product photo out of its plain background, and proposing the category's
anchor points from the cut-out's shape. Used by `vto catalogue add` and tools/make_catalogue.py; the proposals
are a starting point for a person to check on the preview, not a guarantee.

Only numpy + OpenCV (runs wherever the catalogue does). Conventions are those of `streams.tryon.catalogue`:
anchors are (x, y) in the image's pixels; "left"/"right" in garment, glasses, hat and necklace anchors are the
wearer's own sides, so in a front view the wearer's left is on the image's right.

Rules, per category (the silhouette is the largest component of alpha > 0.5; for earrings, necklaces, rings and
watches every component of at least 2 % of the largest, as jewellery comes in parts):

* top, dress. Torso side lines: for a top, straight lines fitted to the silhouette's left / right ends on the rows
  just below the armpits (found where the row width drops most, from the sleeves' span to the body's, in the upper
  65 %; without such a drop the rows at 60-85 % of the height), so a garment lying a little tilted is followed;
  for a dress, vertical lines through the ends of its narrowest row between 20 and 60 % of the height (the waist).
  `collar` = the top of the silhouette in the column midway between the side lines (near the top): the back of
  the neck in a crew neck, the bottom of a V or of a strap top's neckline.
  Shoulders = where the width jumps from the neck to the shoulders: the top edge above each side line; where that
  is an armhole (more than 10 % of the height below the garment's top), the middle of the strap top found moving
  towards the centre (tank tops, strap dresses).
  Sleeves: what sticks out beyond a side line above the armpits (more than 1 % of the garment, reaching at least
  8 % of the torso width out; 15 % for a dress, whose bodice flares) is a sleeve; its anchor is the middle of the
  cuff: midway between the sleeve's outermost point and its corner furthest out and down (largest outward x + y),
  moved onto the sleeve. No sleeve: the sleeve anchor is the shoulder anchor (renderers read that as sleeveless).
  Hems = the bottom corners: in the lowest quarter, the points that maximise y - x (image left) and y + x (image
  right), the ends of the bottom row even when the garment lies a little tilted.
* glasses: lenses = the centroids of the two blobs left by an opening of the hole-filled silhouette with a disc of
  a third of the frame height (the thin bridge and temples vanish; what stays are the lens rims and the lenses,
  holes or dark glass alike); `bridge` = midway between the lens centres, at the middle of the frame material in
  that column; temples = the extreme left / right points (the hinges).
* hat: brim ends = the ends of the widest row in the lowest 30 % of the height (the lowest of the rows within 2 %
  of that width: a brim seen slightly from above; a beanie is widest at its cuff); `crown` = the top of the
  silhouette in the column midway between the brim ends (a pompom counts).
* shoes (side view): the sole runs along the image's x axis; the toe is the end whose outer 20 % of the length is
  lower (smaller mean silhouette height: a toe box is low and tapers, the heel counter rises to the ankle);
  `toe` / `heel` = the outermost points at either end within the lowest 35 % of the shoe's height, i.e. along the
  sole (where BlazePose puts foot_index and heel).
* ring, watch (seen from above, the finger or wrist running vertically, the band across it): the band's long
  axis is the silhouette's principal axis; `band_left` / `band_right` = the extreme points along that axis (image
  left, image right), each placed on the band's centre line (the middle of the narrow axis there).
* earrings: `hook` = the top of the silhouette (middle of the top row).
* necklace (front view): `left_end` / `right_end` = the highest points of the image-right / image-left halves
  (where the chain goes behind the neck; wearer's sides), `centre` = the lowest point (the pendant's tip, if any).
* lipstick: no anchors.

The cut-out (`cut_out`) is for a product photo on a plain or plainly textured background (bed sheet, floor,
blanket): see its docstring. Photos of garments lying twisted, folded or on a hanger need a look, and often a hand
correction (tools/make_catalogue.py ANCHOR_FIXES).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from streams.tryon.catalogue import ANCHORS, CATEGORIES, DEFAULT_SIZE_MM, ID_PATTERN, write_item

Point = tuple[float, float]


# --- cut-out -------------------------------------------------------------------------------------------------


def _largest_component(mask: np.ndarray) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros(mask.shape, bool)
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return np.asarray(labels == best)


def _fill_holes(mask: np.ndarray, max_fraction: float = 1.0, background: np.ndarray | None = None) -> np.ndarray:
    """Fill the background regions not connected to the border whose area is at most `max_fraction` of the mask
    (and, given `background`, a mask of background-coloured pixels, that are not mostly background-coloured)."""
    inverse = (~mask).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(inverse, connectivity=4)
    out = mask.copy()
    h, w = mask.shape
    area = max(int(mask.sum()), 1)
    for label in range(1, count):
        x, y, bw, bh, n = stats[label]
        touches_border = x == 0 or y == 0 or x + bw == w or y + bh == h
        if not touches_border and n <= max_fraction * area:
            hole = labels == label
            if background is None or background[hole].mean() < 0.5:
                out[hole] = True
    return out


def _border_pixels(image: np.ndarray, margin: int) -> np.ndarray:
    return np.concatenate(
        [
            image[:margin].reshape(-1, image.shape[2]),
            image[-margin:].reshape(-1, image.shape[2]),
            image[:, :margin].reshape(-1, image.shape[2]),
            image[:, -margin:].reshape(-1, image.shape[2]),
        ]
    )


def background_distance(bgr: np.ndarray, margin: int, clusters: int = 4) -> np.ndarray:
    """How unlike the background each pixel is: Lab distance to the nearest background colour, divided by that
    colour's spread (a textured floor or blanket has several colours and a wide spread).

    The background colours are the k-means clusters of the border strip, less those that are at least as common
    in the image's central window as on the border: that is the product itself touching the border."""
    lab = cv2.cvtColor(cv2.GaussianBlur(bgr, (5, 5), 0), cv2.COLOR_BGR2LAB).astype(np.float32)
    border = _border_pixels(lab, margin)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    k = min(clusters, len(border))
    _, labels, centres = cv2.kmeans(border, k, np.empty(0), criteria, 3, cv2.KMEANS_PP_CENTERS)
    flat = labels.ravel()
    border_share = np.bincount(flat, minlength=k) / len(border)
    spread = np.full(k, 4.0)
    for c in range(k):
        if border_share[c]:
            spread[c] = max(4.0, float(np.sqrt(np.mean(np.sum((border[flat == c] - centres[c]) ** 2, axis=1)))))
    h, w = lab.shape[:2]
    centre = lab[h // 4 : h - h // 4, w // 4 : w - w // 4].reshape(-1, 3)
    d_centre = np.sqrt(((centre[:, None, :] - centres[None]) ** 2).sum(axis=2)) / spread[None]
    nearest = np.argmin(d_centre, axis=1)
    close = d_centre[np.arange(len(centre)), nearest] <= 2.5
    centre_share = np.bincount(nearest[close], minlength=k) / len(centre)
    ratio = centre_share / np.maximum(border_share, 1e-6)
    background = [c for c in range(k) if border_share[c] >= 0.03 and ratio[c] < 0.6]
    if not background:
        background = [int(np.argmin(ratio + (border_share < 0.03)))]
    best = np.full(lab.shape[:2], np.inf, np.float32)
    for c in background:
        best = np.minimum(best, np.sqrt(np.sum((lab - centres[c]) ** 2, axis=2)) / spread[c])
    return best


def cut_out(bgr: np.ndarray, work_side: int = 400, feather_px: float = 1.5) -> np.ndarray:
    """The product in a photo on a plain (or plainly textured) background, as RGBA of the photo's size.

    The background colours come from a border strip (4 % of the short side); pixels far from all of them seed
    GrabCut as probable foreground, the strip's pixels of those colours are sure background; the result keeps the
    largest component, fills small holes (up to 3 % of the product), loses its outermost pixel (background colour
    bleeds into it) and gets an alpha edge feathered inwards over `feather_px`."""
    bgr = np.ascontiguousarray(bgr[:, :, :3], dtype=np.uint8)
    cv2.setRNGSeed(20251126)  # k-means and GrabCut draw from OpenCV's RNG: the same photo, the same cut-out
    h, w = bgr.shape[:2]
    scale = min(1.0, work_side / max(h, w))
    small = cv2.resize(bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) if scale < 1 else bgr
    sh, sw = small.shape[:2]
    margin = max(2, round(0.04 * min(sh, sw)))

    distance = background_distance(small, margin)
    seed = distance > 3.0
    seed = cv2.morphologyEx(seed.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).astype(bool)
    seed = cv2.morphologyEx(seed.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8)).astype(bool)
    background = distance < 1.5
    seed = _fill_holes(_largest_component(seed), 0.03, background)

    grab = np.full((sh, sw), cv2.GC_PR_BGD, np.uint8)
    grab[seed] = cv2.GC_PR_FGD
    core = cv2.erode(seed.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    grab[core & (distance > 6.0)] = cv2.GC_FGD
    strip = np.zeros((sh, sw), bool)
    strip[:margin] = strip[-margin:] = True
    strip[:, :margin] = strip[:, -margin:] = True
    grab[strip & (distance < 2.0)] = cv2.GC_BGD
    if seed.any():
        bg_model = np.zeros((1, 65), np.float64)
        fg_model = np.zeros((1, 65), np.float64)
        cv2.grabCut(small, grab, (0, 0, 0, 0), bg_model, fg_model, 6, cv2.GC_INIT_WITH_MASK)
    mask = (grab == cv2.GC_FGD) | (grab == cv2.GC_PR_FGD)
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).astype(bool)
    mask = _fill_holes(_largest_component(mask), 0.03, background)

    soft = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) if scale < 1 else mask
    # one pixel in: the outermost ring mixes in the background's colour (JPEG, lens blur)
    alpha = np.asarray(cv2.erode((np.asarray(soft) > 0.5).astype(np.float32), np.ones((3, 3), np.uint8)), np.float32)
    if feather_px > 0.5:
        k = int(2 * round(2 * feather_px) + 1)
        alpha = np.minimum(alpha, cv2.GaussianBlur(alpha, (k, k), feather_px))
    rgba = np.dstack([bgr[:, :, ::-1], np.clip(alpha * 255 + 0.5, 0, 255).astype(np.uint8)])
    return np.ascontiguousarray(rgba)


def crop_to_content(rgba: np.ndarray, pad: int = 2, max_side: int = 512) -> np.ndarray:
    """The RGBA image cropped to its opaque pixels (plus `pad`), downscaled so its long side is <= `max_side`."""
    ys, xs = np.nonzero(rgba[:, :, 3] > 8)
    if len(xs) == 0:
        return rgba
    h, w = rgba.shape[:2]
    x0, x1 = max(0, xs.min() - pad), min(w, xs.max() + 1 + pad)
    y0, y1 = max(0, ys.min() - pad), min(h, ys.max() + 1 + pad)
    out = rgba[y0:y1, x0:x1]
    long_side = max(out.shape[:2])
    if long_side > max_side:
        s = max_side / long_side
        size = (max(1, round(out.shape[1] * s)), max(1, round(out.shape[0] * s)))
        # premultiplied resize so transparent pixels' colour does not bleed into the edge
        a = out[:, :, 3:4].astype(np.float32) / 255.0
        pre = np.concatenate([out[:, :, :3].astype(np.float32) * a, a * 255.0], axis=2)
        small = cv2.resize(pre, size, interpolation=cv2.INTER_AREA)
        alpha = small[:, :, 3:4] / 255.0
        rgb = small[:, :, :3] / np.maximum(alpha, 1e-6)
        out = np.concatenate([rgb, small[:, :, 3:4]], axis=2)
        out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out)


# --- anchor proposals ----------------------------------------------------------------------------------------


def silhouette(rgba: np.ndarray, parts: bool = False) -> np.ndarray:
    """The item's shape: the largest component of alpha > 0.5; with `parts`, every component of at least 2 % of
    the largest one's area (jewellery: a pendant on its bail, pearls on a string, a stone in its setting)."""
    mask = np.asarray(rgba)[:, :, 3] > 127
    if not parts:
        return _largest_component(mask)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros(mask.shape, bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.r_[False, areas >= 0.02 * areas.max()]
    return np.asarray(keep[labels])


def _row_extents(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: leftmost and rightmost set column (-1 where the row is empty) and whether the row is set."""
    has = np.asarray(mask.any(axis=1), bool)
    w = mask.shape[1]
    left = np.where(has, np.argmax(mask, axis=1), -1)
    right = np.where(has, w - 1 - np.argmax(mask[:, ::-1], axis=1), -1)
    return left, right, has


def _column_top(mask: np.ndarray, x: float, half_width: int = 2) -> float:
    """The topmost set row around column x (median over a few columns)."""
    w = mask.shape[1]
    tops = []
    for c in range(max(0, round(x) - half_width), min(w, round(x) + half_width + 1)):
        rows = np.nonzero(mask[:, c])[0]
        if len(rows):
            tops.append(rows[0])
    return float(np.median(tops)) if tops else float(np.nonzero(mask.any(axis=1))[0][0])


def _extreme_side(mask: np.ndarray, side: str, rows: slice | None = None) -> Point:
    """The extreme left or right point (x, middle y of the rows reaching within 1 px of it)."""
    sub = mask if rows is None else mask[rows]
    offset = 0 if rows is None else (rows.start or 0)
    left, right, has = _row_extents(sub)
    ys = np.nonzero(has)[0]
    if side == "left":
        x = left[ys].min()
        ys_at = ys[left[ys] <= x + 1]
    else:
        x = right[ys].max()
        ys_at = ys[right[ys] >= x - 1]
    return float(x), float(np.median(ys_at) + offset)


def _sleeves(
    mask: np.ndarray, left_line: np.ndarray, right_line: np.ndarray, max_row: int, min_reach: float
) -> list[Point | None]:
    """The middle of each sleeve's opening (image left, image right), None for no sleeve on that side.

    A sleeve is what sticks out beyond the torso's side line (`*_line`: x per row) above `max_row`, if that is
    more than 1 % of the garment and reaches at least `min_reach` x the torso's width beyond the line (less is
    a flared bodice or a fold); its end is the middle of the cuff: midway between the sleeve's outermost point
    and its corner furthest out and down (the largest outward x + y), moved onto the sleeve if it falls off."""
    xs = np.arange(mask.shape[1])[None, :]
    found: list[Point | None] = []
    for line, side in ((left_line, -1), (right_line, 1)):
        beyond = (xs < line[:, None] - 2) if side < 0 else (xs > line[:, None] + 2)
        sleeve = mask & beyond
        sleeve[max_row:] = False
        sleeve = _largest_component(sleeve)
        ys_s, xs_s = np.nonzero(sleeve)
        torso_width = float(np.median(right_line - left_line)) + 1
        reach = float(np.max((xs_s - line[ys_s]) * side)) if len(xs_s) else 0.0
        if sleeve.sum() < 0.01 * mask.sum() or reach < min_reach * torso_width:  # none, or a flared bodice
            found.append(None)
            continue
        # the cuff's two corners: the outermost point, and the corner furthest out and down
        outward = xs_s * side
        tip = outward >= outward.max() - 1
        corner = int(np.argmax(outward + ys_s))
        mx = (float(np.median(xs_s[tip])) + xs_s[corner]) / 2
        my = (float(np.median(ys_s[tip])) + ys_s[corner]) / 2
        nearest = int(np.argmin((xs_s - mx) ** 2 + (ys_s - my) ** 2))  # on the sleeve (a concave cuff edge)
        found.append((float(xs_s[nearest]), float(ys_s[nearest])))
    return found


def _torso_band(widths: np.ndarray, y0: int, height: int) -> np.ndarray:
    """Rows of the body below the sleeves: just under the armpits, where the row width drops from the sleeves'
    span to the body's (the largest drop in the upper 65 %, if it is over 8 % of the widest row); without such a
    drop (no sleeves, or sleeves along the body), the rows at 60-85 % of the height."""
    rows = np.arange(y0, y0 + height)
    w = np.convolve(widths[rows].astype(np.float64), np.ones(5) / 5, mode="same")
    step = max(2, height // 50)
    drop = w[:-step] - w[step:]  # positive where the width shrinks going down
    upper = int(0.65 * height)
    k = int(np.argmax(drop[:upper])) if upper > 0 else 0
    if upper > 0 and drop[k] > 0.08 * w.max():
        start = k + step + int(0.03 * height)
        end = min(start + int(0.25 * height), int(0.9 * height))
    else:
        start, end = int(0.6 * height), int(0.85 * height)
    band = rows[start : end + 1]
    return band[widths[band] > 0]


def _shoulder(mask: np.ndarray, side_x: float, centre_x: float, high_enough: float) -> Point:
    """The top edge above the torso's side line; where that is an armhole (lower than `high_enough`), the first
    column towards the centre that reaches that high, i.e. a strap: the middle of the strap's top."""
    step = 1 if centre_x > side_x else -1
    x = side_x
    while (x - centre_x) * step < 0:
        top = _column_top(mask, x, 1)
        if top <= high_enough:
            if x == side_x:
                return float(x), top
            end = x  # a strap: its middle
            while (end + step - centre_x) * step < 0 and _column_top(mask, end + step, 0) <= high_enough:
                end += step
            middle = (x + end) / 2
            return float(middle), _column_top(mask, middle, 1)
        x += step
    return float(side_x), _column_top(mask, side_x, 1)


def _garment(mask: np.ndarray, dress: bool) -> dict[str, Point]:
    left, right, has = _row_extents(mask)
    ys = np.nonzero(has)[0]
    y0, y1 = int(ys[0]), int(ys[-1])
    height = y1 - y0 + 1
    widths = np.where(has, right - left + 1, 0)
    h = mask.shape[0]
    rows = np.arange(h)
    if dress:  # the bodice: the narrowest row between 20 % and 60 % of the height (the waist); sides vertical
        band = np.arange(y0 + int(0.2 * height), y0 + int(0.6 * height) + 1)
        waist = int(band[np.argmin(widths[band])])
        left_line = np.full(h, float(left[waist]))
        right_line = np.full(h, float(right[waist]))
        sleeve_rows = waist
    else:  # the body below the sleeves: a straight line along each side (the garment may lie a little tilted)
        band = _torso_band(widths, y0, height)
        left_line = np.polyval(np.polyfit(band, left[band].astype(np.float64), 1), rows)
        right_line = np.polyval(np.polyfit(band, right[band].astype(np.float64), 1), rows)
        sleeve_rows = y0 + int(0.6 * height)
    x_min, x_max = float(left[has].min()), float(right[has].max())
    left_line = np.clip(left_line, x_min, x_max)
    right_line = np.clip(right_line, x_min, x_max)
    top_band = y0 + int(0.1 * height)
    torso_left, torso_right = float(left_line[top_band]), float(right_line[top_band])
    cx = (torso_left + torso_right) / 2
    collar = (cx, _column_top(mask, cx))
    shoulder_left = _shoulder(mask, torso_left, cx, y0 + 0.1 * height)
    shoulder_right = _shoulder(mask, torso_right, cx, y0 + 0.1 * height)
    found_left, found_right = _sleeves(mask, left_line, right_line, sleeve_rows, 0.15 if dress else 0.08)
    # sleeveless: the sleeve anchor is the shoulder anchor (renderers read "no sleeve" from their distance)
    sleeve_left = found_left or shoulder_left
    sleeve_right = found_right or shoulder_right

    low = np.nonzero(mask[y0 + int(0.75 * height) :])
    ly = low[0] + y0 + int(0.75 * height)
    lx = low[1]
    i_left = int(np.argmax(ly - lx))
    i_right = int(np.argmax(ly + lx))
    hem_left = (float(lx[i_left]), float(ly[i_left]))
    hem_right = (float(lx[i_right]), float(ly[i_right]))
    # wearer's left = image right
    return {
        "collar": collar,
        "left_shoulder": shoulder_right,
        "right_shoulder": shoulder_left,
        "left_sleeve": sleeve_right,
        "right_sleeve": sleeve_left,
        "left_hem": hem_right,
        "right_hem": hem_left,
    }


def _glasses(mask: np.ndarray) -> dict[str, Point]:
    filled = _fill_holes(mask)
    ys, xs = np.nonzero(filled)
    height = int(ys.max() - ys.min() + 1)
    radius = max(1, height // 6)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    opened = cv2.morphologyEx(filled.astype(np.uint8), cv2.MORPH_OPEN, disc)
    count, _, stats, centroids = cv2.connectedComponentsWithStats(opened, connectivity=8)
    blobs = sorted(range(1, count), key=lambda i: -stats[i, cv2.CC_STAT_AREA])[:2]
    cx_mid = (xs.min() + xs.max()) / 2
    if len(blobs) == 2 and stats[blobs[1], cv2.CC_STAT_AREA] > 0.2 * stats[blobs[0], cv2.CC_STAT_AREA]:
        lenses = sorted((float(centroids[i][0]), float(centroids[i][1])) for i in blobs)
    else:  # one merged blob: split the opened shape at the middle
        o_ys, o_xs = np.nonzero(opened if opened.any() else filled)
        lenses = [
            (float(o_xs[o_xs < cx_mid].mean()), float(o_ys[o_xs < cx_mid].mean())),
            (float(o_xs[o_xs >= cx_mid].mean()), float(o_ys[o_xs >= cx_mid].mean())),
        ]
    (lx, ly), (rx, ry) = lenses
    bx = (lx + rx) / 2
    column = np.nonzero(mask[:, round(bx)])[0]
    top_lens = min(ly, ry) - height / 2
    column = column[(column >= top_lens) & (column <= max(ly, ry))]
    by = float(np.median(column)) if len(column) else (ly + ry) / 2
    left_temple = _extreme_side(mask, "left")
    right_temple = _extreme_side(mask, "right")
    return {
        "left_lens": (rx, ry),
        "right_lens": (lx, ly),
        "bridge": (bx, by),
        "left_temple": right_temple,
        "right_temple": left_temple,
    }


def _hat(mask: np.ndarray) -> dict[str, Point]:
    left, right, has = _row_extents(mask)
    widths = np.where(has, right - left + 1, 0)
    ys = np.nonzero(has)[0]
    low = ys[ys >= ys[-1] - 0.3 * (ys[-1] - ys[0])]  # the brim is low: a beanie is widest above its cuff
    widest = widths[low].max()
    rows = low[widths[low] >= 0.98 * widest]
    row = int(rows.max())
    brim_l = (float(left[row]), float(row))
    brim_r = (float(right[row]), float(row))
    cx = (brim_l[0] + brim_r[0]) / 2
    return {"left_brim": brim_r, "right_brim": brim_l, "crown": (cx, _column_top(mask, cx))}


def _shoes(mask: np.ndarray) -> dict[str, Point]:
    ys, xs = np.nonzero(mask)
    x0, x1 = int(xs.min()), int(xs.max())
    y0, y1 = int(ys.min()), int(ys.max())
    length = x1 - x0 + 1
    column_height = mask.sum(axis=0).astype(np.float64)
    end = max(1, int(0.2 * length))
    left_height = column_height[x0 : x0 + end].mean()
    right_height = column_height[x1 - end + 1 : x1 + 1].mean()
    lower = slice(y1 - int(0.35 * (y1 - y0)), y1 + 1)
    left_point = _extreme_side(mask, "left", lower)
    right_point = _extreme_side(mask, "right", lower)
    if left_height <= right_height:
        return {"toe": left_point, "heel": right_point}
    return {"toe": right_point, "heel": left_point}


def _band(mask: np.ndarray) -> dict[str, Point]:
    ys, xs = np.nonzero(mask)
    points = np.stack([xs, ys], axis=1).astype(np.float64)
    mean = points.mean(axis=0)
    cov = np.cov((points - mean).T)
    _, vectors = np.linalg.eigh(cov)
    axis = vectors[:, 1]
    if axis[0] < 0:
        axis = -axis
    t = (points - mean) @ axis
    normal = np.array([-axis[1], axis[0]])
    n = (points - mean) @ normal
    ends = []
    for sel in (t <= t.min() + 1.5, t >= t.max() - 1.5):
        # the end of the band, at the middle of its thickness there
        tip_t = float(np.mean(t[sel]))
        near = np.abs(t - tip_t) <= max(2.0, 0.02 * (t.max() - t.min()))
        centre_n = float((n[near].min() + n[near].max()) / 2)
        ends.append(mean + tip_t * axis + centre_n * normal)
    (lx, ly), (rx, ry) = sorted((float(p[0]), float(p[1])) for p in ends)
    return {"band_left": (lx, ly), "band_right": (rx, ry)}


def _earrings(mask: np.ndarray) -> dict[str, Point]:
    ys, xs = np.nonzero(mask)
    top = int(ys.min())
    return {"hook": (float(np.median(xs[ys == top])), float(top))}


def _necklace(mask: np.ndarray) -> dict[str, Point]:
    ys, xs = np.nonzero(mask)
    mid = (xs.min() + xs.max()) / 2
    ends = []
    for sel in (xs < mid, xs >= mid):
        top = ys[sel].min()
        ends.append((float(np.median(xs[sel & (ys == top)])), float(top)))
    bottom = int(ys.max())
    centre = (float(np.median(xs[ys == bottom])), float(bottom))
    return {"left_end": ends[1], "right_end": ends[0], "centre": centre}


def propose_anchors(rgba: np.ndarray, category: str) -> dict[str, Point]:
    """The category's anchor points proposed from the item's silhouette (rules in the module docstring)."""
    if category not in ANCHORS:
        raise ValueError(f"unknown category {category!r}")
    if not ANCHORS[category]:
        return {}
    mask = silhouette(rgba, parts=category in ("earrings", "necklace", "ring", "watch"))
    if not mask.any():
        raise ValueError("the image has no opaque pixels")
    if category in ("top", "dress"):
        found = _garment(mask, dress=category == "dress")
    elif category == "glasses":
        found = _glasses(mask)
    elif category == "hat":
        found = _hat(mask)
    elif category == "shoes":
        found = _shoes(mask)
    elif category in ("ring", "watch"):
        found = _band(mask)
    elif category == "earrings":
        found = _earrings(mask)
    else:
        found = _necklace(mask)
    return {name: (round(found[name][0], 1), round(found[name][1], 1)) for name in ANCHORS[category]}


def draw_anchors(rgba: np.ndarray, anchors: dict[str, tuple[float, float]], scale: float = 2.0) -> np.ndarray:
    """A BGR preview: the item on a checkerboard, each anchor a dot with its name (for a person to check)."""
    rgba = np.asarray(rgba)
    h, w = rgba.shape[:2]
    big = cv2.resize(rgba, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_LINEAR)
    yy, xx = np.mgrid[0 : big.shape[0], 0 : big.shape[1]]
    checker = np.where(((yy // 16 + xx // 16) % 2)[:, :, None] == 0, 215, 245).astype(np.float32)
    a = big[:, :, 3:4].astype(np.float32) / 255.0
    flat = (big[:, :, 2::-1].astype(np.float32) * a + checker * (1 - a)).astype(np.uint8)
    out = cv2.copyMakeBorder(flat, 24, 24, 24, 24, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    for i, (name, (x, y)) in enumerate(anchors.items()):
        colour = [(0, 0, 255), (0, 160, 0), (255, 0, 0), (0, 140, 255), (200, 0, 200), (160, 160, 0), (0, 0, 0)][i % 7]
        p = (round(x * scale) + 24, round(y * scale) + 24)
        cv2.circle(out, p, 6, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(out, p, 4, colour, -1, cv2.LINE_AA)
        cv2.putText(out, name, (p[0] + 7, p[1] - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 3, cv2.LINE_AA)
        cv2.putText(out, name, (p[0] + 7, p[1] - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    return out


# --- a new item from a product photo -------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:64].strip("-")


def read_product_image(path: Path) -> np.ndarray:
    """A product photo as RGBA: its own alpha when it has transparent pixels, else cut out of its background."""
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ValueError(f"{path} is not a readable image")
    if image.dtype != np.uint8:  # 16-bit PNG/TIFF
        image = (image / (65535.0 if image.dtype == np.uint16 else max(float(image.max()), 1.0)) * 255).astype(np.uint8)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4 and (image[:, :, 3] < 250).any():
        return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA))
    return cut_out(image[:, :, :3])


def dominant_colour(rgba: np.ndarray) -> str:
    """'#RRGGBB' of an item's most saturated third of opaque pixels (a lipstick's bullet, not its case)."""
    opaque = rgba[:, :, 3] > 200
    if not opaque.any():
        return "#000000"
    rgb = np.ascontiguousarray(rgba[:, :, :3])
    saturation = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[:, :, 1][opaque]
    pixels = rgb[opaque][saturation >= np.percentile(saturation, 67)]
    r, g, b = (int(np.median(pixels[:, c])) for c in range(3))
    return f"#{r:02X}{g:02X}{b:02X}"


@dataclass(frozen=True)
class Added:
    folder: Path  # catalogue/<id>/
    meta: dict[str, Any]  # what item.json holds
    preview: Path  # anchors_preview.png in the item's folder


def add_item(
    catalogue: Path,
    photo: Path,
    category: str,
    item_id: str | None = None,
    name: str | None = None,
    licence: str = "LicenseRef-retailer",
    source: str | None = None,
    replace: bool = False,
) -> Added:
    """A new catalogue item from a product photo: cut out (or its own alpha), cropped to <= 512 px, anchors
    proposed, typical real sizes, an empty size chart (for the retailer to fill in), written atomically to
    `<catalogue>/<id>/` with an anchors preview beside it. Not validated here (see `item_problems`)."""
    if category not in ANCHORS:
        raise ValueError(f"unknown category {category!r} (one of: {', '.join(CATEGORIES)})")
    item_id = item_id or _slug(photo.stem)
    if not ID_PATTERN.match(item_id):
        raise ValueError(f"{item_id!r} is not an item id (a-z, 0-9, '.', '_', '-'; starts with a letter or digit)")
    rgba = crop_to_content(read_product_image(photo), max_side=512)
    anchors = propose_anchors(rgba, category)
    params: dict[str, Any] = {}
    if category == "lipstick":
        params = {"colour": dominant_colour(rgba), "opacity": 0.6, "finish": "matte"}
    meta: dict[str, Any] = {
        "id": item_id,
        "category": category,
        "name": name or photo.stem.replace("_", " ").replace("-", " ").strip().capitalize() or item_id,
        "image": "image.png",
        "anchors": {k: [round(v[0], 1), round(v[1], 1)] for k, v in anchors.items()},
        "size_mm": dict(DEFAULT_SIZE_MM[category]),
        "size_chart": {},
        "params": params,
        "licence": licence,
        "licence_file": None,
        "source": source
        or f"{photo.name}, added with `vto catalogue add` (cut out and anchors proposed automatically)",
        "source_file": None,
    }
    folder = write_item(catalogue, meta, rgba, replace=replace)
    preview = folder / "anchors_preview.png"
    ok, png = cv2.imencode(".png", draw_anchors(rgba, anchors, 2.0 if max(rgba.shape[:2]) <= 300 else 1.5))
    if ok:
        tmp = preview.with_name(f".{preview.name}.tmp")
        tmp.write_bytes(png.tobytes())
        tmp.replace(preview)
    return Added(folder, meta, preview)
