"""Perception results and tracking state <-> their versioned protobuf messages (perception.proto,
session_state.proto). Runs inside Triton next to the models; the stream workers never look inside the state."""

from __future__ import annotations

from typing import Any

import numpy as np

from streams.fit.aggregate import FitState
from streams.fit.session import FitReport
from streams.proto.vto.v1.common_pb2 import Keypoint
from streams.proto.vto.v1.fit_advice_pb2 import FitAdvice, FitMeasurement, FitPreference, ScaleMethod
from streams.proto.vto.v1.perception_pb2 import Face, Hand, Mask, Perception, Person
from streams.proto.vto.v1.session_state_pb2 import FilterState, PerceptionState, Roi
from streams.proto.vto.v1.session_state_pb2 import FitState as FitStateMessage
from streams.tryon.scene import HandView, Scene
from streams.vision import blazepose, face, hands, segmentation
from streams.vision.geometry import Square
from streams.vision.smoothing import OneEuroState

STATE_VERSION = 1


# -- state ----------------------------------------------------------------------------------------------------
def roi_to_proto(square: Square, out: Roi) -> None:
    out.cx, out.cy, out.side, out.rotation = square.cx, square.cy, square.side, square.rotation


def roi_from_proto(roi: Roi) -> Square:
    return Square(roi.cx, roi.cy, roi.side, roi.rotation)


def filter_to_proto(state: OneEuroState, out: FilterState) -> None:
    out.time_s = state.time_s
    out.raw[:] = np.asarray(state.raw, np.float32).reshape(-1).tolist()
    out.filtered[:] = np.asarray(state.filtered, np.float32).reshape(-1).tolist()
    out.derivative[:] = np.asarray(state.derivative, np.float32).reshape(-1).tolist()


def filter_from_proto(msg: FilterState, shape: tuple[int, ...]) -> OneEuroState | None:
    """The filter state, or None when the message is empty or of another shape (then filtering restarts)."""
    size = int(np.prod(shape))
    if len(msg.raw) != size or len(msg.filtered) != size or len(msg.derivative) != size:
        return None
    return OneEuroState(
        msg.time_s,
        np.asarray(msg.raw, np.float64).reshape(shape),
        np.asarray(msg.filtered, np.float64).reshape(shape),
        np.asarray(msg.derivative, np.float64).reshape(shape),
    )


def parse_state(data: bytes) -> PerceptionState:
    """A session's previous state; empty (a new session) when absent, unreadable or of another version."""
    state = PerceptionState()
    if data:
        try:
            state.ParseFromString(data)
        except Exception:
            state = PerceptionState()
        if state.version != STATE_VERSION:
            state = PerceptionState()
    return state


def _roi(has: bool, roi: Roi) -> Square | None:
    return roi_from_proto(roi) if has else None


def pose_track_from_proto(state: PerceptionState) -> blazepose.PoseTrack | None:
    """None for a new session (no pose state yet), else the track (possibly lost: roi None)."""
    if not state.HasField("pose"):
        return None
    pose = state.pose
    visibility = np.asarray(pose.visibility, np.float32) if len(pose.visibility) == blazepose.NUM_KEYPOINTS else None
    return blazepose.PoseTrack(
        roi=_roi(pose.HasField("roi"), pose.roi),
        landmarks=filter_from_proto(pose.landmarks, blazepose.LANDMARK_STATE_SHAPE),
        aux=filter_from_proto(pose.aux, blazepose.AUX_STATE_SHAPE),
        visibility=visibility,
    )


def pose_track_to_proto(track: blazepose.PoseTrack, state: PerceptionState) -> None:
    state.pose.SetInParent()
    if track.roi is not None:
        roi_to_proto(track.roi, state.pose.roi)
    if track.landmarks is not None:
        filter_to_proto(track.landmarks, state.pose.landmarks)
    if track.aux is not None:
        filter_to_proto(track.aux, state.pose.aux)
    if track.visibility is not None:
        state.pose.visibility[:] = np.asarray(track.visibility, np.float32).tolist()


def face_track_from_proto(state: PerceptionState) -> face.FaceTrack | None:
    if not state.HasField("face"):
        return None
    return face.FaceTrack(
        roi=_roi(state.face.HasField("roi"), state.face.roi),
        landmarks=filter_from_proto(state.face.landmarks, (face.NUM_POINTS, 3)),
    )


def face_track_to_proto(track: face.FaceTrack, state: PerceptionState) -> None:
    state.face.SetInParent()
    if track.roi is not None:
        roi_to_proto(track.roi, state.face.roi)
    if track.landmarks is not None:
        filter_to_proto(track.landmarks, state.face.landmarks)


def hand_track_from_proto(state: PerceptionState) -> hands.HandTrack | None:
    if not state.HasField("hands"):
        return None
    filters = [filter_from_proto(f, (hands.NUM_POINTS, 3)) for f in state.hands.filters]
    return hands.HandTrack(
        rois=[roi_from_proto(r) for r in state.hands.rois],
        sides=list(state.hands.sides),
        left=list(state.hands.left),
        filters=[f for f in filters if f is not None] if len(filters) == len(state.hands.rois) else [],
    )


def hand_track_to_proto(track: hands.HandTrack, state: PerceptionState) -> None:
    state.hands.SetInParent()
    for roi in track.rois:
        roi_to_proto(roi, state.hands.rois.add())
    for f in track.filters:
        filter_to_proto(f, state.hands.filters.add())
    state.hands.sides[:] = track.sides
    state.hands.left[:] = [float(v) for v in track.left]


def mask_track_from_proto(state: PerceptionState) -> segmentation.MaskTrack | None:
    m = state.mask
    if not m.width or not m.height or len(m.previous) != m.width * m.height:
        return None
    return segmentation.MaskTrack(np.frombuffer(m.previous, np.uint8).reshape(m.height, m.width).copy())


