"""Temporal filters for landmarks, as MediaPipe applies them in video mode (FIELD_NOTES §3).

`one_euro` is MediaPipe's OneEuroFilter (landmarks_smoothing_calculator): the cutoff frequency grows with the
speed of the point, so a still subject is held still and a moving one is followed without lag. Values are
scaled by 1 / object size (MediaPipe's value scaling), so the same parameters hold for near and far shoppers.
`low_pass` is the exponential filter used for visibility. Filter state is a small dataclass of arrays so a
session's state can be persisted and restored on another worker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# MediaPipe's pose landmark filter (pose_landmark_filtering.pbtxt).
POSE_MIN_CUTOFF = 0.05
POSE_BETA = 80.0
POSE_DERIVATE_CUTOFF = 1.0
VISIBILITY_ALPHA = 0.1
DEFAULT_FREQUENCY = 30.0  # used only until the second sample gives a real one


@dataclass
class OneEuroState:
    """Filter memory for N values: last time, last raw and filtered values, filtered derivative."""

    time_s: float
    raw: np.ndarray
    filtered: np.ndarray
    derivative: np.ndarray


def _alpha(cutoff: np.ndarray | float, frequency: float) -> np.ndarray:
    te = 1.0 / frequency
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return np.asarray(1.0 / (1.0 + tau / te))


def one_euro(
    state: OneEuroState | None,
    time_s: float,
    values: np.ndarray,
    value_scale: float = 1.0,
    min_cutoff: float = POSE_MIN_CUTOFF,
    beta: float = POSE_BETA,
    derivate_cutoff: float = POSE_DERIVATE_CUTOFF,
) -> tuple[np.ndarray, OneEuroState]:
    """Filter `values` (any shape) observed at `time_s`; returns the filtered values and the new state.

    A sample that is not newer than the last one is returned unfiltered with the state unchanged
    (MediaPipe does the same), so a replayed frame cannot corrupt the filter.
    """
    values = np.asarray(values, dtype=np.float64)
    if state is None or state.raw.shape != values.shape:
        zeros = np.zeros_like(values)
        return values.astype(np.float32), OneEuroState(time_s, values.copy(), values.copy(), zeros)
    if time_s <= state.time_s:
        return values.astype(np.float32), state
    frequency = 1.0 / (time_s - state.time_s)
    dvalue = (values - state.raw) * value_scale * frequency
    derivative = state.derivative + _alpha(derivate_cutoff, frequency) * (dvalue - state.derivative)
    cutoff = min_cutoff + beta * np.abs(derivative)
    filtered = state.filtered + _alpha(cutoff, frequency) * (values - state.filtered)
    return filtered.astype(np.float32), OneEuroState(time_s, values.copy(), filtered, derivative)


def low_pass(previous: np.ndarray | None, values: np.ndarray, alpha: float = VISIBILITY_ALPHA) -> np.ndarray:
    """Exponential smoothing: alpha * new + (1 - alpha) * previous (the first sample passes through)."""
    values = np.asarray(values, dtype=np.float32)
    if previous is None or previous.shape != values.shape:
        return values
    return np.asarray(alpha * values + (1.0 - alpha) * previous, dtype=np.float32)
