"""Property tests of every decoder on the ingest path: whatever bytes or field values a client sends, the worker
either accepts a frame that keeps the invariants the later stages rely on, or refuses it with BadInput (a
dead letter with a reason); control records become events or dead letters; catalogue entries become items or
listed problems. Nothing else may escape. Bounded and derandomized, so CI runs the same examples every time."""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from streams import tokens
from streams.errors import BadInput
from streams.imageheader import BadImage, image_size
from streams.metrics import Metrics
from streams.pipeline import FramePipeline, Record, validate
from streams.proto.vto.v1.common_pb2 import IMAGE_FORMAT_JPEG, IMAGE_FORMAT_PNG, Keypoint
from streams.proto.vto.v1.dead_letter_pb2 import DeadLetter
from streams.proto.vto.v1.frame_pb2 import Frame
from streams.proto.vto.v1.session_control_pb2 import SessionControl
from streams.proto.vto.v1.tryon_event_pb2 import TryOnEvent
from streams.settings import Settings
from streams.tryon.catalogue import item_problems

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
SETTINGS = Settings(max_image_bytes=4000, max_image_side=640, frame_max_age_s=2.0)
JPEG = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
PNG = cv2.imencode(".png", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
KEY = SETTINGS.session_key()
TOKEN = tokens.mint(KEY, "s1", ttl_s=3600)  # a valid token: the examples below reach the checks behind it

numbers = st.floats(allow_nan=True, allow_infinity=True, width=32)
keypoint = st.builds(Keypoint, x=numbers, y=numbers, visibility=numbers, presence=numbers)


def mutated(data: bytes) -> st.SearchStrategy[bytes]:
    """`data` cut short, with bytes flipped, or with junk appended: what a broken or hostile client sends."""
    cut = st.integers(0, len(data)).map(lambda n: data[:n])
    flip = st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)).map(
        lambda p: data[: p[0]] + bytes([p[1]]) + data[p[0] + 1 :]
    )
    junk = st.binary(max_size=64).map(lambda b: data + b)
    return st.one_of(st.just(data), cut, flip, junk)


images = st.one_of(
    mutated(JPEG),
    mutated(PNG),
    st.binary(max_size=256).map(lambda b: b"\xff\xd8\xff" + b),
    st.binary(max_size=256).map(lambda b: PNG[:8] + b),
    st.binary(max_size=64),
)


@FUZZ
@given(images)
def test_image_headers_give_a_size_or_a_reason(data: bytes) -> None:
    try:
        width, height = image_size(data)
    except BadImage as exc:
        assert str(exc)
        return
    assert 0 <= width < 2**32 and 0 <= height < 2**32


@FUZZ
@given(st.binary(max_size=512))
def test_any_record_value_is_a_frame_or_a_reason(value: bytes) -> None:
    try:
        validate(Record("vto.frames.v1", 0, 0, b"s1", value), SETTINGS, KEY)
    except BadInput as exc:
        assert exc.reason and exc.detail


@FUZZ
@given(
    image=images,
    fmt=st.sampled_from([IMAGE_FORMAT_JPEG, IMAGE_FORMAT_PNG, 0, 7]),
    width=st.integers(-5, 70_000),
    height=st.integers(-5, 70_000),
    ahead_s=st.floats(-10, 7200),
    points=st.lists(keypoint, max_size=40),
    token=st.one_of(st.just(TOKEN), mutated(TOKEN.encode()).map(lambda b: b.decode(errors="replace"))),
)
def test_an_accepted_frame_keeps_every_invariant_the_later_stages_rely_on(
    image: bytes, fmt: int, width: int, height: int, ahead_s: float, points: list[Keypoint], token: str
) -> None:
    frame = Frame(
        session_id="s1",
        sequence=1,
        capture_time_unix_us=int((time.time() + ahead_s) * 1e6),
        image=image,
        format=fmt,  # type: ignore[arg-type]
        width=max(width, 0),
        height=max(height, 0),
        client_keypoints=points,
        session_token=token,
    )
    try:
        got = validate(Record("vto.frames.v1", 0, 0, b"s1", frame.SerializeToString()), SETTINGS, KEY)
    except BadInput as exc:
        assert exc.reason
        return
    assert got.session_token == TOKEN  # any change to a signed token is refused
    assert image_size(got.image) == (got.width, got.height)  # Triton's decode gets what was declared
    assert 0 < got.width <= SETTINGS.max_image_side and 0 < got.height <= SETTINGS.max_image_side
    assert got.capture_time_unix_us / 1e6 - time.time() <= SETTINGS.max_clock_skew_s
    assert len(got.client_keypoints) in (0, 33)
    for k in got.client_keypoints:
        assert all(math.isfinite(v) for v in (k.x, k.y, k.visibility, k.presence))
        assert 0 <= k.x <= got.width and 0 <= k.y <= got.height


controls = st.builds(
    SessionControl,
    session_id=st.text(max_size=8),
    action=st.integers(-3, 9),
    item_id=st.text(max_size=8),
    height_cm=numbers,
    fit=st.integers(-2, 9),
    share_measurements=st.booleans(),
)


def signed(control: SessionControl) -> SessionControl:
    """Most controls carry a valid token for their session, so the checks behind it are reached too."""
    if control.share_measurements or control.session_id:
        control.session_token = tokens.mint(KEY, control.session_id, ttl_s=3600)
    return control


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=256).map(lambda b: (b"s1", b)),
        controls.map(signed).map(lambda c: (c.session_id.encode(), c.SerializeToString())),
    )
)
def test_a_control_record_is_an_event_a_profile_or_a_dead_letter(keyed: tuple[bytes, bytes]) -> None:
    key, value = keyed
    pipeline = FramePipeline(SETTINGS, tryon=None, metrics=Metrics(CollectorRegistry()), worker_id="fuzz")  # type: ignore[arg-type]
    out = pipeline.handle_control(Record("vto.session-control.v1", 0, 0, key, value))
    if out.dead_letters:
        assert out.events == [] and out.states == [] and DeadLetter.FromString(out.dead_letters[0][1]).reason
        return
    control = SessionControl.FromString(value)
    if control.action == SessionControl.ACTION_SET_FIT_PROFILE:
        assert out.events == [] and len(out.states) == 1  # a profile change is state, not analytics
        return
    assert [TryOnEvent.FromString(v).type for _, _, v in out.events] != [TryOnEvent.TYPE_UNSPECIFIED]
    assert len(out.events) == 1 and len(out.states) == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=6),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)
item_json = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values,
        "category": st.sampled_from(["top", "glasses", "hat", "lipstick", "shoes", "ring", "nope"]) | json_values,
        "name": json_values,
        "image": st.just("item.png") | json_values,
        "anchors": json_values,
        "size_mm": json_values,
        "size_chart": json_values
        | st.just({"S": {"chest": [86, 94]}, "M": {"chest": [94, "x"]}})
        | st.just({"S": {"chest": [94, 86]}}),
        "params": json_values,
        "license": json_values,
        "source": json_values,
    },
)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.one_of(item_json.map(json.dumps), st.text(max_size=40)))
def test_a_catalogue_entry_is_an_item_or_a_list_of_problems(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "fuzz-item"
        folder.mkdir()
        (folder / "item.json").write_text(text)
        cv2.imwrite(str(folder / "item.png"), np.zeros((8, 8, 4), np.uint8))
        item, problems = item_problems(folder)
        assert (item is None) == bool(problems) or item is None
        for problem in problems:
            assert str(problem)
