"""Session aggregation: robust to outliers, converges, a still is less sure, side views refine girths."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streams.fit.aggregate import WINDOW, FitState, estimate, update
from streams.fit.measure import FrameMeasurements, girth
from streams.fit.scale import Method


def _frame(values: dict[str, tuple[float, float]], method: Method = "height") -> FrameMeasurements:
    return FrameMeasurements(values, method, 0.03 if method == "height" else 1.0)


def _session(n: int, garbage: float = 0.0, seed: int = 0) -> FitState:
    rng = np.random.default_rng(seed)
    state = FitState()
    for _ in range(n):
        value = float(rng.uniform(0, 300)) if rng.random() < garbage else float(rng.normal(100.0, 0.5))
        state = update(state, _frame({"shoulder_width": (value, 0.9)}))
    return state


def test_robust_to_ten_percent_garbage_frames() -> None:
    for seed in range(5):
        value = estimate(_session(45, garbage=0.1, seed=seed))["shoulder_width"][0]
        assert value == pytest.approx(100.0, rel=0.01)


def test_converges_and_still_is_less_confident() -> None:
    video, still = estimate(_session(45))["shoulder_width"], estimate(_session(1))["shoulder_width"]
    assert video[0] == pytest.approx(100.0, rel=0.01)
    assert video[2] > 0.7
    assert still[2] <= 0.5 < 0.7 < video[2]
    assert still[1] > video[1] > 0


def test_low_quality_frames_do_not_bias() -> None:
    state = FitState()
    for i in range(40):
        loose = i % 2 == 1
        state = update(state, _frame({"waist_width": ((50.0, 0.35) if loose else (30.0, 0.9))}))
    assert estimate(state)["waist_width"][0] == pytest.approx(30.0)
    assert estimate(state)["waist"][0] == pytest.approx(girth("waist", width=30.0))


def test_side_view_updates_depth() -> None:
    state = FitState()
    for _ in range(20):
        state = update(state, _frame({"chest_width": (34.0, 0.9), "chest": (girth("chest", width=34.0), 0.8)}))
    before = estimate(state)["chest"]
    assert before[0] == pytest.approx(girth("chest", width=34.0))
    for _ in range(20):
        state = update(state, _frame({"chest_depth": (22.0, 0.9)}))
    after = estimate(state)["chest"]
    assert after[0] == pytest.approx(girth("chest", 34.0, 22.0))
    assert after[0] < before[0] and after[1] < before[1]


def test_a_full_window_drops_the_lowest_quality_pair_the_oldest_among_equals() -> None:
    state = FitState()
    for i in range(1, WINDOW + 1):
        state = update(state, _frame({"arm_length": (float(i), 0.5)}))
    state = update(state, _frame({"arm_length": (100.0, 0.9)}))  # better than all: the oldest 0.5 goes
    values = [v for v, _ in state.values["arm_length"]]
    assert 1.0 not in values and 2.0 in values and 100.0 in values
    state = update(state, _frame({"arm_length": (200.0, 0.4)}))  # worse than all: it goes itself
    assert 200.0 not in [v for v, _ in state.values["arm_length"]] and len(state.values["arm_length"]) == WINDOW
    assert state.counts["arm_length"] == WINDOW + 2


def test_state_is_small_and_serializable() -> None:
    state = _session(200)
    for name in ("chest_width", "chest_depth", "waist_width", "hips_width", "arm_length", "inseam"):
        for _ in range(100):
            state = update(state, _frame({name: (50.0, 0.9)}))
    assert all(len(v) == WINDOW for v in state.values.values())  # 100+ frames each, WINDOW kept
    assert len(json.dumps(state.to_dict())) < 8000
    again = FitState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert estimate(again) == estimate(state)


def test_relative_session_and_metric_takeover() -> None:
    state = update(FitState(), _frame({"chest_width": (0.9, 0.9)}, "none"))
    est = estimate(state)
    assert "chest_width_rel" in est and "chest_width" not in est
    assert est["chest_width_rel"][2] <= 0.3
    state = update(state, _frame({"chest_width": (34.0, 0.9)}))
    assert set(estimate(state)) == {"chest_width", "chest"}
    assert update(state, _frame({"chest_width": (0.9, 0.9)}, "none")) is state
