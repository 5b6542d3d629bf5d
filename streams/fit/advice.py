"""Size advice: which size of an item's size chart suits a shopper, from their body measurements.

`recommend(item, measurements, fit, absolute)` -> `Advice` (or None when the item has no size chart or none of the
chart's measurements is usable). Only the standard library: runs wherever the catalogue does.

Input. `measurements` maps a body measurement's name to `(value_cm, spread_cm, confidence)`: the estimate, how far
off it may be (about one standard deviation, >= 0), and how much to trust it (0..1). Names are the charts' (chest,
waist, hips, head_circumference, foot_length, finger_circumference, wrist_circumference); other names are ignored,
as are entries whose value is not a finite number > 0, whose spread is not finite or whose confidence is not > 0.
A negative spread counts as 0, a confidence above 1 as 1.

Rules, per chart measurement (each size a [min, max) range, sizes from small to large, consecutive sizes meeting):

- Placement: the size whose range holds the value. Between two sizes when the value is within
  `max(spread, 15 % of the size's width)` of a boundary with a neighbouring size (the closer boundary when both
  are): the neighbour is the runner-up and the fit preference decides: "regular" keeps the size holding the
  value, "loose" takes the larger of the two, "tight" the smaller.
- Outside the chart: the nearest size (the smallest or the largest), no runner-up, confidence at most 0.3, and a
  reason saying "below the smallest size" / "above the largest size".
- Confidence: `confidence x P(the true value lies in the size holding the estimate)`, the true value taken as
  normal around the estimate with sigma = sqrt(spread^2 + (0.1 x the size's width)^2) (the 0.1 x width is the
  chart's own fuzziness, so that even an exact value on a boundary is a coin toss). This falls with the spread
  relative to the size's width and with closeness to a boundary: ~1 in the middle of a size measured to +-1 cm,
  0.5 on a boundary. The fit preference only chooses between the two sizes; it does not change the confidence.

Several measurements:

- Tops: the chest decides (a top is cut to the chest; the waist of a T-shirt is loose anyway); without a chest,
  the waist decides.
- Every other category (dresses: chest, waist, hips): the largest size any measurement needs wins, each
  measurement's size taken after the fit preference (a dress too small at one girth does not go on; a little
  room at another is fine). Among measurements needing that size, the most confident one decides.
- The deciding measurement gives the runner-up (its neighbour, or the size holding the value when the preference
  moved away from it); when it has none, the runner-up is the next size towards another measurement that
  disagrees.
- Confidence: the deciding measurement's, times 0.9 for every size step by which each other measurement
  disagrees with the answer.

Relative measurements (`absolute=False`, metric scale unknown: e.g. proportions from an image without a
reference): the values cannot be placed in a chart measured in centimetres, and their position between the
chart's extremes means nothing without a scale. The advice is then the size a population-median body takes,
taken as the chart's middle size (charts are laid out around their customers' median body; with an even number of
sizes, the lower of the two middle ones, or the upper one for a loose fit, the other being the runner-up; with an
odd number, the runner-up is the neighbour on the fit preference's side, none for a regular fit). Confidence is
`0.2 x` the best measurement confidence (so <= 0.2), `measurements_cm` is empty, and a reason says so.

Reasons are sentences for shoppers naming the numbers: "chest 96-101 cm -> M" (the estimate +- its spread, whole
centimetres, or millimetres for charts with sizes under 2 cm wide), "between M and L: L for a loose fit".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from streams.tryon.catalogue import SIZE_CHART, Item

Fit = Literal["regular", "loose", "tight"]
FITS: tuple[str, ...] = ("regular", "loose", "tight")

# The measurement that decides a category's size on its own (when available); other categories: the largest wins.
PRIMARY: dict[str, str] = {"top": "chest"}
BETWEEN_FRACTION = 0.15  # the top / bottom share of a size's range counted as "between sizes"
CHART_FUZZ = 0.1  # the chart's own uncertainty, as a share of a size's width (see the module docstring)
OUTSIDE_CAP = 0.3  # the most confidence a value outside the chart gets
DISAGREEMENT = 0.9  # confidence factor per size step another measurement disagrees by
RELATIVE_CAP = 0.2  # the most confidence relative (unscaled) measurements get


@dataclass(frozen=True)
class Advice:
    size: str  # the recommended size, a key of item.size_chart
    runner_up: str | None  # the other size worth considering (between sizes), or None
    confidence: float  # 0..1
    reasons: list[str] = field(default_factory=list)  # sentences for the shopper, naming the numbers
    measurements_cm: dict[str, float] = field(default_factory=dict)  # the measurements used (absolute only)


@dataclass(frozen=True)
class _Placement:
    """Where one measurement falls in the chart."""

    name: str
    value: float
    spread: float
    confidence: float  # the measurement's own, 0..1
    index: int  # the size holding the value (the nearest one when outside the chart)
    outside: str | None  # None, "below" or "above"
    neighbour: int | None  # the other size when between two sizes
    pick: int  # after the fit preference
    certainty: float  # confidence x P(true value in sizes[index])


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _chart(item: Item) -> tuple[list[str], dict[str, list[tuple[float, float]]]]:
    """The chart's sizes (small to large, as listed) and, per measurement every size gives with a valid range,
    the ranges in size order."""
    sizes = list(item.size_chart)
    if not sizes:
        return [], {}
    first = item.size_chart[sizes[0]]
    order = [n for n in SIZE_CHART.get(item.category, ()) if n in first] + [
        n for n in first if n not in SIZE_CHART.get(item.category, ())
    ]
    ranges: dict[str, list[tuple[float, float]]] = {}
    for name in order:
        spans: list[tuple[float, float]] = []
        for size in sizes:
            span = item.size_chart[size].get(name)
            if span is None or len(span) != 2:
                break
            lo, hi = float(span[0]), float(span[1])
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                break
            spans.append((lo, hi))
        else:
            ranges[name] = spans
    return sizes, ranges


def _usable(raw: object) -> tuple[float, float, float] | None:
    """(value, spread, confidence) cleaned up, or None when the entry cannot be used."""
    if not isinstance(raw, Sequence) or isinstance(raw, str) or len(raw) != 3:
        return None
    try:
        value, spread, conf = (float(x) for x in raw)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(value) and value > 0 and math.isfinite(spread) and math.isfinite(conf) and conf > 0):
        return None
    return value, max(spread, 0.0), min(conf, 1.0)


def _place(
    name: str, value: float, spread: float, conf: float, spans: list[tuple[float, float]], fit: str
) -> _Placement:
    n = len(spans)
    outside: str | None = None
    if value < spans[0][0]:
        index, outside = 0, "below"
    elif value >= spans[-1][1]:
        index, outside = n - 1, "above"
    else:
        index = next(i for i, (lo, hi) in enumerate(spans) if lo <= value < hi)
    lo, hi = spans[index]
    width = hi - lo
    neighbour: int | None = None
    if outside is None:
        tol = max(spread, BETWEEN_FRACTION * width)
        below_gap, above_gap = value - lo, hi - value
        near_below = index > 0 and below_gap <= tol
        near_above = index < n - 1 and above_gap <= tol
        if near_below and near_above:
            neighbour = index - 1 if below_gap < above_gap else index + 1
        elif near_below:
            neighbour = index - 1
        elif near_above:
            neighbour = index + 1
    pick = index
    if neighbour is not None and fit == "loose":
        pick = max(index, neighbour)
    elif neighbour is not None and fit == "tight":
        pick = min(index, neighbour)
    sigma = math.hypot(spread, CHART_FUZZ * width)
    p_in = _phi((hi - value) / sigma) - _phi((lo - value) / sigma)
    certainty = conf * p_in
    if outside is not None:
        certainty = min(certainty, OUTSIDE_CAP * conf)
    return _Placement(name, value, spread, conf, index, outside, neighbour, pick, min(max(certainty, 0.0), 1.0))


def _decimals(spans: list[tuple[float, float]]) -> int:
    """Whole centimetres, or millimetres when the chart's sizes are under 2 cm wide (shoes, rings)."""
    narrowest = min(hi - lo for lo, hi in spans)
    return 0 if narrowest >= 2.0 - 1e-9 else 1


