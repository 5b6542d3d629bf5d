"""Tracking state survives the trip through protobuf bytes (what the state topic and the worker carry)."""

from __future__ import annotations

import numpy as np

from streams.proto.vto.v1.session_state_pb2 import PerceptionState
from streams.serving import state_codec as codec
from streams.vision import blazepose, face, hands, segmentation
from streams.vision.geometry import Square
from streams.vision.smoothing import OneEuroState

RNG = np.random.default_rng(1)


def filter_state(shape: tuple[int, ...]) -> OneEuroState:
    return OneEuroState(12.5, RNG.normal(size=shape), RNG.normal(size=shape), RNG.normal(size=shape))


def round_trip(state: PerceptionState) -> PerceptionState:
    state.version = codec.STATE_VERSION
    return codec.parse_state(state.SerializeToString())


def same_filter(a: OneEuroState | None, b: OneEuroState) -> bool:
    return (
        a is not None
        and a.time_s == b.time_s
        and all(np.allclose(getattr(a, k), getattr(b, k), atol=1e-5) for k in ("raw", "filtered", "derivative"))
    )


def test_pose_face_hand_and_mask_tracks_round_trip() -> None:
    pose = blazepose.PoseTrack(
        roi=Square(10.5, 20.25, 300.0, 0.3),
        landmarks=filter_state(blazepose.LANDMARK_STATE_SHAPE),
        aux=filter_state(blazepose.AUX_STATE_SHAPE),
        visibility=RNG.uniform(size=33).astype(np.float32),
    )
    face_track = face.FaceTrack(roi=Square(1.0, 2.0, 3.0, -0.1), landmarks=filter_state((face.NUM_POINTS, 3)))
    hand_track = hands.HandTrack(
        rois=[Square(5.0, 6.0, 7.0), Square(8.0, 9.0, 10.0, 1.0)],
        sides=["left", ""],
        left=[0.2, 0.9],
        filters=[filter_state((21, 3)), filter_state((21, 3))],
    )
    mask = segmentation.MaskTrack(RNG.integers(0, 255, size=(96, 128), dtype=np.uint8))
    state = PerceptionState()
    codec.pose_track_to_proto(pose, state)
    codec.face_track_to_proto(face_track, state)
    codec.hand_track_to_proto(hand_track, state)
    codec.mask_track_to_proto(mask, state)
    back = round_trip(state)

    pose_back = codec.pose_track_from_proto(back)
    assert pose_back is not None and pose_back.roi == pose.roi
    assert same_filter(pose_back.landmarks, pose.landmarks) and same_filter(pose_back.aux, pose.aux)  # type: ignore[arg-type]
    assert np.allclose(pose_back.visibility, pose.visibility)  # type: ignore[arg-type]
    face_back = codec.face_track_from_proto(back)
    assert face_back is not None and face_back.roi == face_track.roi
    assert same_filter(face_back.landmarks, face_track.landmarks)  # type: ignore[arg-type]
    hands_back = codec.hand_track_from_proto(back)
    assert hands_back is not None and hands_back.rois == hand_track.rois
    assert hands_back.sides == ["left", ""] and np.allclose(hands_back.left, [0.2, 0.9])
    assert all(same_filter(a, b) for a, b in zip(hands_back.filters, hand_track.filters, strict=True))
    mask_back = codec.mask_track_from_proto(back)
    assert mask_back is not None and np.array_equal(mask_back.previous, mask.previous)


def test_lost_pose_track_is_kept_apart_from_a_new_session() -> None:
    state = PerceptionState()
    codec.pose_track_to_proto(blazepose.PoseTrack(), state)  # tracked before, lost now: detector next frame
    lost = codec.pose_track_from_proto(round_trip(state))
    assert lost is not None and lost.roi is None and lost.landmarks is None
    assert codec.pose_track_from_proto(PerceptionState()) is None  # never seen: a still or a new session


def test_unreadable_or_other_version_state_starts_afresh() -> None:
    assert codec.parse_state(b"\xff\xff\xff") == PerceptionState()
    assert codec.parse_state(PerceptionState(version=99, time_s=3.0).SerializeToString()) == PerceptionState()
    assert codec.filter_from_proto(PerceptionState().pose.landmarks, (33, 3)) is None  # wrong size: restart filter
