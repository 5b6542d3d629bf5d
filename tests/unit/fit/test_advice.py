"""Size advice (streams/fit/advice.py): placement in a chart, between sizes and the fit preference, values outside
the chart, several measurements (tops: chest decides; dresses: the largest size wins), relative measurements,
items without a chart, and the shipped catalogue's charts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from streams.fit.advice import Advice, recommend
from streams.tryon.catalogue import Item, validate_item

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "catalogue"

# The adult chart of the shipped tops (tee-breton-stripes and others), cm.
TOP_CHART: dict[str, dict[str, tuple[float, float]]] = {
    "XS": {"chest": (80, 86), "waist": (66, 72)},
    "S": {"chest": (86, 94), "waist": (72, 80)},
    "M": {"chest": (94, 102), "waist": (80, 88)},
    "L": {"chest": (102, 110), "waist": (88, 96)},
    "XL": {"chest": (110, 118), "waist": (96, 104)},
    "XXL": {"chest": (118, 126), "waist": (104, 112)},
}
DRESS_CHART: dict[str, dict[str, tuple[float, float]]] = {
    "XS": {"chest": (78, 82), "waist": (60, 64), "hips": (86, 90)},
    "S": {"chest": (82, 86), "waist": (64, 68), "hips": (90, 94)},
    "M": {"chest": (86, 90), "waist": (68, 72), "hips": (94, 98)},
    "L": {"chest": (90, 96), "waist": (72, 78), "hips": (98, 104)},
    "XL": {"chest": (96, 102), "waist": (78, 84), "hips": (104, 110)},
}


def _item(category: str, chart: dict[str, dict[str, tuple[float, float]]]) -> Item:
    return Item(
        id=f"test-{category}",
        category=category,
        name="test",
        image=np.zeros((1, 1, 4), np.uint8),
        anchors={},
        size_chart=chart,
    )


TOP = _item("top", TOP_CHART)
DRESS = _item("dress", DRESS_CHART)


def _advice(item: Item, fit: str = "regular", absolute: bool = True, **m: tuple[float, float, float]) -> Advice:
    advice = recommend(item, m, fit=fit, absolute=absolute)
    assert advice is not None
    assert 0.0 <= advice.confidence <= 1.0
    assert advice.size in item.size_chart
    assert advice.runner_up is None or advice.runner_up in item.size_chart
    return advice


def test_middle_of_a_size_is_that_size_with_high_confidence() -> None:
    advice = _advice(TOP, chest=(98.0, 1.0, 0.95))
    assert advice.size == "M"
    assert advice.runner_up is None
    assert advice.confidence > 0.85
    assert advice.reasons == ["chest 97-99 cm -> M"]
    assert advice.measurements_cm == {"chest": 98.0}


@pytest.mark.parametrize(("fit", "size"), [("regular", "M"), ("loose", "L"), ("tight", "M")])
def test_near_the_m_l_boundary_the_fit_preference_decides(fit: str, size: str) -> None:
    advice = _advice(TOP, fit=fit, chest=(101.5, 1.0, 0.95))
    assert advice.size == size
    assert advice.runner_up == ({"M", "L"} - {size}).pop()
    assert f"between M and L: {size} for a {fit} fit" in " | ".join(advice.reasons)
    assert "chest 100-102 cm -> M" in advice.reasons
    middle = _advice(TOP, fit=fit, chest=(98.0, 1.0, 0.95))
    assert advice.confidence < middle.confidence - 0.2  # near a boundary: less sure than in the middle
    assert 0.4 < advice.confidence < 0.8


@pytest.mark.parametrize(
    ("fit", "size", "runner_up"), [("regular", "L", "M"), ("loose", "L", "M"), ("tight", "M", "L")]
)
def test_just_above_a_boundary_the_neighbour_below_is_the_runner_up(fit: str, size: str, runner_up: str) -> None:
    advice = _advice(TOP, fit=fit, chest=(102.5, 1.0, 0.95))
    assert (advice.size, advice.runner_up) == (size, runner_up)


def test_the_top_and_bottom_15_percent_of_a_range_count_as_between_sizes() -> None:
    # M is 94-102 cm: its top 15 % starts at 100.8, its bottom 15 % ends at 95.2 (exact values, no spread)
    assert _advice(TOP, chest=(101.0, 0.0, 1.0)).runner_up == "L"
    assert _advice(TOP, chest=(95.0, 0.0, 1.0)).runner_up == "S"
    assert _advice(TOP, chest=(100.5, 0.0, 1.0)).runner_up is None
    assert _advice(TOP, chest=(95.5, 0.0, 1.0)).runner_up is None
    # ... and so does a boundary within the measurement's spread
    assert _advice(TOP, chest=(99.0, 3.5, 1.0)).runner_up == "L"
    # the bottom of the smallest size has no smaller neighbour
    bottom = _advice(TOP, fit="tight", chest=(80.5, 0.0, 1.0))
    assert (bottom.size, bottom.runner_up) == ("XS", None)


@pytest.mark.parametrize(
    ("chest", "size", "words"),
    [(130.0, "XXL", "above the largest size"), (74.0, "XS", "below the smallest size")],
)
def test_outside_the_chart_is_the_nearest_size_with_low_confidence(chest: float, size: str, words: str) -> None:
    advice = _advice(TOP, fit="loose", chest=(chest, 1.0, 1.0))
    assert advice.size == size
    assert advice.runner_up is None
    assert advice.confidence <= 0.3
    assert any(words in r and size in r for r in advice.reasons), advice.reasons


def test_just_outside_the_chart_is_still_capped() -> None:
    # within the spread of the chart's edge: the true value may be inside, but at best at the edge of XXL
    advice = _advice(TOP, chest=(126.2, 2.0, 1.0))
    assert advice.size == "XXL"
    assert 0.05 < advice.confidence <= 0.3
    assert "chest 124-128 cm is above the largest size" in advice.reasons[0]


def test_the_chest_decides_a_top_and_a_disagreeing_waist_lowers_confidence() -> None:
    alone = _advice(TOP, chest=(98.0, 1.0, 0.95))
    both = _advice(TOP, chest=(98.0, 1.0, 0.95), waist=(92.0, 1.0, 0.95))  # waist says L
    assert both.size == "M"
    assert both.runner_up == "L"  # the chest has no neighbour: towards the waist's size
    assert both.confidence < alone.confidence
    assert "waist 91-93 cm -> L" in both.reasons
    assert any("chest decides" in r and "waist alone would take L" in r for r in both.reasons), both.reasons
    agreeing = _advice(TOP, chest=(98.0, 1.0, 0.95), waist=(84.0, 1.0, 0.95))
    assert agreeing.size == "M"
    assert agreeing.confidence == pytest.approx(alone.confidence)
    assert agreeing.measurements_cm == {"chest": 98.0, "waist": 84.0}


def test_a_top_without_a_chest_goes_by_the_waist() -> None:
    advice = _advice(TOP, waist=(92.0, 1.0, 0.9))
    assert advice.size == "L"
    assert advice.reasons[0] == "waist 91-93 cm -> L"


def test_a_dress_takes_the_largest_size_any_girth_needs() -> None:
    advice = _advice(DRESS, chest=(88.0, 1.0, 0.9), waist=(70.0, 1.0, 0.9), hips=(101.0, 1.0, 0.9))
    assert advice.size == "L"  # hips 101 -> L, chest 88 -> M, waist 70 -> M
    assert any("largest size" in r and "from the hips" in r for r in advice.reasons), advice.reasons
    agreeing = _advice(DRESS, chest=(93.0, 1.0, 0.9), waist=(75.0, 1.0, 0.9), hips=(101.0, 1.0, 0.9))
    assert agreeing.size == "L"
    assert advice.confidence < agreeing.confidence
    # order does not matter, and the fit preference applies per girth before the largest is taken
    swapped = _advice(DRESS, chest=(99.0, 1.0, 0.9), waist=(62.0, 1.0, 0.9), hips=(91.0, 1.0, 0.9))
    assert swapped.size == "XL"
    loose = _advice(DRESS, fit="loose", chest=(87.0, 1.0, 0.9), hips=(97.5, 1.0, 0.9))  # hips between M and L
    assert (loose.size, loose.runner_up) == ("L", "M")
    tight = _advice(DRESS, fit="tight", chest=(87.0, 1.0, 0.9), hips=(97.5, 1.0, 0.9))
    assert tight.size == "M"


def test_confidence_falls_with_spread_and_measurement_confidence() -> None:
    sharp = _advice(TOP, chest=(98.0, 1.0, 1.0)).confidence
    blurred = _advice(TOP, chest=(98.0, 4.0, 1.0)).confidence
    blind = _advice(TOP, chest=(98.0, 10.0, 1.0)).confidence
    assert sharp > blurred > blind
    assert blind < 0.4
    assert _advice(TOP, chest=(98.0, 1.0, 0.5)).confidence == pytest.approx(sharp * 0.5)
    low = _advice(TOP, chest=(98.0, 1.0, 0.3))
    assert any("low confidence" in r for r in low.reasons)


def test_relative_measurements_give_the_median_size_with_low_confidence() -> None:
    small = _advice(TOP, absolute=False, chest=(0.3, 0.01, 0.9))
    large = _advice(TOP, absolute=False, chest=(3.0, 0.01, 0.9))
    # six sizes: the lower middle one, the upper one as runner-up; the values themselves cannot move it
    assert (small.size, small.runner_up) == (large.size, large.runner_up) == ("M", "L")
    assert small.confidence <= 0.2
    assert small.confidence == pytest.approx(0.18)
    assert small.measurements_cm == {}
    assert any("no metric scale" in r and "M" in r for r in small.reasons), small.reasons
    loose = _advice(TOP, fit="loose", absolute=False, chest=(0.5, 0.01, 1.0))
    assert (loose.size, loose.runner_up) == ("L", "M")
    assert loose.confidence <= 0.2
    odd = _advice(DRESS, absolute=False, hips=(0.5, 0.01, 1.0))  # five sizes: the middle one
    assert (odd.size, odd.runner_up) == ("M", None)


def test_no_chart_or_no_usable_measurement_is_none() -> None:
    for item_id in ("glasses-purple-clear", "necklace-pearl", "lipstick-berry-matte", "earring-gold-hoop"):
        item = validate_item(SHIPPED / item_id)
        assert item.size_chart == {}
        assert recommend(item, {"chest": (98.0, 1.0, 0.9), "head_circumference": (57.0, 1.0, 0.9)}) is None
    assert recommend(TOP, {}) is None
    assert recommend(TOP, {"hips": (100.0, 1.0, 0.9), "height": (180.0, 2.0, 0.9)}) is None  # not a top's
    assert recommend(TOP, {"chest": (math.nan, 1.0, 0.9)}) is None
    assert recommend(TOP, {"chest": (98.0, 1.0, 0.0)}) is None
    assert recommend(TOP, {"chest": (-98.0, 1.0, 0.9)}) is None
    assert recommend(TOP, {"chest": (98.0, 1.0, 0.0)}, absolute=False) is None
    # an unusable entry next to a usable one is skipped
    assert _advice(TOP, chest=(98.0, 1.0, 0.9), waist=(math.inf, 1.0, 0.9)).measurements_cm == {"chest": 98.0}


def test_an_unknown_fit_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fit"):
        recommend(TOP, {"chest": (98.0, 1.0, 0.9)}, fit="baggy")


@pytest.mark.parametrize(("chest", "size"), [(84.0, "XS"), (90.0, "S"), (98.0, "M"), (106.0, "L"), (114.0, "XL")])
def test_the_shipped_breton_tee(chest: float, size: str) -> None:
    item = validate_item(SHIPPED / "tee-breton-stripes")
    advice = _advice(item, chest=(chest, 1.5, 0.9))
    assert advice.size == size
    assert advice.runner_up is None
    assert advice.confidence > 0.7
    assert advice.reasons[0] == f"chest {chest - 1.5:.0f}-{chest + 1.5:.0f} cm -> {size}"


def test_other_shipped_charts() -> None:
    ring = _advice(validate_item(SHIPPED / "ring-gold-band"), finger_circumference=(5.42, 0.04, 0.9))
    assert ring.size == "54"
    assert ring.reasons[0] == "finger circumference 5.4-5.5 cm -> 54"  # millimetres for narrow sizes
    shoe = _advice(validate_item(SHIPPED / "sneaker-white-red"), fit="loose", foot_length=(26.95, 0.1, 0.9))
    assert (shoe.size, shoe.runner_up) == ("43", "42")
    hat = _advice(validate_item(SHIPPED / "beanie-pompom-brown"), head_circumference=(57.0, 1.0, 0.9))
    assert (hat.size, hat.runner_up) == ("one size", None)
    assert hat.confidence > 0.8
    big_head = _advice(validate_item(SHIPPED / "beanie-pompom-brown"), head_circumference=(63.0, 1.0, 0.9))
    assert big_head.size == "one size"
    assert any("above the largest size" in r for r in big_head.reasons)
    kids = _advice(validate_item(SHIPPED / "tee-colour-block"), chest=(98.0, 2.0, 0.9))  # an adult, kids' chart
    assert kids.size == "146/152"
    assert kids.confidence <= 0.3