def mask_track_to_proto(track: segmentation.MaskTrack, state: PerceptionState) -> None:
    state.mask.width, state.mask.height = track.width, track.height
    state.mask.previous = np.ascontiguousarray(track.previous, np.uint8).tobytes()


# -- size advice ------------------------------------------------------------------------------------------------
SCALE_METHODS = {"height": ScaleMethod.SCALE_METHOD_HEIGHT, "iris": ScaleMethod.SCALE_METHOD_IRIS}
FIT_PREFERENCES = {
    FitPreference.FIT_PREFERENCE_LOOSE: "loose",
    FitPreference.FIT_PREFERENCE_TIGHT: "tight",
}  # anything else (UNSPECIFIED, REGULAR, unknown values) is "regular"


def fit_preference(value: int) -> str:
    return FIT_PREFERENCES.get(value, "regular")  # type: ignore[call-overload]


def fit_to_proto(fit: FitState, out: FitStateMessage) -> None:
    out.Clear()
    for name, pairs in fit.values.items():
        series = out.series[name]
        series.values[:] = [p[0] for p in pairs]
        series.qualities[:] = [p[1] for p in pairs]
        series.count = fit.counts.get(name, len(pairs))
    out.relative, out.scale_error, out.height_cm = fit.relative, fit.scale_error, fit.height_cm
    out.scale = SCALE_METHODS.get(fit.scale, ScaleMethod.SCALE_METHOD_NONE)


def fit_from_proto(msg: FitStateMessage) -> FitState:
    """The session's fit state; empty (relative, nothing measured) when the message is."""
    if not msg.series and not msg.height_cm and not msg.scale:
        return FitState()
    methods = {v: k for k, v in SCALE_METHODS.items()}
    return FitState(
        values={
            name: [[float(v), float(q)] for v, q in zip(s.values, s.qualities, strict=False)]
            for name, s in msg.series.items()
        },
        counts={name: int(s.count) for name, s in msg.series.items()},
        relative=msg.relative,
        scale_error=float(msg.scale_error),
        height_cm=float(msg.height_cm),
        scale=methods.get(msg.scale, "none"),
    )


def advice_to_proto(report: FitReport, item_id: str, fit: FitPreference.ValueType | int) -> FitAdvice | None:
    """The FitAdvice message for the shopper (all measurements and reasons), or None without advice."""
    advice = report.advice
    if advice is None:
        return None
    return FitAdvice(
        item_id=item_id,
        size=advice.size,
        runner_up=advice.runner_up or "",
        confidence=float(advice.confidence),
        reasons=advice.reasons,
        fit=FitPreference.ValueType(fit or FitPreference.FIT_PREFERENCE_REGULAR),
        scale=SCALE_METHODS.get(report.scale, ScaleMethod.SCALE_METHOD_NONE),
        frames=report.frames,
        measurements={}
        if report.relative
        else {
            name: FitMeasurement(value_cm=v, spread_cm=s, confidence=c) for name, (v, s, c) in report.estimates.items()
        },
    )


# -- results --------------------------------------------------------------------------------------------------
def person_to_proto(keypoints: np.ndarray, score: float) -> Person:
    return Person(
        keypoints=[
            Keypoint(x=float(x), y=float(y), visibility=float(v), presence=float(p)) for x, y, v, p in keypoints
        ],
        score=float(score),
    )


def face_to_proto(points: np.ndarray, score: float, rotation: np.ndarray, translation: np.ndarray) -> Face:
    face = Face(points=np.asarray(points, np.float32).reshape(-1).tolist(), score=float(score))
    face.head_pose.rotation[:] = np.asarray(rotation, np.float32).reshape(-1).tolist()
    face.head_pose.translation_cm[:] = np.asarray(translation, np.float32).reshape(-1).tolist()
    return face


def hand_to_proto(hand: hands.Hand) -> Hand:
    """Handedness is the subject's own hand (hands.subject_handedness)."""
    side = hands.subject_handedness(hand)
    return Hand(
        handedness=side, score=float(hand.score), points=np.asarray(hand.points, np.float32).reshape(-1).tolist()
    )


def mask_to_proto(counts: list[int], width: int, height: int) -> Mask:
    return Mask(width=width, height=height, rle=counts)


def parse_perception(data: bytes) -> Perception:
    perception = Perception()
    if data:
        perception.ParseFromString(data)
    return perception


def face_points(face: Any) -> np.ndarray:
    """(478, 3) points of a Face message."""
    return np.asarray(face.points, np.float32).reshape(-1, 3)


def hand_points(hand: Any) -> np.ndarray:
    """(21, 3) points of a Hand message."""
    return np.asarray(hand.points, np.float32).reshape(-1, 3)


def scene_from_perception(bgr: np.ndarray, perception: Perception) -> Scene:
    """A renderer's Scene rebuilt from the Perception message (mask from its RLE, hands already the subject's)."""
    person = perception.people[0] if perception.people else None
    m = perception.mask
    mask = (
        segmentation.rle_decode(list(m.rle), m.height, m.width).astype(np.float32)
        if perception.HasField("mask")
        else None
    )
    return Scene(
        bgr=bgr,
        keypoints=np.array([[k.x, k.y, k.visibility, k.presence] for k in person.keypoints]) if person else None,
        face=face_points(perception.face) if perception.HasField("face") else None,
        head_rotation=np.array(perception.face.head_pose.rotation).reshape(3, 3)
        if perception.HasField("face")
        else None,
        head_translation=np.array(perception.face.head_pose.translation_cm) if perception.HasField("face") else None,
        hands=[HandView(h.handedness, hand_points(h)) for h in perception.hands],
        mask=mask,
    )
