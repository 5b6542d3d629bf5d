"""The whole product path on real media: `vto send` -> Kafka -> Faust worker -> Triton -> Kafka -> consumer.

Rendered keypoints must land on the person: checked against reference keypoints of independent models
(MediaPipe's golden outputs for a photo, MoveNet's per-frame keypoints for a 120-frame video).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

from streams import tracing
from streams.proto.vto.v1.fit_advice_pb2 import FitPreference, ScaleMethod
from streams.proto.vto.v1.perception_pb2 import POSE_SOURCE_DETECTOR
from streams.proto.vto.v1.rendered_frame_pb2 import RenderedFrame
from streams.proto.vto.v1.tryon_event_pb2 import TryOnEvent
from streams.sender import frames_of, send
from streams.settings import ROOT, Settings
from streams.tryon.catalogue import Catalogue
from streams.vision.blazepose import KEYPOINT_NAMES
from tests.kafka_io import consume, events_of

pytestmark = pytest.mark.e2e


def vto(*args: str) -> subprocess.CompletedProcess[str]:
    """The `vto` command as a user runs it, against the test stack (its settings come from the environment)."""
    command = [sys.executable, "-m", "streams.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, env=os.environ.copy(), cwd=ROOT)


def rendered_of(settings: Settings, session: str, count: int, traces: list[str] | None = None) -> list[RenderedFrame]:
    """The session's rendered frames in the order the topic holds them (one partition: the order a client
    reads): every frame once, in sequence order, and nothing after the last (no duplicate). With `traces` (the
    traceparent each frame was sent with), each rendered frame must carry its frame's trace on in its header."""

    def ours(m: object) -> bool:
        return m.key() == session.encode()  # type: ignore[attr-defined, no-any-return]

    complete_at: list[float] = []

    def settled(found: list[object]) -> bool:  # all came, then 2 s more for anything beyond the last
        if len(found) > count:
            return True
        if len(found) == count and not complete_at:
            complete_at.append(time.monotonic())
        return bool(complete_at) and time.monotonic() - complete_at[0] > 2.0

    msgs = consume(settings, settings.rendered_topic, ours, count, timeout_s=120, until=settled)
    frames = [RenderedFrame.FromString(m.value()) for m in msgs]
    assert len(frames) <= count, f"{len(frames) - count} frame(s) rendered twice"
    assert [f.sequence for f in frames] == list(range(count)), "every frame comes back once, in order"
    if traces is not None:
        carried = [tracing.header(m.headers() or []) for m in msgs]
        assert [tracing.trace_id(t) for t in carried] == [tracing.trace_id(t) for t in traces]
        assert all(c != t for c, t in zip(carried, traces, strict=True))  # the worker's span, not the client's
    return frames