def _cm(x: float, decimals: int) -> str:
    return f"{x:.{decimals}f}"


def _label(name: str) -> str:
    return name.replace("_", " ")


def _interval(p: _Placement, decimals: int) -> str:
    low, high = _cm(p.value - p.spread, decimals), _cm(p.value + p.spread, decimals)
    return f"{_label(p.name)} {low} cm" if low == high else f"{_label(p.name)} {low}-{high} cm"


def _describe(p: _Placement, sizes: list[str], spans: list[tuple[float, float]], fit: str) -> list[str]:
    """The reasons one placement gives."""
    d = _decimals(spans)
    where = _interval(p, d)
    size = sizes[p.index]
    lo, hi = spans[p.index]
    if p.outside == "above":
        return [
            f"{where} is above the largest size ({size}, {_cm(lo, d)}-{_cm(hi, d)} cm): {size} is the nearest "
            "and may be tight"
        ]
    if p.outside == "below":
        return [
            f"{where} is below the smallest size ({size}, {_cm(lo, d)}-{_cm(hi, d)} cm): {size} is the nearest "
            "and may be loose"
        ]
    out = [f"{where} -> {size}"]
    if p.neighbour is not None:
        small, large = sorted((p.index, p.neighbour))
        because = f" (the {_label(p.name)} falls in {size})" if fit == "regular" else ""
        out.append(f"between {sizes[small]} and {sizes[large]}: {sizes[p.pick]} for a {fit} fit{because}")
    if p.confidence < 0.5:
        out.append(f"the {_label(p.name)} was measured with low confidence ({p.confidence:.1f})")
    return out


