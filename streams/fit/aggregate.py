"""Session aggregation of per-frame measurements: `FitState`, `update(state, frame) -> FitState`, `estimate(state)`.

State (small and JSON-serializable, kept with the session's tracking state): per measurement at most WINDOW
(value, quality) pairs - the best-quality recent frames: a new pair goes in, and when the window is full the
lowest-quality pair goes out (the oldest among equals) - plus the count of good frames seen. A frame's quality is
its measurement's, times `scale_weight` of its scale's expected error (a tiny iris in a full-body frame hardly
counts next to a close-up or a stated height); only pairs with quality >= MIN_QUALITY count. The state's scale
error is the smallest seen (the estimates come from the best frames). ~13 measurement names x 30 pairs stays
around 800 floats (~4 KB as protobuf).

Girths (chest, waist, hips) are not stored: `estimate` derives them from the aggregated widths and depths, so a
side view's measured depth replaces the population depth/width ratio as soon as it has been seen (a frontal
width is still needed; a side view alone gives the girth from its depth and the ratio). With no torso width at
all (a webcam framing, a jacket, arms against the body) the chest comes from the upper-arm (bideltoid) breadth
and a population ratio, with a larger spread and less confidence.

Estimate per measurement: median and MAD of the pairs whose quality is at least RELATIVE_QUALITY x the best one
held (a loose-clothing or turned frame does not dilute good frontal ones). Spread (1 SD, same unit as the value) =
value x sqrt(scale error^2 + model error^2 + frame noise^2 / n), frame noise the MAD-based SD (at least
MIN_FRAME_NOISE: one still cannot show its own noise). Confidence (how far to trust the number beyond its
spread: the risks the spread does not model, such as loose clothing, occlusion, a turned body, and a single
frame) = sqrt(mean quality) x frames term x 1 / (1 + (relative MAD SD / 5 %)^2), the frames term
STILL_CONFIDENCE + (1 - STILL_CONFIDENCE) x (1 - exp(-(good frames - 1) / FRAMES_TAU)): a good still photo
~0.5, ~30-45 good frames (a few seconds of video) ~0.9 of what the quality allows. The scale's error is in the
spread, so the advice's probability of the right size already pays for it (streams/fit/advice.py).

A session without scale (relative frames: ratios to the shoulder width) stores its ratios under "<name>_rel",
with confidence at most RELATIVE_CONFIDENCE; the first metric frame drops them (metric beats relative) and later
relative frames are ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streams.fit.measure import GIRTHS, MODEL_ERROR, FrameMeasurements, girth

WINDOW = 30
MIN_QUALITY = 0.15
RELATIVE_QUALITY = 0.6
FRAMES_TAU = 12.0
STILL_CONFIDENCE = 0.5  # the frames term of a single good frame (a still photo)
MIN_FRAME_NOISE = 0.03
RELATIVE_CONFIDENCE = 0.3
MAD_TO_SD = 1.4826
SCALE_WEIGHT_ERROR = 0.12  # the scale error at which a frame's quality halves
REL = "_rel"
# Chest girth when no torso width could be measured, from the ANSUR II ratio chest circumference / bideltoid
# breadth ~2.15 (men 2.10, women 2.22; SD ~6 %). Such a chest gets 0.7 of the confidence of the breadth.
CHEST_PER_BIDELTOID = 2.15
CHEST_PER_BIDELTOID_ERROR = 0.06
FROM_BREADTH_CONFIDENCE = 0.7


@dataclass
class FitState:
    """Per measurement name: up to WINDOW [value, quality] pairs and the number of good frames seen."""

    values: dict[str, list[list[float]]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    relative: bool = True  # no metric frame yet
    scale_error: float = 1.0  # the smallest of the metric frames that added measurements
    height_cm: float = 0.0  # the stated height the values were measured with (0: none)
    scale: str = "none"  # the scale of the latest metric frame that added measurements ("none": relative)

    @property
    def frames(self) -> int:
        """Frames that gave at least one usable measurement (the best-covered measurement's count)."""
        return max(self.counts.values(), default=0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "values": {k: [list(p) for p in v] for k, v in self.values.items()},
            "counts": dict(self.counts),
            "relative": self.relative,
            "scale_error": self.scale_error,
            "height_cm": self.height_cm,
            "scale": self.scale,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FitState:
        return cls(
            values={str(k): [[float(a), float(b)] for a, b in v] for k, v in d.get("values", {}).items()},
            counts={str(k): int(v) for k, v in d.get("counts", {}).items()},
            relative=bool(d.get("relative", True)),
            scale_error=float(d.get("scale_error", 1.0)),
            height_cm=float(d.get("height_cm", 0.0)),
            scale=str(d.get("scale", "none")),
        )


def scale_weight(scale_error: float) -> float:
    """How much a frame's measurements count given its scale's expected error: ~1 for a stated height (3 %),
    0.6 for a good eye scale (10 %), 0.14 for a 6 px iris (30 %: below MIN_QUALITY, the frame is left out)."""
    return 1.0 / (1.0 + (scale_error / SCALE_WEIGHT_ERROR) ** 2)


def update(state: FitState, frame: FrameMeasurements) -> FitState:
    """A new state with this frame's good measurements added (the input state is not modified). A frame that
    adds nothing (nothing measured well enough) leaves the state as it was: in particular a metric frame that
    measures nothing does not turn a relative session metric."""
    if frame.relative and not state.relative:
        return state  # metric session: a frame without scale adds nothing
    weight = 1.0 if frame.relative else scale_weight(frame.scale_error)
    good = [
        (name, float(value), float(min(quality * weight, 1.0)))
        for name, (value, quality) in frame.items()
        if name not in GIRTHS and math.isfinite(value) and value > 0 and quality * weight >= MIN_QUALITY
    ]
    if not good:
        return state
    new = FitState.from_dict(state.to_dict())
    if not frame.relative:
        if new.relative:
            new = FitState(relative=False, height_cm=new.height_cm)  # metric beats relative
        new.scale_error = min(new.scale_error, float(frame.scale_error))
        new.scale = frame.method
    suffix = REL if frame.relative else ""
    for name, value, quality in good:
        key = name + suffix
        pairs = new.values.setdefault(key, [])
        pairs.append([value, quality])
        if len(pairs) > WINDOW:
            worst = min(range(len(pairs)), key=lambda i: (pairs[i][1], i))
            del pairs[worst]
        new.counts[key] = new.counts.get(key, 0) + 1
    return new


def _robust(pairs: list[list[float]]) -> tuple[float, float, float, int]:
    """(median, MAD SD, mean quality, n) over the pairs of near-best quality."""
    arr = np.asarray(pairs, np.float64)
    keep = arr[arr[:, 1] >= RELATIVE_QUALITY * arr[:, 1].max()]
    med = float(np.median(keep[:, 0]))
    sd = MAD_TO_SD * float(np.median(np.abs(keep[:, 0] - med)))
    return med, sd, float(keep[:, 1].mean()), len(keep)


def _estimate_one(
    value: float, sd: float, quality: float, n: int, count: int, scale_error: float, model: float
) -> tuple[float, float, float]:
    rel_sd = sd / value
    noise = max(rel_sd, MIN_FRAME_NOISE) * math.sqrt(math.pi / 2 / n)
    spread = value * math.sqrt(scale_error**2 + model**2 + noise**2)
    confidence = (
        math.sqrt(quality)
        * (STILL_CONFIDENCE + (1 - STILL_CONFIDENCE) * (1 - math.exp(-(count - 1) / FRAMES_TAU)))
        / (1 + (rel_sd / 0.05) ** 2)
    )
    return value, spread, confidence


def estimate(state: FitState) -> dict[str, tuple[float, float, float]]:
    """name -> (value, spread, confidence); girths derived from widths/depths; relative names end in "_rel"."""
    relative = state.relative
    scale_error = 0.0 if relative else state.scale_error
    stats: dict[str, tuple[float, float, float, int, int]] = {}
    for key, pairs in state.values.items():
        if pairs:
            stats[key] = (*_robust(pairs), state.counts.get(key, len(pairs)))
    out: dict[str, tuple[float, float, float]] = {}
    for key, (med, sd, q, n, count) in stats.items():
        base = key.removesuffix(REL)
        out[key] = _estimate_one(med, sd, q, n, count, scale_error, MODEL_ERROR.get(base, 0.05))
    suffix = REL if relative else ""
    for name in GIRTHS:
        w, d = out.get(f"{name}_width{suffix}"), out.get(f"{name}_depth{suffix}")
        if w is None and d is None:
            continue
        g = girth(name, width=None if w is None else w[0], depth=None if d is None else d[0])
        parts = [p for p in (w, d) if p is not None]
        # Measured depth: the ratio's error goes; only one view: the population ratio's model error remains.
        model = MODEL_ERROR[name] if len(parts) == 1 else 0.03
        rel = math.sqrt(sum((p[1] / p[0]) ** 2 for p in parts) / len(parts))
        spread = g * math.sqrt(rel**2 + model**2)
        conf = min(p[2] for p in parts) * (1.0 if len(parts) == 2 else 0.9)
        out[name + suffix] = (g, spread, conf)
    # No usable torso width (a webcam framing, loose clothing, arms against the body): the chest from the upper-arm
    # breadth and the population ratio. (Not from the shoulder keypoints: on clothed people they sit well inside
    # the shoulders and would put every shopper two sizes down.)
    breadth = out.get(f"bideltoid_width{suffix}")
    if f"chest{suffix}" not in out and breadth is not None:
        g = CHEST_PER_BIDELTOID * breadth[0]
        spread = g * math.sqrt((breadth[1] / breadth[0]) ** 2 + CHEST_PER_BIDELTOID_ERROR**2)
        out[f"chest{suffix}"] = (g, spread, breadth[2] * FROM_BREADTH_CONFIDENCE)
    if relative:
        out = {k: (v, s, min(c, RELATIVE_CONFIDENCE)) for k, (v, s, c) in out.items()}
    return out
