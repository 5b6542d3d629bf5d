"""A shopper's size advice from the frames of one session: metric scale (stated height, else the iris), the
measurements each frame allows, robust aggregation over the session, and the item's size from its chart."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from streams.fit.advice import Advice, recommend
from streams.fit.aggregate import FitState, estimate, update
from streams.fit.measure import measure
from streams.fit.scale import choose_scale
from streams.tryon.catalogue import Item
from streams.tryon.scene import Scene

RELATIVE_SUFFIX = "_rel"


@dataclass
class FitReport:
    advice: Advice | None  # None: the item has no size chart or nothing it needs was measured
    estimates: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # name -> value, spread, conf.
    scale_methods: dict[str, int] = field(default_factory=dict)  # "height" / "iris" / "none" -> frames
    frames: int = 0
    relative: bool = True  # no metric scale in any frame: only a relative size


def advise(scenes: Iterable[Scene], item: Item, height_cm: float | None = None, fit: str = "regular") -> FitReport:
    """Fold every frame into the session's FitState, then recommend a size for `item`."""
    state, report = FitState(), FitReport(None)
    for scene in scenes:
        scale = choose_scale(scene.keypoints, scene.face, height_cm)
        report.scale_methods[scale.method] = report.scale_methods.get(scale.method, 0) + 1
        state = update(state, measure(scene, scale))
        report.frames += 1
    report.relative = state.relative
    report.estimates = {name.removesuffix(RELATIVE_SUFFIX): value for name, value in estimate(state).items()}
    report.advice = recommend(item, report.estimates, fit, absolute=not state.relative)
    return report
