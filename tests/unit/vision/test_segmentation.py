import math

import numpy as np
import pytest

from streams.vision import segmentation as seg
from streams.vision.geometry import Square

# -- RLE ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("first", [False, True])
def test_rle_round_trip(first: bool) -> None:
    rng = np.random.default_rng(3)
    mask = rng.random((37, 53)) > 0.6
    mask[0, 0] = first
    counts = seg.rle_encode(mask)
    assert sum(counts) == mask.size
    assert (counts[0] == 0) == first  # always starts with the count of leading False pixels
    assert np.array_equal(seg.rle_decode(counts, 37, 53), mask)


def test_rle_is_row_major_runs() -> None:
    mask = np.array([[0, 1, 1], [1, 0, 0]], bool)
    assert seg.rle_encode(mask) == [1, 3, 2]
    assert seg.rle_encode(np.ones((2, 2), bool)) == [0, 4]
    assert seg.rle_encode(np.zeros((2, 2), bool)) == [4]
    with pytest.raises(ValueError):
        seg.rle_decode([1, 2], 2, 2)


# -- back to the frame ---------------------------------------------------------------------------------------------


def test_mask_from_roi_places_the_mask_where_the_roi_is() -> None:
    mask = seg.mask_from_roi(np.ones((256, 256), np.float32), Square(100.0, 60.0, 40.0), 200, 120)
    assert mask.shape == (120, 200) and mask.dtype == np.float32
    assert mask[60, 100] == pytest.approx(1.0)
    assert mask[45, 85] == pytest.approx(1.0) and mask[75, 115] == pytest.approx(1.0)
    assert mask[60, 125] == 0.0 and mask[30, 100] == 0.0  # outside the 40 px square
    assert mask.sum() == pytest.approx(40 * 40, rel=0.06)


def test_mask_from_roi_follows_the_rotation() -> None:
    prob = np.zeros((256, 256), np.float32)
    prob[:128] = 1.0  # the top half of the crop: towards the head
    mask = seg.mask_from_roi(prob, Square(100.0, 100.0, 100.0, rotation=math.pi / 2), 200, 200)
    assert mask[100, 130] == pytest.approx(1.0)  # rotated 90 degrees: the crop's top lies to the right
    assert mask[100, 70] == 0.0


def test_selfie_input_stretches_the_whole_frame() -> None:
    rgb = np.zeros((100, 300, 3), np.uint8)
    rgb[:, :150] = 255
    x = seg.selfie_input(rgb)
    assert x.shape == (256, 256, 3) and x.dtype == np.float32
    assert x[:, :120].min() == pytest.approx(1.0) and x[:, 136:].max() == 0.0
    assert x.max() <= 1.0


def test_mask_from_selfie_undoes_the_stretch() -> None:
    prob = np.zeros((256, 256), np.float32)
    prob[:, :128] = 1.0
    mask = seg.mask_from_selfie(prob, 300, 100)
    assert mask.shape == (100, 300)
    assert mask[:, :145].min() == pytest.approx(1.0) and mask[:, 152:].max() == 0.0


# -- temporal smoothing ---------------------------------------------------------------------------------------------


def _disc(cx: float, radius: float = 40.0, size: tuple[int, int] = (480, 640)) -> np.ndarray:
    y, x = np.mgrid[: size[0], : size[1]]
    distance = np.hypot(x - cx, y - size[0] / 2)
    return np.clip((radius - distance) / 4.0 + 0.5, 0.0, 1.0).astype(np.float32)  # soft 4 px edge


def test_track_is_small_and_uint8() -> None:
    _, track = seg.smooth(None, _disc(320))
    assert track.previous.dtype == np.uint8
    assert (track.width, track.height) == (128, 96)


def test_smoothing_keeps_a_static_mask() -> None:
    mask = _disc(320)
    out, track = seg.smooth(None, mask)
    assert np.array_equal(out, mask)
    for _ in range(10):
        out, track = seg.smooth(track, mask)
    assert np.abs(out - mask).max() < 0.01


def test_smoothing_follows_a_changed_mask() -> None:
    _, track = seg.smooth(None, _disc(200))
    moved = _disc(400)
    out, track = seg.smooth(track, moved)
    confident = (moved < 0.02) | (moved > 0.98)
    assert np.abs(out - moved)[confident].max() < 0.05  # certain pixels take the new value at once
    for _ in range(5):
        out, track = seg.smooth(track, moved)
    assert np.abs(out - moved).max() < 0.05


def test_uncertain_pixels_lean_on_the_previous_mask() -> None:
    previous = np.ones((64, 64), np.float32)
    _, track = seg.smooth(None, previous)  # small enough to be stored as is
    out, _ = seg.smooth(track, np.full((64, 64), 0.5, np.float32))
    assert out == pytest.approx(0.5 + (1.0 - 0.5) * 1.0 * 0.7, abs=1e-3)  # uncertainty(0.5) = 1
    sure, _ = seg.smooth(track, np.zeros((64, 64), np.float32))
    assert sure == pytest.approx(0.0, abs=1e-4)  # uncertainty(0) is ~0 (MediaPipe's polynomial: 4e-5)


def test_a_track_of_another_size_is_ignored() -> None:
    _, track = seg.smooth(None, np.ones((64, 64), np.float32))
    out, new = seg.smooth(track, np.full((64, 80), 0.5, np.float32))
    assert out == pytest.approx(0.5)
    assert (new.width, new.height) == (80, 64)
