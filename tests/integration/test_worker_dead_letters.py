"""Bad input through the real broker and the real worker: each kind lands on the dead-letter topic with its
reason and the original bytes, and the worker keeps rendering good frames afterwards."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

from streams.proto.vto.v1.common_pb2 import IMAGE_FORMAT_JPEG, IMAGE_FORMAT_PNG
from streams.proto.vto.v1.dead_letter_pb2 import DeadLetter
from streams.proto.vto.v1.frame_pb2 import Frame
from streams.proto.vto.v1.rendered_frame_pb2 import RenderedFrame
from streams.settings import Settings
from tests.kafka_io import consume, produce

pytestmark = pytest.mark.integration


def frame(session: str, image: bytes, width: int, height: int, **overrides: object) -> Frame:
    fields: dict[str, object] = dict(
        session_id=session,
        sequence=0,
        capture_time_unix_us=time.time_ns() // 1000,
        image=image,
        format=IMAGE_FORMAT_JPEG,
        width=width,
        height=height,
    )
    return Frame(**{**fields, **overrides})  # type: ignore[arg-type]


def test_each_kind_of_bad_input_is_dead_lettered_and_the_worker_keeps_going(stack: Settings, data_dir: Path) -> None:
    photo = (data_dir / "keypoints" / "tfjs_pose_yoga" / "pose.jpg").read_bytes()
    run = uuid.uuid4().hex[:8]

    def key(kind: str) -> str:
        return f"{run}-{kind}"

    cases: dict[str, tuple[bytes | None, bytes | None]] = {
        "undecodable": (key("undecodable").encode(), b"\x08\x96\x01 this is not a Frame \xff"),
        "tombstone": (key("tombstone").encode(), None),
        "missing_session_id": (key("missing_session_id").encode(), frame("", photo, 1000, 667).SerializeToString()),
        "key_mismatch": (key("key_mismatch").encode(), frame("someone-else", photo, 1000, 667).SerializeToString()),
        "empty_image": (key("empty_image").encode(), frame(key("empty_image"), b"", 1000, 667).SerializeToString()),
        "format_mismatch": (
            key("format_mismatch").encode(),
            frame(key("format_mismatch"), photo, 1000, 667, format=IMAGE_FORMAT_PNG).SerializeToString(),
        ),
        "bad_dimensions": (
            key("bad_dimensions").encode(),
            frame(key("bad_dimensions"), photo, 0, 667).SerializeToString(),
        ),
        "corrupt_image": (
            key("corrupt_image").encode(),
            frame(key("corrupt_image"), b"\xff\xd8\xff" + b"\x13" * 5000, 1000, 667).SerializeToString(),
        ),
        "dimension_mismatch": (
            key("dimension_mismatch").encode(),
            frame(key("dimension_mismatch"), photo, 640, 480).SerializeToString(),
        ),
    }
    expected_reason = {kind: ("undecodable" if kind == "tombstone" else kind) for kind in cases}
    good_session = key("good")
    good = frame(good_session, photo, 1000, 667, sequence=1)
    produce(stack, stack.frames_topic, [*cases.values(), (good_session.encode(), good.SerializeToString())])
    produce(stack, stack.control_topic, [(key("control").encode(), b"\xff not a SessionControl")])

    letters = consume(
        stack, stack.dead_letter_topic, lambda m: (m.key() or b"").startswith(run.encode()), count=len(cases) + 1
    )
    by_key = {m.key().decode(): DeadLetter.FromString(m.value()) for m in letters}
    for kind, (_key, value) in cases.items():
        letter = by_key.get(key(kind))
        assert letter is not None, f"no dead letter for {kind}"
        assert letter.reason == expected_reason[kind]
        assert letter.detail
        assert letter.value == (value or b"")  # the original record, unchanged
        assert letter.source_topic == stack.frames_topic
    assert by_key[key("control")].source_topic == stack.control_topic

    rendered = consume(stack, stack.rendered_topic, lambda m: m.key() == good_session.encode(), count=1)
    assert len(RenderedFrame.FromString(rendered[0].value()).keypoints) == 33
    decoded = cv2.imdecode(np.frombuffer(RenderedFrame.FromString(rendered[0].value()).image, np.uint8), 1)
    assert decoded is not None and decoded.shape[:2] == (667, 1000)

    with urllib.request.urlopen(f"http://127.0.0.1:{stack.worker_web_port}/livez", timeout=5) as resp:
        assert json.load(resp)["status"] == "alive"
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.worker_web_port}/metrics", timeout=5) as resp:
        metrics = resp.read().decode()
    assert 'vto_dead_letters_total{reason="corrupt_image"}' in metrics
    assert 'vto_dead_letters_total{reason="key_mismatch"}' in metrics
