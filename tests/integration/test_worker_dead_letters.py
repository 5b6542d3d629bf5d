"""Bad input through the real broker and the real worker: each kind lands on the dead-letter topic with its
reason and the original bytes (none at all without the shopper's consent), and the worker keeps rendering good
frames afterwards. Forged, foreign, expired and missing session tokens are bad input too."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

from streams import tokens
from streams.proto.vto.v1.common_pb2 import IMAGE_FORMAT_JPEG, IMAGE_FORMAT_PNG, IMAGE_FORMAT_UNSPECIFIED, Keypoint
from streams.proto.vto.v1.dead_letter_pb2 import DeadLetter
from streams.proto.vto.v1.frame_pb2 import Frame
from streams.proto.vto.v1.rendered_frame_pb2 import RenderedFrame
from streams.settings import Settings
from tests.kafka_io import consume, produce

pytestmark = pytest.mark.integration

FRAME_REASONS = {
    "undecodable",
    "missing_session_id",
    "key_mismatch",
    "missing_capture_time",
    "future_capture_time",
    "empty_image",
    "image_too_large",
    "unsupported_format",
    "format_mismatch",
    "bad_dimensions",
    "corrupt_image",
    "dimension_mismatch",
    "bad_client_keypoints",
    "unknown_item",
    "missing_token",
    "invalid_token",
    "foreign_token",
    "expired_token",
    "no_consent",
}


def frame(session: str, image: bytes, width: int, height: int, **overrides: object) -> Frame:
    fields: dict[str, object] = dict(
        session_token=tokens.mint(Settings().session_key(), session, ttl_s=600),
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

    png = cv2.imencode(".png", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
    bomb = png[:16] + (16000).to_bytes(4, "big") * 2 + png[24:]  # a few hundred bytes claiming 16000 x 16000
    nan_points = [Keypoint(x=float("nan"), y=1.0, visibility=1.0, presence=1.0)] * 33
    off_frame = [Keypoint(x=5000.0, y=1.0, visibility=1.0, presence=1.0)] * 33
    hour_ahead = time.time_ns() // 1000 + 3600 * 1_000_000
    secret = stack.session_key()

    def bad(kind: str, **overrides: object) -> bytes:
        fields: dict[str, object] = {"session": key(kind), "image": photo, "width": 1000, "height": 667}
        fields.update(overrides)
        return frame(**fields).SerializeToString()  # type: ignore[arg-type]

    # kind -> (value, the reason it must be dead-lettered with); the record key is key(kind)
    cases: dict[str, tuple[bytes | None, str]] = {
        "undecodable": (b"\x08\x96\x01 this is not a Frame \xff", "undecodable"),
        "tombstone": (None, "undecodable"),
        "missing_session_id": (bad("x", session=""), "missing_session_id"),
        "key_mismatch": (bad("x", session="someone-else"), "key_mismatch"),
        "empty_image": (bad("empty_image", image=b""), "empty_image"),
        "format_mismatch": (bad("format_mismatch", format=IMAGE_FORMAT_PNG), "format_mismatch"),
        "bad_dimensions": (bad("bad_dimensions", width=0), "bad_dimensions"),
        "random_after_signature": (
            bad("random_after_signature", image=b"\xff\xd8\xff" + b"\x13" * 5000),
            "corrupt_image",
        ),
        "truncated_jpeg": (bad("truncated_jpeg", image=photo[: len(photo) // 2]), "corrupt_image"),
        "png_bomb": (bad("png_bomb", image=bomb, format=IMAGE_FORMAT_PNG), "dimension_mismatch"),
        "png_bomb_declared": (
            bad("png_bomb_declared", image=bomb, format=IMAGE_FORMAT_PNG, width=16000, height=16000),
            "bad_dimensions",
        ),
        "dimension_mismatch": (bad("dimension_mismatch", width=640, height=480), "dimension_mismatch"),
        "nan_keypoints": (bad("nan_keypoints", client_keypoints=nan_points), "bad_client_keypoints"),
        "off_frame_keypoints": (bad("off_frame_keypoints", client_keypoints=off_frame), "bad_client_keypoints"),
        "future_capture_time": (bad("future_capture_time", capture_time_unix_us=hour_ahead), "future_capture_time"),
        "missing_capture_time": (bad("missing_capture_time", capture_time_unix_us=0), "missing_capture_time"),
        "image_too_large": (
            bad("image_too_large", image=photo + b"\0" * (stack.max_image_bytes - len(photo) + 1)),
            "image_too_large",
        ),
        "unsupported_format": (bad("unsupported_format", format=IMAGE_FORMAT_UNSPECIFIED), "unsupported_format"),
        "unknown_item": (bad("unknown_item", item_id="no-such-item"), "unknown_item"),
        "missing_token": (bad("missing_token", session_token=""), "missing_token"),
        "forged_token": (
            bad("forged_token", session_token=tokens.mint(b"guessed-key-0123456789", key("forged_token"), 600)),
            "invalid_token",
        ),
        "foreign_token": (bad("foreign_token", session_token=tokens.mint(secret, key("good"), 600)), "foreign_token"),
        "expired_token": (
            bad("expired_token", session_token=tokens.mint(secret, key("expired_token"), -1)),
            "expired_token",
        ),
        "no_consent": (
            bad("no_consent", session_token=tokens.mint(secret, key("no_consent"), 600, consent=False)),
            "no_consent",
        ),
    }
    # Every reason validate() and the worker can give a frame is covered here.
    assert {reason for _, reason in cases.values()} == FRAME_REASONS
    good_session = key("good")
    good = frame(good_session, photo, 1000, 667, sequence=1)
    records = [(key(kind).encode(), value) for kind, (value, _) in cases.items()]
    produce(stack, stack.frames_topic, [*records, (good_session.encode(), good.SerializeToString())])
    produce(stack, stack.control_topic, [(key("control").encode(), b"\xff not a SessionControl")])

    letters = consume(
        stack, stack.dead_letter_topic, lambda m: (m.key() or b"").startswith(run.encode()), count=len(cases) + 1
    )
    by_key = {m.key().decode(): DeadLetter.FromString(m.value()) for m in letters}
    for kind, (value, reason) in cases.items():
        letter = by_key.get(key(kind))
        assert letter is not None, f"no dead letter for {kind}"
        assert letter.reason == reason, f"{kind}: {letter.reason} ({letter.detail})"
        assert letter.detail
        # The original record, unchanged; nothing of a frame the shopper did not consent to.
        assert letter.value == (b"" if reason == "no_consent" else value or b"")
        assert letter.source_topic == stack.frames_topic
    assert by_key[key("control")].source_topic == stack.control_topic

    rendered = consume(stack, stack.rendered_topic, lambda m: m.key() == good_session.encode(), count=1)
    shown = RenderedFrame.FromString(rendered[0].value())
    assert len(shown.keypoints) == 33
    # Served at normal latency although it queued behind every bad record: within the product's 2 s frame budget.
    assert shown.rendered_time_unix_us - shown.capture_time_unix_us < 2_000_000
    decoded = cv2.imdecode(np.frombuffer(RenderedFrame.FromString(rendered[0].value()).image, np.uint8), 1)
    assert decoded is not None and decoded.shape[:2] == (667, 1000)

    with urllib.request.urlopen(f"http://127.0.0.1:{stack.worker_web_port}/livez", timeout=5) as resp:
        assert json.load(resp)["status"] == "alive"
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.worker_web_port}/metrics", timeout=5) as resp:
        metrics = resp.read().decode()
    assert 'vto_dead_letters_total{reason="corrupt_image"}' in metrics
    assert 'vto_dead_letters_total{reason="key_mismatch"}' in metrics
