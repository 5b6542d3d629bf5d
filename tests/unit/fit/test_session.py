"""A session's size advice: folding frames into the FitState, its protobuf form, and the advice message."""

from __future__ import annotations

import numpy as np
import pytest

from streams.fit.aggregate import CHEST_PER_BIDELTOID, FROM_BREADTH_CONFIDENCE, FitState, estimate, update
from streams.fit.measure import FrameMeasurements, girth, measure
from streams.fit.scale import Scale
from streams.fit.session import advise, fold
from streams.proto.vto.v1.fit_advice_pb2 import FitPreference, ScaleMethod
from streams.proto.vto.v1.session_state_pb2 import FitState as FitStateMessage
from streams.serving import state_codec as codec
from streams.tryon.catalogue import Item
from streams.tryon.scene import Scene
from tests.unit.fit.test_measure import CHEST, HEIGHT_CM, _person

TEE = Item(
    id="tee",
    category="top",
    name="T-shirt",
    image=np.zeros((1, 1, 4), np.uint8),
    anchors={},
    size_chart={"S": {"chest": (80.0, 92.0)}, "M": {"chest": (92.0, 104.0)}, "L": {"chest": (104.0, 116.0)}},
)


def test_a_few_seconds_of_frames_give_a_confident_size() -> None:
    state = FitState()
    for _ in range(45):
        state = fold(state, _person(4.0), HEIGHT_CM)
    report = advise(state, TEE)
    assert report.advice is not None and report.scale == "height" and not report.relative
    assert report.frames == 45
    chest = report.estimates["chest"][0]
    assert chest == pytest.approx(girth("chest", width=CHEST), rel=0.01)  # 103.4 cm: M, near L (104)
    assert (report.advice.size, report.advice.runner_up) == ("M", "L")
    one = advise(fold(FitState(), _person(4.0), HEIGHT_CM), TEE)
    assert one.advice is not None and one.advice.confidence < report.advice.confidence


def test_another_stated_height_starts_the_measurements_afresh() -> None:
    state = FitState()
    for _ in range(5):
        state = fold(state, _person(4.0), HEIGHT_CM)
    assert state.frames == 5
    taller = fold(state, _person(4.0), 190.0)
    assert taller.frames == 1 and taller.height_cm == 190.0
    assert estimate(taller)["chest"][0] == pytest.approx(estimate(state)["chest"][0] * 190.0 / HEIGHT_CM, rel=0.01)


def test_a_frame_without_scale_keeps_a_metric_session_metric() -> None:
    state = fold(FitState(), _person(4.0), HEIGHT_CM)
    feetless = _person(4.0)
    assert feetless.keypoints is not None
    feetless.keypoints[25:33, 2] = 0.0  # no legs: the height gives no scale, and there is no face
    later = fold(state, feetless, HEIGHT_CM)
    assert not later.relative and later.scale == "height" and later.frames == state.frames


def test_fit_state_round_trips_through_its_protobuf() -> None:
    state = FitState()
    for k in (3.0, 4.0, 5.0):
        state = fold(state, _person(k), HEIGHT_CM)
    for i in range(40):  # past the window, with qualities that differ: counts exceed the pairs kept
        frame = FrameMeasurements({"shoulder_width": (40.0 + i % 3, 0.5 + (i % 5) / 10)}, "iris", 0.07 + i / 1000)
        state = update(state, frame)
    message = FitStateMessage()
    codec.fit_to_proto(state, message)
    again = codec.fit_from_proto(FitStateMessage.FromString(message.SerializeToString()))
    assert again.counts == state.counts and again.counts["shoulder_width"] > len(again.values["shoulder_width"])
    assert (again.relative, again.scale, again.height_cm) == (False, "iris", HEIGHT_CM)
    assert again.scale_error == pytest.approx(state.scale_error, rel=1e-6) and state.scale_error < 0.07
    assert again.values.keys() == state.values.keys()
    for name, pairs in state.values.items():
        assert np.allclose(again.values[name], pairs, rtol=1e-6)
    assert codec.fit_from_proto(FitStateMessage()) == FitState()


def test_advice_message_names_scale_fit_and_measurements_and_none_without_a_scale() -> None:
    state = fold(FitState(), _person(4.0), HEIGHT_CM)
    message = codec.advice_to_proto(advise(state, TEE, "loose"), "tee", FitPreference.FIT_PREFERENCE_LOOSE)
    assert message is not None
    assert (message.item_id, message.fit, message.scale) == (
        "tee",
        FitPreference.FIT_PREFERENCE_LOOSE,
        ScaleMethod.SCALE_METHOD_HEIGHT,
    )
    assert message.measurements["chest"].value_cm > 0 and message.size in TEE.size_chart and list(message.reasons)
    relative = fold(FitState(), _person(4.0))  # no height, no face: proportions only
    unscaled = codec.advice_to_proto(advise(relative, TEE), "tee", 0)
    assert unscaled is not None and not unscaled.measurements and unscaled.confidence <= 0.2
    assert unscaled.scale == ScaleMethod.SCALE_METHOD_NONE and unscaled.fit == FitPreference.FIT_PREFERENCE_REGULAR
    assert codec.fit_preference(FitPreference.FIT_PREFERENCE_TIGHT) == "tight" and codec.fit_preference(0) == "regular"


