"""Perception for a batch of frames from many sessions: pose (tracked), face mesh, hands and person mask.

Runs inside Triton's `tryon` model. Each model is a callable on a whole batch (BLS calls in Triton, fakes in
unit tests), so every model runs at most a couple of times per batch however many sessions are in it. The
sessions' tracking state comes in and goes out as `PerceptionState` protobuf, which the stream worker stores
without looking inside.

Order per frame: pose (client keypoints when valid, else BlazePose in tracking mode) -> face (ROI from the
pose's face points, the previous mesh, or face detection for close-ups) -> hands (ROI from the pose's wrist,
index and pinky, the previous hand, or palm detection) -> mask (the pose model's segmentation warped back
to the frame, or selfie segmentation when no body is found), smoothed over time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streams.proto.vto.v1.perception_pb2 import (
    POSE_SOURCE_CLIENT,
    POSE_SOURCE_DETECTOR,
    POSE_SOURCE_NONE,
    POSE_SOURCE_TRACKING,
    Perception,
)
from streams.proto.vto.v1.session_state_pb2 import PerceptionState
from streams.serving import state_codec as codec
from streams.vision import blazepose, face, hands, segmentation

Model = Callable[..., Any]


@dataclass(frozen=True)
class Models:
    """Batched model calls (see each vision module for the exact contract)."""

    pose_detection: Model
    pose_landmarks: Model
    face_detection: Model
    face_landmarks: Model
    iris: Model
    palm_detection: Model
    hand_landmarks: Model
    selfie_segmentation: Model


@dataclass(frozen=True)
class FrameInput:
    rgb: np.ndarray
    time_s: float  # capture time: drives the temporal filters
    state: PerceptionState  # the session's previous state (empty for a still or a new session)
    face: bool = False
    hands: bool = False
    mask: bool = False
    max_people: int = 1
    client_keypoints: np.ndarray | None = None  # (33, 4), already validated by the worker
    video: bool = True  # False: a still, tracking and smoothing are not used


@dataclass
class FrameOutput:
    keypoints: np.ndarray  # the shopper's (33, 4), zeros when no person
    pose_score: float
    perception: Perception
    state: PerceptionState
    mask: np.ndarray | None = None  # (H, W) float32 in [0, 1], for the renderer
    face_points: np.ndarray | None = None  # (478, 3)
    head_rotation: np.ndarray | None = None  # (3, 3)
    head_translation: np.ndarray | None = None  # (3,) cm
    hands: list[hands.Hand] = field(default_factory=list)


def perceive(frames: list[FrameInput], models: Models, canonical_face: dict[str, np.ndarray]) -> list[FrameOutput]:
    """All perception for a batch; never calls a model for a feature no frame asked for."""
    outputs = [
        FrameOutput(blazepose.NO_POSE.keypoints, 0.0, Perception(pose_source=POSE_SOURCE_NONE), PerceptionState())
        for _ in frames
    ]
    for f, out in zip(frames, outputs, strict=True):
        out.state.version = codec.STATE_VERSION
        out.state.time_s = f.time_s

    # -- pose ---------------------------------------------------------------------------------------------
    served = [i for i, f in enumerate(frames) if f.client_keypoints is None]
    want_seg = [frames[i].mask for i in served]
    pose_people: dict[int, list[blazepose.Pose]] = {}
    if served:
        people, tracks = blazepose.track(
            [frames[i].rgb for i in served],
            [frames[i].time_s for i in served],
            [codec.pose_track_from_proto(frames[i].state) if frames[i].video else None for i in served],
            models.pose_detection,
            models.pose_landmarks,
            max_people=[frames[i].max_people for i in served],
            segmentation=any(want_seg),
        )
        for i, found, track in zip(served, people, tracks, strict=True):
            pose_people[i] = found
            out = outputs[i]
            if frames[i].video:
                codec.pose_track_to_proto(track, out.state)
            for person in found:
                out.perception.people.append(codec.person_to_proto(person.keypoints, person.score))
            if found and found[0].found:
                out.keypoints, out.pose_score = found[0].keypoints, found[0].score
                out.perception.pose_source = POSE_SOURCE_DETECTOR if found[0].detector_ran else POSE_SOURCE_TRACKING
    for i, f in enumerate(frames):
        if f.client_keypoints is not None:
            outputs[i].keypoints, outputs[i].pose_score = f.client_keypoints.astype(np.float32), 1.0
            outputs[i].perception.people.append(codec.person_to_proto(f.client_keypoints, 1.0))
            outputs[i].perception.pose_source = POSE_SOURCE_CLIENT
    shopper = [out.keypoints if out.pose_score >= blazepose.MIN_POSE_PRESENCE else None for out in outputs]

    # -- face -----------------------------------------------------------------------------------------------
    asked = [i for i, f in enumerate(frames) if f.face]
    if asked:
        faces, face_tracks = face.track_faces(
            [frames[i].rgb for i in asked],
            [frames[i].time_s for i in asked],
            [codec.face_track_from_proto(frames[i].state) if frames[i].video else None for i in asked],
            [shopper[i] for i in asked],
            models.face_detection,
            models.face_landmarks,
            models.iris,
            canonical_face,
        )
        for i, found_face, face_track in zip(asked, faces, face_tracks, strict=True):
            if frames[i].video:
                codec.face_track_to_proto(face_track, outputs[i].state)
            if found_face is not None:
                outputs[i].face_points = found_face.points
                outputs[i].head_rotation, outputs[i].head_translation = found_face.rotation, found_face.translation
                outputs[i].perception.face.CopyFrom(
                    codec.face_to_proto(
                        found_face.points, found_face.score, found_face.rotation, found_face.translation
                    )
                )

    # -- hands ----------------------------------------------------------------------------------------------
    asked = [i for i, f in enumerate(frames) if f.hands]
    if asked:
        found_hands, hand_tracks = hands.track_hands(
            [frames[i].rgb for i in asked],
            [frames[i].time_s for i in asked],
            [codec.hand_track_from_proto(frames[i].state) if frames[i].video else None for i in asked],
            [shopper[i] for i in asked],
            models.palm_detection,
            models.hand_landmarks,
        )
        for i, hs, hand_track in zip(asked, found_hands, hand_tracks, strict=True):
            if frames[i].video:
                codec.hand_track_to_proto(hand_track, outputs[i].state)
            outputs[i].hands = list(hs)
            for hand in hs:
                outputs[i].perception.hands.append(codec.hand_to_proto(hand))

    # -- mask -----------------------------------------------------------------------------------------------
    asked = [i for i, f in enumerate(frames) if f.mask]
    roi_masks = {
        i: (candidates[0].roi, candidates[0].segmentation)
        for i in asked
        if (candidates := pose_people.get(i)) and candidates[0].segmentation is not None
    }
    no_body = [i for i in asked if i not in roi_masks]
    selfie: dict[int, np.ndarray] = {}
    if no_body:
        probs = models.selfie_segmentation(np.stack([segmentation.selfie_input(frames[i].rgb) for i in no_body]))
        for j, i in enumerate(no_body):
            h, w = frames[i].rgb.shape[:2]
            selfie[i] = segmentation.mask_from_selfie(np.asarray(probs[j]).reshape(256, 256), w, h)
    for i in asked:
        h, w = frames[i].rgb.shape[:2]
        if i in selfie:
            mask = selfie[i]
        else:
            roi, probabilities = roi_masks[i]
            mask = segmentation.mask_from_roi(np.asarray(probabilities).reshape(256, 256), roi, w, h)
        previous = codec.mask_track_from_proto(frames[i].state) if frames[i].video else None
        mask, mask_track = segmentation.smooth(previous, mask)
        if frames[i].video:
            codec.mask_track_to_proto(mask_track, outputs[i].state)
        outputs[i].mask = mask
        outputs[i].perception.mask.CopyFrom(codec.mask_to_proto(segmentation.rle_encode(mask >= 0.5), w, h))
    return outputs