def _relative(sizes: list[str], used: dict[str, float], fit: str) -> Advice:
    n = len(sizes)
    runner: int | None
    if n == 1:
        pick, runner = 0, None
    elif n % 2 == 0:
        lower, upper = n // 2 - 1, n // 2
        pick, runner = (upper, lower) if fit == "loose" else (lower, upper)
    else:
        pick = n // 2
        runner = {"loose": pick + 1, "tight": pick - 1}.get(fit)
    confidence = RELATIVE_CAP * max(used.values())
    names = ", ".join(_label(name) for name in used)
    reasons = [
        f"the measurements ({names}) have no metric scale, so they cannot be placed in the size chart, which is in "
        f"centimetres; {sizes[pick]} is the chart's middle size, what a median body takes: a guess "
        f"(confidence {confidence:.2f}), measure with a tape to be sure",
    ]
    if runner is not None:
        reasons.append(f"{sizes[runner]} is as likely without a scale")
    return Advice(
        size=sizes[pick],
        runner_up=None if runner is None else sizes[runner],
        confidence=confidence,
        reasons=reasons,
        measurements_cm={},
    )


def recommend(
    item: Item,
    measurements: Mapping[str, tuple[float, float, float]],
    fit: Fit | str = "regular",
    absolute: bool = True,
) -> Advice | None:
    """The size of `item` to recommend from the shopper's `measurements` (name -> (value_cm, spread_cm,
    confidence)) and fit preference; None when the item has no size chart or no usable measurement. The rules are
    in the module docstring."""
    if fit not in FITS:
        raise ValueError(f"unknown fit {fit!r} (one of: {', '.join(FITS)})")
    sizes, ranges = _chart(item)
    if not sizes or not ranges:
        return None
    usable = {name: u for name in ranges if (u := _usable(measurements.get(name))) is not None}
    if not usable:
        return None
    if not absolute:
        return _relative(sizes, {name: u[2] for name, u in usable.items()}, fit)

    placements = [_place(name, *usable[name], ranges[name], fit) for name in usable]
    primary = PRIMARY.get(item.category)
    if primary is not None and primary in usable:
        decider = next(p for p in placements if p.name == primary)
        rule = f"the {_label(primary)} decides a {item.category}'s size"
    else:
        top = max(p.pick for p in placements)
        decider = max((p for p in placements if p.pick == top), key=lambda p: p.confidence)
        rule = f"a {item.category} must fit every measurement, so the largest size any of them needs wins"
    final = decider.pick

    runner: int | None = None
    if decider.neighbour is not None:
        runner = decider.index if decider.pick != decider.index else decider.neighbour
    others = [p for p in placements if p is not decider]
    if runner is None:
        for p in others:
            if p.pick != final:
                runner = final + (1 if p.pick > final else -1)
                break

    confidence = decider.certainty
    for p in others:
        confidence *= DISAGREEMENT ** abs(p.pick - final)

    reasons: list[str] = []
    for p in placements:
        reasons.extend(_describe(p, sizes, ranges[p.name], fit))
    disagreeing = [p for p in others if p.pick != final]
    if disagreeing:
        alone = "; ".join(f"the {_label(p.name)} alone would take {sizes[p.pick]}" for p in disagreeing)
        reasons.append(f"{rule}: {sizes[final]} (from the {_label(decider.name)}); {alone}")
    elif len(placements) > 1:
        reasons.append(f"every measurement agrees on {sizes[final]}")

    return Advice(
        size=sizes[final],
        runner_up=None if runner is None else sizes[runner],
        confidence=min(max(confidence, 0.0), 1.0),
        reasons=reasons,
        measurements_cm={p.name: p.value for p in placements},
    )