def _yaw(degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def test_a_webcam_framing_gives_the_shoulders_judged_by_the_head_pose() -> None:
    full = _person(4.0)
    assert full.keypoints is not None
    kp = full.keypoints.copy()
    kp[23:33, 2] = 0.0  # hips and legs out of frame
    scale = Scale(0.25, "iris", 0.06)

    def shoulders(rotation: np.ndarray | None) -> tuple[float, float] | None:
        scene = Scene(bgr=full.bgr, keypoints=kp, mask=full.mask, head_rotation=rotation)
        out = measure(scene, scale)
        return out.values.get("shoulder_width")

    frontal = shoulders(_yaw(0))
    assert frontal is not None and frontal[1] > 0.5
    assert frontal[0] == pytest.approx(measure(full, scale)["shoulder_width"][0])
    turned = shoulders(_yaw(60))
    assert turned is not None and turned[1] == 0.0
    assert shoulders(None) is not None and shoulders(None)[1] == 0.0  # type: ignore[index]
    assert "chest" not in measure(Scene(bgr=full.bgr, keypoints=kp, mask=full.mask, head_rotation=_yaw(0)), scale)


def test_without_a_torso_width_the_chest_comes_from_the_upper_arm_breadth_with_less_confidence() -> None:
    frame = FrameMeasurements({"bideltoid_width": (45.0, 0.9), "shoulder_width": (40.0, 0.9)}, "height", 0.03)
    state = FitState()
    for _ in range(30):
        state = update(state, frame)
    est = estimate(state)
    assert est["chest"][0] == pytest.approx(CHEST_PER_BIDELTOID * 45.0)
    assert est["chest"][2] == pytest.approx(est["bideltoid_width"][2] * FROM_BREADTH_CONFIDENCE)
    assert est["chest"][1] / est["chest"][0] > est["bideltoid_width"][1] / est["bideltoid_width"][0]
    shoulders_only = update(FitState(), FrameMeasurements({"shoulder_width": (40.0, 0.9)}, "height", 0.03))
    assert "chest" not in estimate(shoulders_only)  # the shoulder keypoints are no chest measure


def test_frames_with_a_poor_scale_count_less_than_frames_with_a_good_one() -> None:
    state = FitState()
    for _ in range(5):  # a close-up: 5 % scale error
        state = update(state, FrameMeasurements({"shoulder_width": (40.0, 0.95)}, "iris", 0.05))
    for _ in range(10):  # a small iris: 15 % error, and a value far off; kept, but outweighed by the close-up
        state = update(state, FrameMeasurements({"shoulder_width": (50.0, 0.95)}, "iris", 0.15))
    assert len(state.values["shoulder_width"]) == 15
    assert estimate(state)["shoulder_width"][0] == pytest.approx(40.0)
    assert state.scale_error == pytest.approx(0.05)  # the best frames' scale, not the latest
    for _ in range(3):  # a 4 px iris in a full-body frame (30 %): left out altogether
        state = update(state, FrameMeasurements({"shoulder_width": (60.0, 0.95)}, "iris", 0.30))
    assert len(state.values["shoulder_width"]) == 15


def test_a_metric_frame_that_measures_nothing_leaves_a_relative_session_as_it_was() -> None:
    state = FitState()
    for _ in range(10):
        state = update(state, FrameMeasurements({"chest_width": (0.9, 0.9)}, "none", 1.0))
    close_up = FrameMeasurements({}, "iris", 0.06)  # a face filling the frame: a scale, nothing to measure
    assert update(state, close_up) is state
    poor = FrameMeasurements({"chest_width": (35.0, 0.9)}, "iris", 0.5)  # everything below MIN_QUALITY
    assert update(state, poor) is state
    assert state.relative and state.frames == 10


def test_keypoints_beyond_the_frame_do_not_count_as_seen() -> None:
    person = _person(4.0)
    assert person.keypoints is not None
    height = int(person.keypoints[24, 1]) - 10  # the frame ends just above the hips
    cropped = Scene(
        bgr=person.bgr[:height], keypoints=person.keypoints, mask=None if person.mask is None else person.mask[:height]
    )
    # BlazePose still reports the hips and legs below the edge, here fully visible and present.
    state = fold(FitState(), cropped, HEIGHT_CM)
    assert state.relative  # no feet in the frame: the stated height gives no scale (and there is no face)
    assert "hips_width_rel" not in state.values and "inseam_rel" not in state.values
