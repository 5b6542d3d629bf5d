import numpy as np
import pytest

from streams.vision.smoothing import OneEuroState, low_pass, one_euro

FPS = 15.0
SCALE = 1 / 200.0  # value scale: a 200 px person


def _run(values: np.ndarray, state: OneEuroState | None = None, start: int = 0) -> tuple[np.ndarray, OneEuroState]:
    out = []
    for k, v in enumerate(values):
        filtered, new = one_euro(state, (start + k) / FPS, v, SCALE)
        out.append(filtered)
        state = new
    assert state is not None
    return np.asarray(out), state


def test_first_sample_passes_through() -> None:
    values = np.array([[10.0, 20.0, -3.0]])
    out, state = one_euro(None, 0.0, values, SCALE)
    assert out == pytest.approx(values)
    assert state.time_s == 0.0 and np.all(state.derivative == 0)


def test_still_point_with_noise_is_held_still() -> None:
    rng = np.random.default_rng(1)
    values = 300.0 + rng.normal(0.0, 1.0, (90, 33, 2))  # ~1 px sensor noise on a still person
    out, _ = _run(values)
    jitter_in = np.abs(np.diff(values[15:], axis=0)).mean()
    jitter_out = np.abs(np.diff(out[15:], axis=0)).mean()
    assert jitter_out < 0.5 * jitter_in  # MediaPipe's parameters at 15 fps: about 0.4
    assert np.abs(out[15:] - 300.0).mean() < 0.8 * np.abs(values[15:] - 300.0).mean()  # closer to the truth


def test_a_step_is_followed_quickly() -> None:
    values = np.concatenate([np.full((30, 1), 100.0), np.full((30, 1), 200.0)])
    out, _ = _run(values)
    assert out[29, 0] == pytest.approx(100.0)
    assert out[30, 0] > 170.0  # a fast move raises the cutoff: most of the step at once
    assert out[35, 0] == pytest.approx(200.0, abs=2.0)


def test_state_round_trip_continues_exactly() -> None:
    rng = np.random.default_rng(2)
    values = 50.0 + np.cumsum(rng.normal(0.0, 2.0, (40, 5, 3)), axis=0)
    whole, _ = _run(values)
    first, state = _run(values[:20])
    # persisted as float32 lists and read back (what the session state does)
    restored = OneEuroState(
        state.time_s,
        np.asarray(state.raw, np.float32).astype(np.float64),
        np.asarray(state.filtered, np.float32).astype(np.float64),
        np.asarray(state.derivative, np.float32).astype(np.float64),
    )
    second, _ = _run(values[20:], restored, start=20)
    assert np.concatenate([first, second]) == pytest.approx(whole, abs=1e-3)


def test_replayed_timestamp_passes_through_and_keeps_the_state() -> None:
    _, state = _run(np.array([[0.0], [1.0], [2.0]]))
    replay = np.array([57.0])
    out, same = one_euro(state, state.time_s, replay, SCALE)
    assert out == pytest.approx(replay)
    assert same is state
    older, same = one_euro(state, state.time_s - 1.0, replay, SCALE)
    assert older == pytest.approx(replay) and same is state


def test_a_new_shape_restarts_the_filter() -> None:
    _, state = _run(np.zeros((5, 33, 3)))
    out, new = one_euro(state, 10.0, np.ones((2, 3)), SCALE)
    assert out == pytest.approx(np.ones((2, 3)))
    assert new.raw.shape == (2, 3)


def test_low_pass_blends_with_alpha_and_starts_with_the_first_value() -> None:
    first = low_pass(None, np.array([1.0, 0.0]))
    assert first == pytest.approx([1.0, 0.0])
    assert low_pass(first, np.array([0.0, 1.0]), alpha=0.1) == pytest.approx([0.9, 0.1])