def test_photo_session_renders_keypoints_on_the_person(stack: Settings, data_dir: Path) -> None:
    folder = data_dir / "keypoints" / "tfjs_pose_yoga"
    ref = json.loads((folder / "pose_blazepose33.json").read_text())
    expected = np.array(
        [
            [p["x"] * ref["width"], p["y"] * ref["height"]]
            for p in ref["mediapipe_expected_pose_landmarks_normalized"]["landmarks"]
        ]
    )
    session = f"e2e-photo-{uuid.uuid4().hex[:8]}"
    profile = {"height_cm": 165.0, "fit": FitPreference.FIT_PREFERENCE_LOOSE}  # no consent to share measurements
    send(stack, frames_of(folder / "pose.jpg"), session, fps=0, item="tee-breton-stripes", profile=profile)
    [frame] = rendered_of(stack, session, 1)
    got = np.array([[k.x, k.y] for k in frame.keypoints])
    assert got.shape == (33, 2)
    assert np.linalg.norm(got - expected, axis=1).max() < ref["tfjs_expected_landmarks_px"]["tolerance_px"]
    image = cv2.imdecode(np.frombuffer(frame.image, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[:2] == (667, 1000)
    assert frame.item_id == "tee-breton-stripes"
    # The shopper wears the striped tee: the torso between shoulders and hips changed, the sky did not.
    original = cv2.imread(str(folder / "pose.jpg")).astype(int)
    x, y = got[[11, 12, 23, 24]].mean(axis=0).astype(int)
    changed = np.abs(image.astype(int) - original).max(axis=2)
    assert changed[y - 8 : y + 8, x - 8 : x + 8].mean() > 40 and changed[:40, :40].mean() < 5
    assert {"infer", "pose_detection", "pose_landmark", "render"} <= set(frame.stage_seconds)
    # Perception travels with the frame: the shopper and the person mask (the face is too small here to mesh).
    perception = frame.perception
    assert len(perception.people) == 1 and perception.people[0].keypoints[0].x == frame.keypoints[0].x
    assert perception.pose_source == POSE_SOURCE_DETECTOR  # a photo: no track to follow
    assert perception.mask.width == 1000 and sum(perception.mask.rle) == 1000 * 667
    # Size advice for the tee, scaled by the stated height (the feet are in the photo), back to the shopper...
    advice = frame.fit_advice
    chart = Catalogue(stack.catalogue_dir).get("tee-breton-stripes")
    assert chart is not None and advice.size in chart.size_chart and 0 < advice.confidence <= 1
    assert advice.scale == ScaleMethod.SCALE_METHOD_HEIGHT and advice.fit == FitPreference.FIT_PREFERENCE_LOOSE
    assert advice.measurements["chest"].value_cm > 0 and list(advice.reasons)
    # ... and to analytics once, without the shopper's measurements (no consent given).
    events = consume(stack, stack.events_topic, events_of(session), count=4)
    [shared] = [e.fit_advice for e in map(TryOnEvent.FromString, (m.value() for m in events)) if e.fit_advice.size]
    assert shared.size == advice.size and not shared.measurements and not shared.reasons


def test_video_session_tracks_the_dancer_frame_by_frame(stack: Settings, data_dir: Path) -> None:
    folder = data_dir / "keypoints" / "tfjs_pose_1_synthetic_video"
    reference = json.loads((folder / "pose_1.json").read_text())  # 17 COCO keypoints per frame, by name
    session = f"e2e-video-{uuid.uuid4().hex[:8]}"
    sent = send(stack, frames_of(folder / "pose_1.mp4"), session, fps=30, item="sneaker-white-red")
    frames = rendered_of(stack, session, len(sent), traces=[s.traceparent for s in sent])
    assert len(frames) == len(reference) == 120
    medians = []
    for frame, expected in zip(frames, reference, strict=True):
        assert len(frame.keypoints) == 33, f"no pose in frame {frame.sequence}"
        errors = [
            np.hypot(
                frame.keypoints[KEYPOINT_NAMES.index(name)].x - p["x"],
                frame.keypoints[KEYPOINT_NAMES.index(name)].y - p["y"],
            )
            for name, p in expected.items()
        ]
        assert max(errors) < 50, f"frame {frame.sequence}: a keypoint is {max(errors):.0f} px off"
        medians.append(float(np.median(errors)))
    # Stated tolerance: per-frame median distance to MoveNet's keypoints under 12 px on 576x576 frames
    # (measured: worst frame 6.7 px, overall median 4.6 px).
    assert max(medians) < 12

    def complete(found: list[object]) -> bool:  # END may overtake the frames: wait for every kind, not for END
        kinds = {TryOnEvent.FromString(m.value()).type for m in found}  # type: ignore[attr-defined]
        return {TryOnEvent.TYPE_SESSION_ENDED, TryOnEvent.TYPE_TRY_ON_RENDERED} <= kinds

    events = consume(stack, stack.events_topic, events_of(session), count=4, until=complete)
    types = [TryOnEvent.FromString(m.value()).type for m in events]
    # The sneakers have a size chart: size advice events come too, whenever the advice changes; the time the
    # shopper wore them comes with the END (ITEM_DWELL), unless the END overtook every frame.
    assert sorted(t for t in types if t not in (TryOnEvent.TYPE_FIT_ADVICE, TryOnEvent.TYPE_ITEM_DWELL)) == sorted(
        [TryOnEvent.TYPE_SESSION_STARTED, TryOnEvent.TYPE_TRY_ON_RENDERED, TryOnEvent.TYPE_SESSION_ENDED]
    )
    assert all(b"\xff\xd8" not in m.value() for m in events)  # analytics never carry image data

    # The `vto account` contract: every frame the session sent has its outcome on Kafka, and they add up.
    for _ in range(20):  # the last batch's outcomes follow its rendered frames by a moment
        result = vto("account", "--session", session, "--json")
        assert result.returncode == 0, result.stderr
        account = json.loads(result.stdout)
        if account["unaccounted"] == 0:
            break
        time.sleep(0.5)
    assert account["frames"] == len(sent) == account["accounted"] == account["rendered"]
    assert account["unaccounted"] == 0 and account["handled_twice"] == 0
    assert account["dropped"] == {} and account["dead_lettered"] == {}


def test_vto_pose_prints_per_frame_pixel_keypoints(stack: Settings, data_dir: Path) -> None:
    photo = data_dir / "keypoints" / "mps_pose_sitting" / "test_image.jpg"
    result = vto("pose", str(photo), "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    [frame] = out["frames"]
    assert (frame["width"], frame["height"]) == (960, 640)
    assert len(frame["keypoints"]) == 33 and all(len(k) == 3 for k in frame["keypoints"])
    nose_x, nose_y, visibility = frame["keypoints"][0]
    assert 0 < nose_x < 960 and 0 < nose_y < 640 and visibility > 0.5


def test_vto_pose_video_with_face_hands_people_and_masks(stack: Settings, data_dir: Path, tmp_path: Path) -> None:
    """The `vto pose` contract: a video runs in tracking mode and each frame adds face, hands and people."""
    video = data_dir / "people" / "videos" / "mediapipe_selfie_upper_body.mp4"
    clip = tmp_path / "clip.mp4"  # the first 20 frames keep the test short
    capture = cv2.VideoCapture(str(video))
    writer = None
    for _ in range(20):
        ok, bgr = capture.read()
        assert ok
        if writer is None:
            writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (bgr.shape[1], bgr.shape[0]))
        writer.write(bgr)
    assert writer is not None
    writer.release()
    capture.release()
    masks = tmp_path / "masks"
    result = vto("pose", str(clip), "--json", "--face", "--hands", "--max-people", "2", "--mask-dir", str(masks))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["mode"].startswith("video")
    frames = out["frames"]
    assert len(frames) == 20
    assert frames[0]["pose_source"] == "detector"
    assert [f["pose_source"] for f in frames[1:]].count("tracking") >= 18
    for frame in frames:
        assert len(frame["keypoints"]) == 33 and all(len(k) == 3 for k in frame["keypoints"])
        nose = np.array(frame["keypoints"][0][:2])
        face = np.array(frame["face"])
        assert face.shape == (478, 2)
        assert np.linalg.norm(face[1] - nose) < 0.25 * np.ptp(face[:, 0])  # mesh point 1 is the nose tip
        assert 1 <= len(frame["people"]) <= 2 and frame["people"][0]["keypoints"] == frame["keypoints"]
        for hand in frame["hands"]:
            assert hand["handedness"] in ("Left", "Right") and len(hand["points"]) == 21
    assert sum(bool(f["hands"]) for f in frames) >= 15
    written = sorted(masks.glob("*.png"))
    assert len(written) == 20
    mask = cv2.imread(str(written[0]), cv2.IMREAD_GRAYSCALE)
    assert mask.shape == (frames[0]["height"], frames[0]["width"])
    nose_x, nose_y = (int(v) for v in frames[0]["keypoints"][0][:2])
    assert mask[nose_y, nose_x] == 255 and mask[:10, :10].max() == 0  # the person, not the background


def test_vto_tryon_puts_glasses_over_the_eyes_and_refuses_an_unknown_item(
    stack: Settings, data_dir: Path, tmp_path: Path
) -> None:
    folder = data_dir / "keypoints" / "tfjs_portrait_face"
    photo, out = folder / "portrait.jpg", tmp_path / "tryon.png"

    def vto_tryon(item: str) -> subprocess.CompletedProcess[str]:
        return vto("tryon", str(photo), "--item", item, "-o", str(out))

    result = vto_tryon("sunglasses-blue-wayfarer")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["category"] == "glasses" and summary["out"] == str(out)
    rendered, original = cv2.imread(str(out)).astype(int), cv2.imread(str(photo)).astype(int)
    ref = json.loads((folder / "portrait_face_landmarks.json").read_text())
    marks = ref["mediapipe_face_landmarker_478_normalized"]["landmarks"]
    for iris in (468, 473):  # the dark lenses cover both eyes: the eye's detail is gone under a flat lens
        x, y = round(marks[iris]["x"] * ref["width"]), round(marks[iris]["y"] * ref["height"])
        lens, eye = rendered[y - 4 : y + 5, x - 4 : x + 5], original[y - 4 : y + 5, x - 4 : x + 5]
        assert np.abs(lens - eye).max(axis=2).mean() > 25
        assert lens.std(axis=(0, 1)).mean() < 0.5 * eye.std(axis=(0, 1)).mean()
    assert np.abs(rendered[-40:, :40] - original[-40:, :40]).mean() < 3  # the rest of the photo is untouched

    refused = vto_tryon("no-such-item")
    assert refused.returncode == 1 and "not in the catalogue" in refused.stderr


def test_vto_fit_prints_a_size_from_the_items_chart_with_its_reasons(stack: Settings, data_dir: Path) -> None:
    """The `vto fit` contract: size, confidence, measurements_cm, reasons; scale from the stated height."""
    photo = data_dir / "keypoints" / "tfjs_pose_yoga" / "pose.jpg"

    def vto_fit(*extra: str) -> subprocess.CompletedProcess[str]:
        return vto("fit", str(photo), "--json", *extra)

    chart = json.loads((ROOT / "catalogue" / "tee-breton-stripes" / "item.json").read_text())["size_chart"]
    result = vto_fit("--item", "tee-breton-stripes", "--height-cm", "175", "--fit", "loose")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["size"] in chart and 0.0 <= out["confidence"] <= 1.0 and out["reasons"]
    assert out["scale"] == "height" and out["frames"] == out["frames_measured"] == 1
    assert 30 < out["measurements_cm"]["shoulder_width"] < 50 and 60 < out["measurements_cm"]["chest"] < 130
    relative = json.loads(vto_fit("--item", "tee-breton-stripes").stdout)  # no height, a face too small to scale
    assert relative["size"] in chart and relative["scale"] == "none"
    assert relative["measurements_cm"] == {} and 0 < relative["confidence"] <= 0.2
    refused = vto_fit("--item", "sunglasses-blue-wayfarer")
    assert refused.returncode == 1 and "no size chart" in refused.stderr
