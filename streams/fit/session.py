"""A shopper's size advice over a session: `fold` adds one frame to the session's FitState (metric scale from the
stated height, else the iris; the measurements the frame allows; robust aggregation), `advise` turns the state
into the item's size. The Triton `tryon` model calls both for every frame of an item with a size chart, and
keeps the FitState in the session's tracking state."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from streams.fit.advice import Advice, recommend
from streams.fit.aggregate import FitState, estimate, update
from streams.fit.measure import FrameMeasurements, measure
from streams.fit.scale import choose_scale, in_frame
from streams.tryon.catalogue import Item
from streams.tryon.scene import Scene

RELATIVE_SUFFIX = "_rel"


@dataclass
class FitReport:
    advice: Advice | None  # None: the item has no size chart or nothing it needs was measured
    estimates: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # name -> value, spread, conf.
    scale: str = "none"  # the scale of the latest metric frame that added measurements ("none": relative)
    frames: int = 0  # frames that gave a usable measurement
    relative: bool = True  # no metric scale in any frame: only a relative size


def frame_measurements(scene: Scene, height_cm: float | None = None) -> FrameMeasurements:
    """One frame's measurements: keypoints beyond the frame's edges are not seen, then the frame's scale (stated
    height, else the eyes, else none) and every measurement it allows."""
    if scene.keypoints is not None:
        scene = replace(scene, keypoints=in_frame(scene.keypoints, scene.bgr.shape[1], scene.bgr.shape[0]))
    return measure(scene, choose_scale(scene.keypoints, scene.face, height_cm or None))


def fold(state: FitState, scene: Scene, height_cm: float | None = None) -> FitState:
    """The session's state with this frame's measurements added. A stated height other than the one the state
    was measured with starts afresh (its centimetres were scaled by the old height)."""
    height = float(height_cm or 0.0)
    if abs(height - state.height_cm) > 1e-3:
        state = FitState(height_cm=height)
    return replace(update(state, frame_measurements(scene, height)), height_cm=height)


def advise(state: FitState, item: Item, fit: str = "regular") -> FitReport:
    """The size of `item` the session's measurements call for, with the estimates behind it."""
    estimates = {name.removesuffix(RELATIVE_SUFFIX): value for name, value in estimate(state).items()}
    return FitReport(
        advice=recommend(item, estimates, fit, absolute=not state.relative),
        estimates=estimates,
        scale=state.scale,
        frames=state.frames,
        relative=state.relative,
    )
