"""The frame journey with a fake Triton: validation, dead letters, drops, events, ordering, accounting."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import cv2
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from streams import tokens, tracing
from streams.errors import BadInput, InferenceUnavailable
from streams.inference import TryOnRequest, TryOnResult
from streams.logs import JsonFormatter
from streams.metrics import Metrics
from streams.pipeline import FramePipeline, Outputs, Record, validate
from streams.pipeline import SessionState as WorkerSessionState
from streams.proto.vto.v1.common_pb2 import IMAGE_FORMAT_JPEG, IMAGE_FORMAT_PNG, IMAGE_FORMAT_UNSPECIFIED, Keypoint
from streams.proto.vto.v1.dead_letter_pb2 import DeadLetter
from streams.proto.vto.v1.fit_advice_pb2 import FitAdvice, FitMeasurement, FitPreference
from streams.proto.vto.v1.frame_outcome_pb2 import FrameOutcome
from streams.proto.vto.v1.frame_pb2 import Frame
from streams.proto.vto.v1.perception_pb2 import POSE_SOURCE_TRACKING, Perception
from streams.proto.vto.v1.rendered_frame_pb2 import RenderedFrame
from streams.proto.vto.v1.session_control_pb2 import SessionControl
from streams.proto.vto.v1.session_state_pb2 import SessionState
from streams.proto.vto.v1.tryon_event_pb2 import TryOnEvent
from streams.settings import Settings

JPEG = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()  # a whole 64x48 JPEG
PNG = cv2.imencode(".png", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
# A 16000 x 16000 canvas in a few hundred bytes: the header must refuse it before any decoder allocates it.
PNG_BOMB = PNG[:16] + (16000).to_bytes(4, "big") * 2 + PNG[24:]
SETTINGS = Settings(max_image_bytes=1000, max_image_side=640, frame_max_age_s=2.0)


def frame(session: str = "s1", seq: int = 0, **overrides: object) -> Frame:
    fields: dict[str, object] = dict(
        session_id=session,
        sequence=seq,
        capture_time_unix_us=time.time_ns() // 1000,
        image=JPEG,
        format=IMAGE_FORMAT_JPEG,
        width=64,
        height=48,
        item_id="tee",
    )
    fields.update(overrides)
    fields.setdefault("session_token", tokens.mint(SETTINGS.session_key(), str(fields["session_id"]), ttl_s=600))
    return Frame(**fields)  # type: ignore[arg-type]


def record(
    value: bytes | None, key: bytes | None = b"s1", offset: int = 0, partition: int = 0, traceparent: str = ""
) -> Record:
    headers = (("traceparent", traceparent.encode()),) if traceparent else ()
    return Record("vto.frames.v1", partition, offset, key, value, headers)


class FakeTryOn:
    """Answers like the tryon model: a pose unless told otherwise. Its 'tracking state' counts the frames of a
    session (the state it was handed + 1), so tests can see which state each request carried."""

    def __init__(
        self,
        score: float = 0.99,
        fail: Exception | None = None,
        size: tuple[int, int] = (64, 48),
        advice: list[FitAdvice] | None = None,
    ) -> None:
        self.score, self.fail, self.size = score, fail, size
        self.advice = advice or []  # the size advice of each successive frame (none once used up)
        self.calls = 0
        self.requests: list[TryOnRequest] = []

    async def infer(self, request: TryOnRequest) -> TryOnResult:
        self.calls += 1
        self.requests.append(request)
        await asyncio.sleep(0)
        if self.fail is not None:
            raise self.fail
        kps = np.tile(np.array([[10.0, 20.0, 0.9, 0.95]], np.float32), (33, 1))
        state = str(int(request.state or b"0") + 1).encode()
        perception = Perception(pose_source=POSE_SOURCE_TRACKING).SerializeToString()
        advice = self.advice.pop(0).SerializeToString() if self.advice else b""
        return TryOnResult(
            kps,
            self.score,
            self.size[0],
            self.size[1],
            b"\xff\xd8rendered",
            {"pose_landmark": 0.01},
            perception,
            state,
            advice,
        )


def make(tryon: FakeTryOn, settings: Settings = SETTINGS) -> tuple[FramePipeline, Metrics]:
    metrics = Metrics(CollectorRegistry())
    return FramePipeline(settings, tryon, metrics, "worker-test"), metrics


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [
        (b"\x0a\xff\xff garbage", b"s1", "undecodable"),
        (None, b"s1", "undecodable"),
        (frame(session="").SerializeToString(), b"", "missing_session_id"),
        (frame().SerializeToString(), b"other-session", "key_mismatch"),
        (frame(capture_time_unix_us=0).SerializeToString(), b"s1", "missing_capture_time"),
        (frame(image=b"").SerializeToString(), b"s1", "empty_image"),
        (frame(image=JPEG + b"\0" * 1000).SerializeToString(), b"s1", "image_too_large"),
        (frame(format=IMAGE_FORMAT_UNSPECIFIED).SerializeToString(), b"s1", "unsupported_format"),
        (frame(format=IMAGE_FORMAT_PNG).SerializeToString(), b"s1", "format_mismatch"),
        (frame(width=0).SerializeToString(), b"s1", "bad_dimensions"),
        (frame(height=5000).SerializeToString(), b"s1", "bad_dimensions"),
        (frame(image=JPEG[: len(JPEG) // 2]).SerializeToString(), b"s1", "corrupt_image"),  # truncated
        (frame(image=JPEG[:3] + bytes(range(256))).SerializeToString(), b"s1", "corrupt_image"),  # JPEG-looking
        (frame(image=PNG[:-12], format=IMAGE_FORMAT_PNG).SerializeToString(), b"s1", "corrupt_image"),
        (frame(image=PNG_BOMB, format=IMAGE_FORMAT_PNG).SerializeToString(), b"s1", "dimension_mismatch"),
        (frame(width=32).SerializeToString(), b"s1", "dimension_mismatch"),  # declared size is not the image's
        (
            frame(capture_time_unix_us=time.time_ns() // 1000 + 3600 * 1_000_000).SerializeToString(),
            b"s1",
            "future_capture_time",
        ),
        (frame(client_keypoints=[Keypoint()] * 5).SerializeToString(), b"s1", "bad_client_keypoints"),
        (frame(reply_partition=8).SerializeToString(), b"s1", "bad_reply_partition"),  # 8 partitions: 0..7
        (frame(reply_partition=-1).SerializeToString(), b"s1", "bad_reply_partition"),
        (
            frame(client_keypoints=[Keypoint(x=float("nan"), y=2)] * 33).SerializeToString(),
            b"s1",
            "bad_client_keypoints",
        ),
        (
            frame(client_keypoints=[Keypoint(x=1, y=2)] * 32 + [Keypoint(x=65, y=2)]).SerializeToString(),
            b"s1",
            "bad_client_keypoints",
        ),
        (frame(client_keypoints=[Keypoint(x=1, y=-1)] * 33).SerializeToString(), b"s1", "bad_client_keypoints"),
        (
            frame(client_keypoints=[Keypoint(x=1, y=2, visibility=1.5)] * 33).SerializeToString(),
            b"s1",
            "bad_client_keypoints",
        ),
    ],
)
def test_validate_rejects_each_kind_of_bad_frame(value: bytes | None, key: bytes, reason: str) -> None:
    with pytest.raises(BadInput) as info:
        validate(record(value, key), SETTINGS, SETTINGS.session_key())
    assert info.value.reason == reason
    assert info.value.detail


def test_validate_accepts_a_good_frame_with_client_keypoints() -> None:
    good = frame(client_keypoints=[Keypoint(x=1, y=2)] * 33)
    assert validate(record(good.SerializeToString()), SETTINGS, SETTINGS.session_key()) == good


async def test_bad_records_go_to_dead_letters_and_good_ones_still_render() -> None:
    pipeline, metrics = make(FakeTryOn())
    records = [record(b"junk", offset=0), record(frame(seq=1).SerializeToString(), offset=1)]
    out = await pipeline.handle_frames(records)
    assert len(out.rendered) == 1
    [(key, value)] = out.dead_letters
    letter = DeadLetter.FromString(value)
    assert (letter.reason, letter.offset, letter.value, key) == ("undecodable", 0, b"junk", b"s1")
    assert letter.worker_id == "worker-test"
    assert sample(metrics, "vto_dead_letters_total", reason="undecodable") == 1
    assert sample(metrics, "vto_frames_total", outcome="rendered") == 1


CLIENT_TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_the_clients_trace_goes_on_with_the_rendered_frame_its_outcome_and_a_dead_letter() -> None:
    pipeline, _ = make(FakeTryOn())
    good = record(frame(seq=1).SerializeToString(), offset=1, traceparent=CLIENT_TRACE)
    out = await pipeline.handle_frames([record(b"junk", offset=0, traceparent=CLIENT_TRACE), good])
    rendered, outcome, letter = (
        out.traces[("rendered", 0)],
        out.traces[("outcomes", 1)],
        out.traces[("dead_letters", 0)],
    )
    assert {tracing.trace_id(t) for t in (rendered, outcome, letter)} == {"4bf92f3577b34da6a3ce929d0e0e4736"}
    assert rendered == outcome == good.traceparent() and letter != rendered  # one span per frames record
    assert len(out.captured) == 1  # its capture time, for the end-to-end latency once it is sent


async def test_a_frame_without_trace_context_still_gets_one() -> None:
    pipeline, _ = make(FakeTryOn())
    out = await pipeline.handle_frames([record(frame().SerializeToString())])
    assert tracing.parse(out.traces[("rendered", 0)]) is not None


async def test_log_lines_about_a_frame_carry_its_session_sequence_and_trace(caplog: pytest.LogCaptureFixture) -> None:
    pipeline, _ = make(FakeTryOn(fail=InferenceUnavailable("tryon: UNAVAILABLE")))
    with caplog.at_level(logging.WARNING, logger="streams.pipeline"):
        await pipeline.handle_frames([record(b"junk", key=b"s9", traceparent=CLIENT_TRACE)])
        await pipeline.handle_frames([record(frame(seq=4).SerializeToString(), offset=1, traceparent=CLIENT_TRACE)])
    lines = [json.loads(JsonFormatter("w1").format(r)) for r in caplog.records]
    assert [(line["session_id"], line.get("seq"), line["trace_id"]) for line in lines] == [
        ("s9", None, "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("s1", 4, "4bf92f3577b34da6a3ce929d0e0e4736"),
    ]
    assert all(line["worker_id"] == "w1" and line["level"] in ("warning", "error") for line in lines)


async def test_a_browser_sessions_frames_and_notices_go_to_its_gateways_partition_only() -> None:
    pipeline, _ = make(FakeTryOn())
    out = await pipeline.handle_frames([record(frame(seq=1, reply_partition=3).SerializeToString(), offset=1)])
    assert out.rendered == [] and [(p, k) for p, k, _ in out.replies] == [(3, b"s1")]
    assert RenderedFrame.FromString(out.replies[0][2]).sequence == 1 and ("replies", 0) in out.traces
    refused, _ = make(FakeTryOn(fail=InferenceUnavailable("tryon: UNAVAILABLE")))
    notice = await refused.handle_frames([record(frame(seq=2, reply_partition=5).SerializeToString())])
    assert notice.rendered == [] and [(p, k) for p, k, _ in notice.replies] == [(5, b"s1")]
    plain = await pipeline.handle_frames([record(frame(seq=3).SerializeToString(), offset=2)])
    assert plain.replies == [] and len(plain.rendered) == 1


async def test_rendered_frame_carries_ids_keypoints_and_stage_timings() -> None:
    pipeline, _ = make(FakeTryOn())
    f = frame(seq=7, camera_id="front")
    out = await pipeline.handle_frames([record(f.SerializeToString())])
    [(key, value)] = out.rendered
    rendered = RenderedFrame.FromString(value)
    assert key == b"s1"
    assert (rendered.session_id, rendered.sequence, rendered.camera_id, rendered.item_id) == ("s1", 7, "front", "tee")
    assert rendered.capture_time_unix_us == f.capture_time_unix_us
    assert len(rendered.keypoints) == 33 and rendered.keypoints[0].x == pytest.approx(10.0)
    assert rendered.image == b"\xff\xd8rendered"
    assert set(rendered.stage_seconds) == {"infer", "pose_landmark"}


async def test_try_on_event_once_per_item_and_pose_transitions() -> None:
    tryon = FakeTryOn()
    pipeline, _ = make(tryon)

    async def run(seq: int) -> list[int]:
        out = await pipeline.handle_frames([record(frame(seq=seq).SerializeToString(), offset=seq)])
        return [TryOnEvent.FromString(v).type for _, _, v in out.events]

    assert await run(0) == [TryOnEvent.TYPE_TRY_ON_RENDERED]
    assert await run(1) == []
    tryon.score = 0.1
    assert await run(2) == [TryOnEvent.TYPE_POSE_LOST]
    tryon.score = 0.9
    assert await run(3) == [TryOnEvent.TYPE_POSE_FOUND]


async def test_frame_without_a_person_is_still_returned_without_keypoints() -> None:
    pipeline, metrics = make(FakeTryOn(score=0.2))
    out = await pipeline.handle_frames([record(frame().SerializeToString())])
    assert len(RenderedFrame.FromString(out.rendered[0][1]).keypoints) == 0
    assert sample(metrics, "vto_frames_total", outcome="no_pose") == 1


async def test_stale_frames_are_dropped_and_counted_not_inferred() -> None:
    tryon = FakeTryOn()
    pipeline, metrics = make(tryon)
    old = frame(capture_time_unix_us=time.time_ns() // 1000 - 5_000_000)
    out = await pipeline.handle_frames([record(old.SerializeToString())])
    assert (out.rendered, out.dead_letters, tryon.calls) == ([], [], 0)
    assert sample(metrics, "vto_frames_dropped_total", reason="stale") == 1


async def test_triton_unavailable_drops_the_frame_and_tells_the_shopper_without_dead_lettering_it() -> None:
    pipeline, metrics = make(FakeTryOn(fail=InferenceUnavailable("tryon: UNAVAILABLE")))
    out = await pipeline.handle_frames([record(frame(seq=i).SerializeToString(), offset=i) for i in range(3)])
    assert out.dead_letters == []
    [notice] = [RenderedFrame.FromString(v) for _, v in out.rendered]  # one a second, not one per frame
    assert notice.status == RenderedFrame.STATUS_DEGRADED and not notice.image and notice.status_detail
    assert sample(metrics, "vto_frames_dropped_total", reason="inference_unavailable") == 3


async def test_image_triton_cannot_decode_is_dead_lettered() -> None:
    pipeline, _ = make(FakeTryOn(fail=BadInput("corrupt_image", "bytes do not decode")))
    out = await pipeline.handle_frames([record(frame().SerializeToString())])
    assert DeadLetter.FromString(out.dead_letters[0][1]).reason == "corrupt_image"


async def test_declared_size_must_match_the_image() -> None:
    pipeline, _ = make(FakeTryOn(size=(640, 480)))
    out = await pipeline.handle_frames([record(frame().SerializeToString())])
    assert DeadLetter.FromString(out.dead_letters[0][1]).reason == "dimension_mismatch"


class UnevenTryOn(FakeTryOn):
    """Session "a" takes 20 ms a frame, "b" none: inferred concurrently, b's frames finish first."""

    def __init__(self) -> None:
        super().__init__()
        self.finished: list[tuple[str, int]] = []

    async def infer(self, request: TryOnRequest) -> TryOnResult:
        slow = request.item_id == "slow"
        await asyncio.sleep(0.02 if slow else 0.0)
        result = await super().infer(request)
        self.finished.append(("a" if slow else "b", len(self.finished)))
        return result


async def test_each_sessions_frames_leave_in_order_while_inferred_concurrently() -> None:
    tryon = UnevenTryOn()
    pipeline, _ = make(tryon)
    frames = [frame(session=s, seq=i, item_id="slow" if s == "a" else "fast") for i in range(3) for s in ("a", "b")]
    records = [record(f.SerializeToString(), key=f.session_id.encode(), offset=n) for n, f in enumerate(frames)]
    out = await pipeline.handle_frames(records)
    assert [s for s, _ in tryon.finished][:3] == ["b", "b", "b"]  # concurrent: b finished before a's first ...
    order = [(RenderedFrame.FromString(v).session_id, RenderedFrame.FromString(v).sequence) for _, v in out.rendered]
    assert order == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]  # ... published in record order


async def test_overlapping_batches_keep_each_sessions_state_chain() -> None:
    """The worker takes the next batch while one is at Triton: a session in both waits for the earlier batch's
    outputs (its tracking state and its saved state), a session only in the later batch does not."""
    tryon = UnevenTryOn()
    pipeline, _ = make(tryon)
    first = [frame(session="a", seq=0, item_id="slow"), frame(session="a", seq=1, item_id="slow")]
    second = [frame(session="a", seq=2, item_id="slow"), frame(session="b", seq=0, item_id="fast")]
    batches = [
        [record(f.SerializeToString(), key=f.session_id.encode(), offset=n + 10 * b) for n, f in enumerate(frames)]
        for b, frames in enumerate((first, second))
    ]
    earlier = asyncio.ensure_future(pipeline.handle_frames(batches[0]))
    await asyncio.sleep(0)  # the first batch is at Triton
    later = asyncio.ensure_future(pipeline.handle_frames(batches[1]))
    out1, out2 = await asyncio.gather(earlier, later)
    assert tryon.finished[0][0] == "b"  # b did not wait for the earlier batch
    assert [r.state for r in tryon.requests if r.item_id == "slow"] == [b"", b"1", b"2"]  # a's chain, in order
    saved = [SessionState.FromString(v) for _, _, v in out1.states]
    assert [(s.perception, s.sequence) for s in saved] == [(b"2", 1)]  # what the earlier batch left, not the later's
    later = {s.session_id: s for s in (SessionState.FromString(v) for _, _, v in out2.states)}
    assert (later["a"].perception, later["a"].sequence) == (b"3", 2)  # the later batch continued a's chain
    assert [RenderedFrame.FromString(v).sequence for _, v in out2.rendered] == [2, 0]
    assert not pipeline.busy  # nothing left waiting


async def test_a_record_handled_by_an_overlapping_earlier_batch_is_dropped_as_replayed() -> None:
    tryon = UnevenTryOn()
    pipeline, metrics = make(tryon)
    again = frame(session="a", seq=0, item_id="slow").SerializeToString()
    earlier = asyncio.ensure_future(pipeline.handle_frames([record(again, key=b"a", offset=0)]))
    await asyncio.sleep(0)
    later = asyncio.ensure_future(pipeline.handle_frames([record(again, key=b"a", offset=1)]))
    out1, out2 = await asyncio.gather(earlier, later)
    assert len(out1.rendered) == 1 and not out2.rendered
    assert tryon.calls == 1
    assert sample(metrics, "vto_frames_dropped_total", reason="replayed") == 1


class GatedTryOn(FakeTryOn):
    """Answers only once the test opens the gate: what happens meanwhile happens during inference."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def infer(self, request: TryOnRequest) -> TryOnResult:
        await self.gate.wait()
        return await super().infer(request)


async def test_a_frame_behind_when_its_turn_comes_is_superseded_by_a_newer_one_already_taken() -> None:
    """Latest wins at the moment a frame would go to Triton: while its session's earlier frame was at Triton, a newer
    frame was taken into a later batch, and this one has queued past VTO_SUPERSEDE_AFTER_S."""
    settings = Settings(max_image_bytes=1000, max_image_side=640, frame_max_age_s=2.0, supersede_after_s=0.3)
    tryon = GatedTryOn()
    pipeline, metrics = make(tryon, settings)
    tasks = []
    for seq in range(3):
        f = frame(session="a", seq=seq)
        tasks.append(
            asyncio.ensure_future(pipeline.handle_frames([record(f.SerializeToString(), key=b"a", offset=seq)]))
        )
        await asyncio.sleep(0.01)  # frame 0 goes to Triton at once; 1 and 2 are taken while it is there
    await asyncio.sleep(0.35)  # frame 0 held at Triton past VTO_SUPERSEDE_AFTER_S: 1 and 2 are behind
    tryon.gate.set()
    outs = await asyncio.gather(*tasks)
    assert [[RenderedFrame.FromString(v).sequence for _, v in o.rendered] for o in outs] == [[0], [], [2]]
    assert sample(metrics, "vto_frames_dropped_total", reason="superseded") == 1
    assert [r.state for r in tryon.requests] == [b"", b"1"]  # frame 2 went on from frame 0's state
    assert not pipeline.busy and not pipeline.newest_taken


async def test_a_batch_whose_chain_fails_lets_go_of_its_sessions_only_after_every_chain_ended() -> None:
    """One session's inference raising (a bug, not a bad frame) fails the batch; the batch's other sessions are not
    left running after it let go of them."""

    class FailingForB(UnevenTryOn):
        async def infer(self, request: TryOnRequest) -> TryOnResult:
            if request.item_id == "fast":
                raise RuntimeError("a bug")
            return await super().infer(request)

    tryon = FailingForB()
    pipeline, _ = make(tryon)
    frames = [frame(session="a", seq=0, item_id="slow"), frame(session="b", seq=0, item_id="fast")]
    records = [record(f.SerializeToString(), key=f.session_id.encode(), offset=n) for n, f in enumerate(frames)]
    with pytest.raises(RuntimeError, match="a bug"):
        await pipeline.handle_frames(records)
    assert tryon.finished == [("a", 0)]  # a's slow frame had ended before the batch failed
    assert not pipeline.busy and not pipeline.newest_taken


def signed(control: SessionControl) -> SessionControl:
    control.session_token = tokens.mint(SETTINGS.session_key(), control.session_id, ttl_s=600)
    return control


def _control(action: int, session: str = "s1", item: str = "tee", partition: int = 0, **profile: object) -> Record:
    token = tokens.mint(SETTINGS.session_key(), session, ttl_s=600)
    msg = SessionControl(session_id=session, action=action, item_id=item, session_token=token, **profile)  # type: ignore[arg-type]
    return Record("vto.session-control.v1", partition, 0, session.encode(), msg.SerializeToString())


def test_session_control_becomes_analytics_events() -> None:
    pipeline, _ = make(FakeTryOn())
    types = [
        TryOnEvent.FromString(pipeline.handle_control(_control(action)).events[0][2]).type
        for action in (SessionControl.ACTION_START, SessionControl.ACTION_SELECT_ITEM, SessionControl.ACTION_END)
    ]
    assert types == [TryOnEvent.TYPE_SESSION_STARTED, TryOnEvent.TYPE_ITEM_SELECTED, TryOnEvent.TYPE_SESSION_ENDED]
    assert pipeline.sessions["s1"].ended_us  # kept a moment for frames the END overtook, then forgotten


async def test_dwell_cart_and_purchase_events_carry_their_event_times() -> None:
    pipeline, _ = make(FakeTryOn())
    base = time.time_ns() // 1000 - 1_000_000
    pipeline.handle_control(_control(SessionControl.ACTION_START, time_unix_us=base - 500_000))
    events: list[TryOnEvent] = []
    # Five frames 100 ms apart, then one after a 1.6 s pause (the pause is not dwell): 400 ms over six frames.
    for seq, offset_us in enumerate([0, 100_000, 200_000, 300_000, 400_000, 2_000_000]):
        f = frame(seq=seq, capture_time_unix_us=base + offset_us)
        out = await pipeline.handle_frames([record(f.SerializeToString(), offset=seq)])
        events += [TryOnEvent.FromString(v) for _, _, v in out.events if v]
    assert [(e.type, e.event_time_unix_us) for e in events] == [(TryOnEvent.TYPE_TRY_ON_RENDERED, base)]
    selected_at = base + 2_500_000
    out = pipeline.handle_control(_control(SessionControl.ACTION_SELECT_ITEM, item="dress", time_unix_us=selected_at))
    dwell, selected = (TryOnEvent.FromString(v) for _, _, v in out.events if v)
    assert (dwell.type, dwell.item_id, dwell.dwell_us, dwell.frames) == (TryOnEvent.TYPE_ITEM_DWELL, "tee", 400_000, 6)
    assert dwell.event_time_unix_us == selected.event_time_unix_us == selected_at
    cart = pipeline.handle_control(
        _control(SessionControl.ACTION_ADD_TO_CART, item="tee", size="M", time_unix_us=selected_at + 1)
    )
    buy = pipeline.handle_control(
        _control(SessionControl.ACTION_PURCHASE, item="tee", size="M", quantity=2, time_unix_us=selected_at + 2)
    )
    got = [TryOnEvent.FromString(o.events[0][2] or b"") for o in (cart, buy)]
    assert [(e.type, e.item_id, e.size, e.quantity, e.event_time_unix_us) for e in got] == [
        (TryOnEvent.TYPE_ADD_TO_CART, "tee", "M", 1, selected_at + 1),  # no quantity given: one
        (TryOnEvent.TYPE_PURCHASE, "tee", "M", 2, selected_at + 2),
    ]
    ended = pipeline.handle_control(_control(SessionControl.ACTION_END, time_unix_us=selected_at + 3))
    assert [TryOnEvent.FromString(v).type for _, _, v in ended.events if v] == [TryOnEvent.TYPE_SESSION_ENDED]
    keys = [k for o in (cart, buy, ended) for _, k, _ in o.events]
    assert keys == [b"s1/4", b"s1/5", b"s1/6"]  # STARTED, TRY_ON_RENDERED, ITEM_DWELL, ITEM_SELECTED before them


async def test_dwell_counts_stretches_with_a_pose_per_item_and_a_restart_ends_it() -> None:
    pipeline, _ = make(FakeTryOn())
    base = time.time_ns() // 1000 - 1_500_000
    pipeline.handle_control(_control(SessionControl.ACTION_START, time_unix_us=base - 1))
    tryon = pipeline.tryon
    events: list[TryOnEvent] = []
    # tee: 0, 100 ms (+100), no pose at 200 ms (not counted, ends the stretch), 300 ms (new stretch), 400 ms (+100);
    # then frames naming the dress switch the item: the tee's dwell goes out at the first dress frame.
    plan = [(0, "tee", 0.99), (100, "tee", 0.99), (200, "tee", 0.0), (300, "tee", 0.99), (400, "tee", 0.99)]
    plan += [(500, "dress", 0.99), (700, "dress", 0.99)]
    for seq, (offset_ms, item, score) in enumerate(plan):
        tryon.score = score  # type: ignore[attr-defined]
        f = frame(seq=seq, capture_time_unix_us=base + offset_ms * 1000, item_id=item)
        out = await pipeline.handle_frames([record(f.SerializeToString(), offset=seq)])
        events += [TryOnEvent.FromString(v) for _, _, v in out.events if v]
    dwell = [e for e in events if e.type == TryOnEvent.TYPE_ITEM_DWELL]
    assert [(e.item_id, e.dwell_us, e.frames, e.event_time_unix_us) for e in dwell] == [
        ("tee", 200_000, 4, base + 500_000)
    ]
    restart = pipeline.handle_control(_control(SessionControl.ACTION_START, time_unix_us=base + 800_000))
    ended = [TryOnEvent.FromString(v) for _, _, v in restart.events if v]
    first = ended[0]  # the restart's first event: the dress's dwell, then SESSION_STARTED
    assert (first.type, first.item_id, first.dwell_us, first.frames) == (
        TryOnEvent.TYPE_ITEM_DWELL,
        "dress",
        200_000,
        2,
    )
    assert ended[1].type == TryOnEvent.TYPE_SESSION_STARTED


@pytest.mark.parametrize(
    ("rec", "reason"),
    [
        (Record("vto.session-control.v1", 0, 3, b"k", b"\xff\xff"), "undecodable"),
        (_control(SessionControl.ACTION_START, session=""), "missing_session_id"),
        (_control(SessionControl.ACTION_UNSPECIFIED), "unknown_action"),
        (_control(42), "unknown_action"),
        (_control(SessionControl.ACTION_SET_FIT_PROFILE, height_cm=300.0), "bad_fit_profile"),
        (_control(SessionControl.ACTION_START, height_cm=40.0), "bad_fit_profile"),
        (_control(SessionControl.ACTION_SET_FIT_PROFILE, height_cm=float("nan")), "bad_fit_profile"),
        (_control(SessionControl.ACTION_SET_FIT_PROFILE, fit=9), "bad_fit_profile"),
        (_control(SessionControl.ACTION_ADD_TO_CART, item=""), "bad_commerce"),
        (_control(SessionControl.ACTION_PURCHASE, size="X" * 17), "bad_commerce"),
        (_control(SessionControl.ACTION_PURCHASE, quantity=5000), "bad_commerce"),
        (_control(SessionControl.ACTION_PURCHASE, time_unix_us=time.time_ns() // 1000 + 3_600_000_000), "future_time"),
    ],
)
def test_bad_session_control_is_dead_lettered(rec: Record, reason: str) -> None:
    pipeline, _ = make(FakeTryOn())
    out = pipeline.handle_control(rec)
    assert out.events == []
    assert DeadLetter.FromString(out.dead_letters[0][1]).reason == reason


async def test_client_keypoints_go_to_triton_so_the_pose_models_are_skipped() -> None:
    tryon = FakeTryOn()
    pipeline, _ = make(tryon)
    good = frame(client_keypoints=[Keypoint(x=float(i), y=2, visibility=0.9, presence=1) for i in range(33)])
    await pipeline.handle_frames([record(good.SerializeToString())])
    sent = tryon.requests[0].client_keypoints
    assert sent is not None and sent.shape == (33, 4) and sent[32].tolist() == pytest.approx([32.0, 2.0, 0.9, 1.0])
    await pipeline.handle_frames([record(frame(seq=1).SerializeToString())])
    assert tryon.requests[1].client_keypoints is None


async def test_each_frame_carries_the_state_its_predecessor_left_even_within_one_batch() -> None:
    tryon = FakeTryOn()
    pipeline, _ = make(tryon)
    frames = [frame(session=s, seq=i) for i in range(3) for s in ("a", "b")]
    records = [record(f.SerializeToString(), key=f.session_id.encode(), offset=n) for n, f in enumerate(frames)]
    await pipeline.handle_frames(records)
    assert sorted(r.state for r in tryon.requests) == [b"", b"", b"1", b"1", b"2", b"2"]
    assert pipeline.sessions["a"].perception == b"3" and pipeline.sessions["b"].perception == b"3"


async def test_batch_writes_each_touched_sessions_state_to_its_frames_partition() -> None:
    pipeline, _ = make(FakeTryOn())
    recs = [
        Record("vto.frames.v1", 4, 0, b"a", frame(session="a", seq=0).SerializeToString()),
        Record("vto.frames.v1", 4, 1, b"a", frame(session="a", seq=1).SerializeToString()),
        Record("vto.frames.v1", 2, 0, b"b", frame(session="b", seq=5).SerializeToString()),
    ]
    out = await pipeline.handle_frames(recs)
    assert [(p, k) for p, k, _ in out.states] == [(4, b"a"), (2, b"b")]
    state = SessionState.FromString(out.states[0][2] or b"")
    assert (state.session_id, state.sequence, state.perception, state.item_id) == ("a", 1, b"2", "tee")
    assert list(state.rendered_items) == ["tee"] and state.pose_found and state.pose_seen


async def test_a_restored_session_continues_its_tracking_and_sends_no_second_try_on_event() -> None:
    first, _ = make(FakeTryOn())
    out = await first.handle_frames([record(frame(seq=0).SerializeToString())])
    assert len(out.events) == 1  # TRY_ON_RENDERED
    tryon = FakeTryOn()
    second, metrics = make(tryon)  # another worker, assigned the partition after the first one died
    assert second.restore([(k, v) for _, k, v in out.states]) == 1
    out2 = await second.handle_frames([record(frame(seq=1).SerializeToString())])
    assert tryon.requests[0].state == b"1"  # the tracking state the first worker left
    assert out2.events == []
    assert sample(metrics, "vto_sessions_restored_total") == 1


async def test_tombstone_and_garbage_in_the_state_topic() -> None:
    pipeline, _ = make(FakeTryOn())
    good = SessionState(session_id="a", perception=b"7").SerializeToString()
    assert pipeline.restore([(b"a", good), (b"b", b"\xff\xff"), (b"c", good), (b"c", None)]) == 2
    assert set(pipeline.sessions) == {"a"} and pipeline.sessions["a"].perception == b"7"


async def test_a_start_handled_after_the_sessions_first_frames_does_not_wipe_their_tracking() -> None:
    pipeline, _ = make(FakeTryOn())
    started = time.time_ns() // 1000
    await pipeline.handle_frames([record(frame(capture_time_unix_us=started + 1000).SerializeToString())])
    late = signed(
        SessionControl(session_id="s1", action=SessionControl.ACTION_START, item_id="tee", time_unix_us=started)
    )
    pipeline.handle_control(Record("vto.session-control.v1", 0, 0, b"s1", late.SerializeToString()))
    assert pipeline.sessions["s1"].perception == b"1"  # the frame's tracking state survived the late START
    again = signed(SessionControl(session_id="s1", action=SessionControl.ACTION_START, time_unix_us=started + 5000))
    pipeline.handle_control(Record("vto.session-control.v1", 0, 1, b"s1", again.SerializeToString()))
    assert pipeline.sessions["s1"].perception == b""  # a START after the frames: a new session


def ended_stub(states: list[tuple[int, bytes, bytes | None]]) -> SessionState:
    """The one state record written, which must be an ended session's: no tracking, profile or measurements."""
    [(_, _, value)] = states
    assert value is not None
    stub = SessionState.FromString(value)
    kept = {f.name for f, _ in stub.ListFields()}
    assert stub.ended_unix_us and kept <= {
        "session_id",
        "item_id",
        "rendered_items",
        "events_sent",
        "ended_unix_us",
        "updated_unix_us",
    }
    return stub


def test_start_resets_tracking_and_end_leaves_only_what_erasure_needs() -> None:
    pipeline, _ = make(FakeTryOn())
    pipeline.sessions["s1"] = WorkerSessionState(perception=b"9")
    out = pipeline.handle_control(
        _control(
            SessionControl.ACTION_START,
            height_cm=170.0,
            fit=FitPreference.FIT_PREFERENCE_LOOSE,
            share_measurements=True,
        )
    )
    assert pipeline.sessions["s1"].perception == b""
    assert [(p, k) for p, k, _ in out.states] == [(0, b"s1")]
    out = pipeline.handle_control(_control(SessionControl.ACTION_END))
    assert ended_stub(out.states).events_sent == 2  # STARTED, ENDED


async def test_a_frame_already_in_the_restored_state_is_dropped_as_replayed_not_rendered_twice() -> None:
    first, _ = make(FakeTryOn())
    frames = [frame(seq=i, capture_time_unix_us=time.time_ns() // 1000 + i) for i in range(3)]
    out = await first.handle_frames([record(f.SerializeToString(), offset=i) for i, f in enumerate(frames)])
    tryon = FakeTryOn()
    second, metrics = make(tryon)
    second.restore([(k, v) for _, k, v in out.states])
    # The offsets were never committed: the new owner is handed frames 1 and 2 again, then a new frame 3.
    later = frame(seq=3, capture_time_unix_us=frames[2].capture_time_unix_us + 1)
    replay = [record(f.SerializeToString(), offset=i) for i, f in enumerate([frames[1], frames[2], later])]
    out2 = await second.handle_frames(replay)
    assert [RenderedFrame.FromString(v).sequence for _, v in out2.rendered] == [3]
    assert sample(metrics, "vto_frames_dropped_total", reason="replayed") == 2


class FakeCatalogue:
    def __init__(self, items: dict[str, str], sized: set[str] | None = None) -> None:
        self.items = items
        self.with_chart = sized or set()

    def category(self, item_id: str) -> str | None:
        return self.items.get(item_id)

    def sized(self, item_id: str) -> bool:
        return item_id in self.with_chart


def with_catalogue(
    tryon: FakeTryOn, settings: Settings = SETTINGS, sized: set[str] | None = None
) -> tuple[FramePipeline, Metrics]:
    metrics = Metrics(CollectorRegistry())
    catalogue = FakeCatalogue({"tee": "top", "specs": "glasses", "band": "ring", "sized-tee": "top"}, sized)
    return FramePipeline(settings, tryon, metrics, "worker-test", catalogue), metrics


async def test_unknown_item_on_a_frame_is_dead_lettered_and_known_ones_render() -> None:
    tryon = FakeTryOn()
    pipeline, metrics = with_catalogue(tryon)
    records = [record(frame(item_id="nope").SerializeToString(), offset=0), record(frame(seq=1).SerializeToString())]
    out = await pipeline.handle_frames(records)
    assert DeadLetter.FromString(out.dead_letters[0][1]).reason == "unknown_item"
    assert [r.item_id for r in tryon.requests] == ["tee"]
    assert sample(metrics, "vto_dead_letters_total", reason="unknown_item") == 1


def test_selecting_an_unknown_item_is_dead_lettered() -> None:
    pipeline, _ = with_catalogue(FakeTryOn())
    out = pipeline.handle_control(_control(SessionControl.ACTION_SELECT_ITEM, item="nope"))
    assert out.events == [] and DeadLetter.FromString(out.dead_letters[0][1]).reason == "unknown_item"


async def test_triton_is_asked_for_what_the_items_category_needs() -> None:
    tryon = FakeTryOn()
    pipeline, _ = with_catalogue(tryon, Settings(max_image_bytes=1000, max_image_side=640, perception=""))
    pipeline.handle_control(_control(SessionControl.ACTION_START, item="specs"))
    await pipeline.handle_frames([record(frame(item_id="").SerializeToString())])  # the session's item: glasses
    await pipeline.handle_frames([record(frame(seq=1, item_id="band").SerializeToString())])  # a ring
    await pipeline.handle_frames([record(frame(seq=2, item_id="tee").SerializeToString())])  # a top
    asked = [(r.item_id, r.face, r.hands, r.mask) for r in tryon.requests]
    assert asked == [("specs", True, False, False), ("band", False, True, False), ("tee", False, False, True)]


async def test_operator_perception_is_added_to_what_the_item_needs() -> None:
    tryon = FakeTryOn()
    pipeline, _ = with_catalogue(tryon, Settings(max_image_bytes=1000, max_image_side=640, perception="mask"))
    await pipeline.handle_frames([record(frame(item_id="specs").SerializeToString())])  # glasses need the face
    await pipeline.handle_frames([record(frame(seq=1, item_id="").SerializeToString())])  # still wearing them
    assert [(r.face, r.hands, r.mask) for r in tryon.requests] == [(True, False, True), (True, False, True)]


def test_every_category_asks_for_the_perception_its_renderer_reads() -> None:
    from streams.tryon.catalogue import CATEGORIES
    from streams.tryon.categories import FEATURES

    assert set(FEATURES) == set(CATEGORIES)
    needs = {"face": {"glasses", "hat", "earrings", "necklace", "lipstick"}, "hands": {"ring", "watch"}}
    needs["mask"] = {"top", "dress"}
    for feature, categories in needs.items():
        assert {c for c, f in FEATURES.items() if feature in f} == categories, feature


async def test_an_item_with_a_size_chart_also_asks_for_what_size_advice_needs() -> None:
    tryon = FakeTryOn()
    pipeline, _ = with_catalogue(tryon, Settings(perception=""), sized={"sized-tee"})
    await pipeline.handle_frames([record(frame(item_id="tee").SerializeToString())])
    await pipeline.handle_frames([record(frame(seq=1, item_id="sized-tee").SerializeToString())])
    # A top's renderer needs the mask; its size advice also the face (the iris scale when no height is given).
    assert [(r.face, r.hands, r.mask) for r in tryon.requests] == [(False, False, True), (True, False, True)]


async def test_the_shoppers_fit_profile_goes_to_triton_and_survives_a_takeover() -> None:
    tryon = FakeTryOn()
    pipeline, _ = make(tryon)
    pipeline.handle_control(_control(SessionControl.ACTION_START, height_cm=172.0))
    await pipeline.handle_frames([record(frame(seq=0).SerializeToString())])
    assert (tryon.requests[0].height_cm, tryon.requests[0].fit) == (pytest.approx(172.0), 0)  # from START
    out = pipeline.handle_control(
        _control(
            SessionControl.ACTION_SET_FIT_PROFILE,
            height_cm=181.5,
            fit=FitPreference.FIT_PREFERENCE_LOOSE,
            share_measurements=True,
        )
    )
    assert out.dead_letters == [] and out.events == []
    await pipeline.handle_frames([record(frame(seq=1).SerializeToString())])
    sent = tryon.requests[1]
    assert (sent.height_cm, sent.fit) == (pytest.approx(181.5), FitPreference.FIT_PREFERENCE_LOOSE)
    tryon2 = FakeTryOn()
    second, _ = make(tryon2)
    second.restore([(k, v) for _, k, v in out.states])
    await second.handle_frames([record(frame(seq=2).SerializeToString())])
    assert (tryon2.requests[0].height_cm, tryon2.requests[0].fit) == (pytest.approx(181.5), 2)
    assert second.sessions["s1"].share_measurements


def test_plausible_fit_profiles_are_taken_and_a_refused_start_changes_nothing() -> None:
    pipeline, _ = make(FakeTryOn())
    for height in (80.0, 250.0, 0.0):
        out = pipeline.handle_control(_control(SessionControl.ACTION_SET_FIT_PROFILE, height_cm=height))
        assert out.dead_letters == [] and pipeline.sessions["s1"].height_cm == pytest.approx(height)
    pipeline.sessions["s1"].perception = b"7"
    out = pipeline.handle_control(_control(SessionControl.ACTION_START, height_cm=300.0))
    assert DeadLetter.FromString(out.dead_letters[0][1]).reason == "bad_fit_profile" and out.states == []
    assert pipeline.sessions["s1"].perception == b"7"  # the refused START did not reset the session
    # END is not about the profile: a junk height on it still ends the session.
    out = pipeline.handle_control(_control(SessionControl.ACTION_END, height_cm=-5.0))
    assert out.dead_letters == [] and ended_stub(out.states)


def _advice(size: str, confidence: float, runner_up: str = "") -> FitAdvice:
    return FitAdvice(
        item_id="tee",
        size=size,
        runner_up=runner_up,
        confidence=confidence,
        reasons=[f"chest 96-101 cm -> {size}"],
        measurements={"chest": FitMeasurement(value_cm=98.5, spread_cm=2.5, confidence=0.8)},
    )


async def test_size_advice_reaches_the_shopper_on_every_frame_and_analytics_when_it_changes() -> None:
    steps = [_advice("M", 0.30), _advice("M", 0.35), _advice("M", 0.45), _advice("L", 0.46, "M"), _advice("L", 0.5)]
    tryon = FakeTryOn(advice=steps)
    pipeline, _ = make(tryon)
    pipeline.handle_control(_control(SessionControl.ACTION_START))
    records = [record(frame(seq=i).SerializeToString(), offset=i) for i in range(6)]
    out = await pipeline.handle_frames(records)
    shown = [RenderedFrame.FromString(v) for _, v in out.rendered]
    assert [(f.fit_advice.size, f.HasField("fit_advice")) for f in shown] == [
        ("M", True),
        ("M", True),
        ("M", True),
        ("L", True),
        ("L", True),
        ("", False),
    ]
    assert shown[0].fit_advice.measurements["chest"].value_cm == pytest.approx(98.5)  # the shopper's own
    events = [TryOnEvent.FromString(v) for _, _, v in out.events]
    advice = [e.fit_advice for e in events if e.type == TryOnEvent.TYPE_FIT_ADVICE]
    # M 0.30 first; 0.35 is within 0.1 of it; 0.45 is not; then L (another size and a runner-up); L 0.5 drops M.
    assert [(a.size, a.runner_up, round(a.confidence, 2)) for a in advice] == [
        ("M", "", 0.3),
        ("M", "", 0.45),
        ("L", "M", 0.46),
        ("L", "", 0.5),
    ]
    # No consent: analytics get the size and the confidence, not the shopper's body or the reasons naming it.
    assert all(not a.measurements and not a.reasons for a in advice)
    fit_events = [e for e in events if e.type == TryOnEvent.TYPE_FIT_ADVICE]
    assert [e.sequence for e in fit_events] == [0, 2, 3, 4] and all(e.capture_time_unix_us for e in fit_events)


async def test_measurements_go_to_analytics_only_with_consent() -> None:
    tryon = FakeTryOn(advice=[_advice("M", 0.6)])
    pipeline, _ = make(tryon)
    pipeline.handle_control(_control(SessionControl.ACTION_START, share_measurements=True))
    out = await pipeline.handle_frames([record(frame().SerializeToString())])
    (advice,) = [
        TryOnEvent.FromString(v).fit_advice for _, _, v in out.events if TryOnEvent.FromString(v).fit_advice.size
    ]
    assert advice.measurements["chest"].value_cm == pytest.approx(98.5) and list(advice.reasons)


async def test_consent_given_mid_session_sends_the_measurements_without_waiting_for_a_new_size() -> None:
    tryon = FakeTryOn(advice=[_advice("M", 0.6), _advice("M", 0.61)])
    pipeline, _ = make(tryon)
    out = await pipeline.handle_frames([record(frame().SerializeToString())])
    pipeline.handle_control(_control(SessionControl.ACTION_SET_FIT_PROFILE, share_measurements=True))
    out2 = await pipeline.handle_frames([record(frame(seq=1).SerializeToString())])
    first = [TryOnEvent.FromString(v).fit_advice for _, _, v in out.events if TryOnEvent.FromString(v).fit_advice.size]
    second = [TryOnEvent.FromString(v).fit_advice for _, _, v in out2.events]
    assert not first[0].measurements and second[0].measurements["chest"].value_cm == pytest.approx(98.5)


async def test_a_restored_session_does_not_repeat_the_advice_event() -> None:
    first, _ = make(FakeTryOn(advice=[_advice("M", 0.6)]))
    out = await first.handle_frames([record(frame().SerializeToString())])
    second, _ = make(FakeTryOn(advice=[_advice("M", 0.62)]))
    second.restore([(k, v) for _, k, v in out.states])
    out2 = await second.handle_frames([record(frame(seq=1).SerializeToString())])
    assert [TryOnEvent.FromString(v).type for _, _, v in out2.events] == []


async def test_frames_the_end_overtook_are_rendered_without_reopening_the_session() -> None:
    # END and frames travel on separate topics: the END can overtake the session's last queued frames.
    tryon = FakeTryOn()
    pipeline, metrics = make(tryon)
    started = time.time_ns() // 1000
    await pipeline.handle_frames([record(frame(capture_time_unix_us=started).SerializeToString())])
    end = signed(SessionControl(session_id="s1", action=SessionControl.ACTION_END, time_unix_us=started + 2000))
    out = pipeline.handle_control(Record("vto.session-control.v1", 0, 0, b"s1", end.SerializeToString()))
    assert ended_stub(out.states).events_sent == 3  # TRY_ON_RENDERED, ITEM_DWELL, ENDED
    late = frame(seq=1, capture_time_unix_us=started + 1000)  # captured before the END, handled after it
    out = await pipeline.handle_frames([record(late.SerializeToString(), offset=1)])
    assert [RenderedFrame.FromString(v).sequence for _, v in out.rendered] == [1]  # the shopper still gets it
    assert tryon.requests[-1].state == b"1"  # with the session's tracking state
    assert out.events == []  # no second TRY_ON_RENDERED
    assert ended_stub(out.states).events_sent == 3  # and no tracking state back on the topic after the END
    photo = "s2"  # a one-photo session whose END overtakes its only frame: that frame's event still goes out
    end2 = signed(SessionControl(session_id=photo, action=SessionControl.ACTION_END, time_unix_us=started + 2000))
    pipeline.handle_control(Record("vto.session-control.v1", 0, 2, photo.encode(), end2.SerializeToString()))
    only = frame(session=photo, capture_time_unix_us=started + 1000)
    out = await pipeline.handle_frames([record(only.SerializeToString(), key=photo.encode(), offset=3)])
    assert [TryOnEvent.FromString(v).type for _, _, v in out.events] == [TryOnEvent.TYPE_TRY_ON_RENDERED]
    assert ended_stub(out.states).events_sent == 2  # ENDED, then TRY_ON_RENDERED: erasure knows both
    after = frame(seq=2, capture_time_unix_us=started + 3000)  # after the END, no new START
    out = await pipeline.handle_frames([record(after.SerializeToString(), offset=2)])
    assert out.rendered == [] and sample(metrics, "vto_frames_dropped_total", reason="session_ended") == 1
    pipeline.sessions["s1"].ended_us -= 10_000_000  # ten seconds later: nothing can arrive any more
    pipeline.forgotten_at = 0  # (and the once-a-second clear-out is due)
    await pipeline.handle_frames([])
    assert "s1" not in pipeline.sessions
    restart = signed(SessionControl(session_id="s1", action=SessionControl.ACTION_START, time_unix_us=started + 4000))
    pipeline.handle_control(Record("vto.session-control.v1", 0, 1, b"s1", restart.SerializeToString()))
    out = await pipeline.handle_frames([record(frame(seq=0, capture_time_unix_us=started + 5000).SerializeToString())])
    assert len(out.rendered) == 1 and len(out.events) == 1  # a new START opens the session again


class SlowTryOn(FakeTryOn):
    """Answers only after `delay_s`, like a Triton that needed its retries."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    async def infer(self, request: TryOnRequest) -> TryOnResult:
        await asyncio.sleep(self.delay_s)
        return await super().infer(request)


async def test_a_frame_that_went_stale_during_inference_is_dropped_not_published() -> None:
    settings = Settings(max_image_bytes=1000, max_image_side=640, frame_max_age_s=0.2)
    pipeline, metrics = make(SlowTryOn(0.3), settings)
    out = await pipeline.handle_frames([record(frame().SerializeToString())])
    assert out.rendered == []
    assert sample(metrics, "vto_frames_dropped_total", reason="stale") == 1
    quick, metrics = make(SlowTryOn(0.0), settings)
    assert len((await quick.handle_frames([record(frame().SerializeToString())])).rendered) == 1


async def test_latest_frame_wins_frames_that_queued_behind_a_newer_one_are_superseded() -> None:
    settings = Settings(max_image_bytes=1000, max_image_side=640, frame_max_age_s=2.0, supersede_after_s=0.3)
    tryon = FakeTryOn()
    pipeline, metrics = make(tryon, settings)
    now = time.time_ns() // 1000
    ages_s = {
        ("a", 0): 1.0,
        ("a", 1): 0.8,
        ("b", 0): 1.0,
        ("c", 0): 0.25,  # c sends in a burst but keeps up: none of its frames waited 0.3 s
        ("a", 2): 0.5,
        ("c", 1): 0.05,
        ("a", 3): 0.2,
        ("a", 4): 0.1,
    }
    batch = [
        record(
            frame(session=s, seq=q, capture_time_unix_us=now - int(age * 1e6)).SerializeToString(),
            key=s.encode(),
            offset=i,
        )
        for i, ((s, q), age) in enumerate(ages_s.items())
    ]
    out = await pipeline.handle_frames(batch)
    rendered = [(f.session_id, f.sequence) for f in (RenderedFrame.FromString(v) for _, v in out.rendered)]
    # a is behind (its oldest frame waited 1 s): only its newest is rendered, even a/3 that waited just 0.2 s;
    # b's only frame has nothing newer, however long it waited; c, keeping up, loses nothing.
    assert rendered == [("b", 0), ("c", 0), ("c", 1), ("a", 4)]
    assert len(tryon.requests) == 4
    outcomes = [FrameOutcome.FromString(v) for _, v in out.outcomes]
    assert len(outcomes) == len(batch)
    assert sorted((o.session_id, o.sequence) for o in outcomes if o.reason == "superseded") == [
        ("a", 0),
        ("a", 1),
        ("a", 2),
        ("a", 3),
    ]
    assert sample(metrics, "vto_frames_dropped_total", reason="superseded") == 4


async def test_a_session_sending_too_fast_is_refused_beyond_its_rate_with_one_notice() -> None:
    settings = Settings(max_image_bytes=1000, max_image_side=640, max_session_fps=5.0)
    tryon = FakeTryOn()
    pipeline, metrics = make(tryon, settings)
    base = time.time_ns() // 1000
    burst = [record(frame(seq=i, capture_time_unix_us=base + i * 1000).SerializeToString(), offset=i) for i in range(9)]
    out = await pipeline.handle_frames(burst)
    frames = [RenderedFrame.FromString(v) for _, v in out.rendered]
    rendered = [f for f in frames if f.status == RenderedFrame.STATUS_OK]
    notices = [f for f in frames if f.status == RenderedFrame.STATUS_RATE_LIMITED]
    assert [f.sequence for f in rendered] == [0, 1, 2, 3, 4]  # one second's worth
    assert len(notices) == 1 and not notices[0].image and "5 frames a second" in notices[0].status_detail
    assert sample(metrics, "vto_frames_dropped_total", reason="rate_limited") == 4
    assert len(tryon.requests) == 5


async def test_a_worker_at_its_session_limit_refuses_new_sessions_and_serves_the_ones_it_has() -> None:
    settings = Settings(max_image_bytes=1000, max_image_side=640, max_active_sessions=2)
    pipeline, metrics = make(FakeTryOn(), settings)
    for n, session in enumerate(("a", "b", "c")):
        out = await pipeline.handle_frames([record(frame(session=session).SerializeToString(), key=session.encode())])
        [shown] = [RenderedFrame.FromString(v) for _, v in out.rendered]
        expected = RenderedFrame.STATUS_OVER_CAPACITY if n == 2 else RenderedFrame.STATUS_OK
        assert shown.status == expected, session
    assert "c" not in pipeline.sessions  # a refused session takes no memory
    assert sample(metrics, "vto_frames_dropped_total", reason="over_capacity") == 1
    out = await pipeline.handle_frames([record(frame(session="a", seq=1).SerializeToString(), key=b"a")])
    assert RenderedFrame.FromString(out.rendered[0][1]).status == RenderedFrame.STATUS_OK
    pipeline.handle_control(_control(SessionControl.ACTION_END, session="a"))
    out = await pipeline.handle_frames([record(frame(session="c", seq=1).SerializeToString(), key=b"c")])
    assert RenderedFrame.FromString(out.rendered[0][1]).status == RenderedFrame.STATUS_OK  # a's place is free


async def test_every_frames_record_gets_exactly_one_outcome_on_kafka() -> None:
    settings = Settings(max_image_bytes=1000, max_image_side=640, max_session_fps=2.0, frame_max_age_s=2.0)
    pipeline, _ = with_catalogue(FakeTryOn(), settings)
    base = time.time_ns() // 1000
    records = [
        record(frame(item_id="").SerializeToString(), offset=0),  # rendered
        record(b"\xff garbage", offset=1),  # dead letter: undecodable
        record(frame(seq=1, capture_time_unix_us=base - 10_000_000).SerializeToString(), offset=2),  # stale
        record(frame(seq=2, item_id="nope").SerializeToString(), offset=3),  # dead letter: unknown item
        record(frame(seq=3, item_id="").SerializeToString(), offset=4),  # rendered (second token)
        record(frame(seq=4, item_id="").SerializeToString(), offset=5),  # rate limited
    ]
    out = await pipeline.handle_frames(records)
    outcomes = [FrameOutcome.FromString(v) for _, v in out.outcomes]
    assert sorted(o.offset for o in outcomes) == [r.offset for r in records]  # one each, none twice
    by_offset = {o.offset: (FrameOutcome.Outcome.Name(o.outcome), o.reason) for o in outcomes}
    assert by_offset == {
        0: ("OUTCOME_RENDERED", ""),
        1: ("OUTCOME_DEAD_LETTER", "undecodable"),
        2: ("OUTCOME_DROPPED", "stale"),
        3: ("OUTCOME_DEAD_LETTER", "unknown_item"),
        4: ("OUTCOME_RENDERED", ""),
        5: ("OUTCOME_DROPPED", "rate_limited"),
    }
    assert all(o.session_id == "s1" for o in outcomes)  # the undecodable one by its record key


async def test_idle_sessions_stop_counting_against_the_limit_at_the_next_recount() -> None:
    settings = Settings(max_image_bytes=1000, max_image_side=640, max_active_sessions=2)
    pipeline, _ = make(FakeTryOn(), settings)
    for session in ("a", "b"):
        await pipeline.handle_frames([record(frame(session=session).SerializeToString(), key=session.encode())])
    out = await pipeline.handle_frames([record(frame(session="c").SerializeToString(), key=b"c")])
    assert RenderedFrame.FromString(out.rendered[0][1]).status == RenderedFrame.STATUS_OVER_CAPACITY
    for session in ("a", "b"):
        pipeline.sessions[session].seen_us -= 31_000_000  # no frame for 31 s
    pipeline.active_counted_us -= 2_000_000  # the once-a-second recount is due
    out = await pipeline.handle_frames([record(frame(session="c", seq=1).SerializeToString(), key=b"c")])
    assert RenderedFrame.FromString(out.rendered[0][1]).status == RenderedFrame.STATUS_OK


async def test_a_new_sessions_first_batch_counts_it_once_against_the_limit() -> None:
    settings = Settings(max_image_bytes=1000, max_image_side=640, max_active_sessions=2)
    pipeline, _ = make(FakeTryOn(), settings)
    first = [record(frame(session="a", seq=i).SerializeToString(), key=b"a", offset=i) for i in range(3)]
    await pipeline.handle_frames(first)  # three frames before any was inferred: still one session
    out = await pipeline.handle_frames([record(frame(session="b").SerializeToString(), key=b"b")])
    assert RenderedFrame.FromString(out.rendered[0][1]).status == RenderedFrame.STATUS_OK


async def test_a_frame_without_a_valid_token_for_its_session_is_refused_before_inference() -> None:
    tryon = FakeTryOn()
    pipeline, _ = make(tryon)
    key = SETTINGS.session_key()
    cases = {
        "missing_token": frame(session_token=""),
        "invalid_token": frame(session_token=tokens.mint(b"another-key-0123456789", "s1", ttl_s=600)),
        "foreign_token": frame(session_token=tokens.mint(key, "someone-else", ttl_s=600)),
        "expired_token": frame(session_token=tokens.mint(key, "s1", ttl_s=-1)),
        "no_consent": frame(session_token=tokens.mint(key, "s1", ttl_s=600, consent=False)),
    }
    out = await pipeline.handle_frames([record(f.SerializeToString(), offset=i) for i, f in enumerate(cases.values())])
    letters = [DeadLetter.FromString(v) for _, v in out.dead_letters]
    assert [d.reason for d in letters] == list(cases)
    assert all(d.value for d in letters if d.reason != "no_consent")  # kept for triage, a day
    assert [d.value for d in letters if d.reason == "no_consent"] == [b""]  # nothing of the frame is kept
    assert out.rendered == [] and tryon.requests == []
    assert len(out.outcomes) == len(cases)
    ok = await pipeline.handle_frames([record(frame().SerializeToString(), offset=9)])
    assert len(ok.rendered) == 1  # the session's own token still works


def test_a_control_record_with_another_sessions_token_is_refused() -> None:
    pipeline, _ = make(FakeTryOn())
    theirs = tokens.mint(SETTINGS.session_key(), "victim", ttl_s=600)
    end = SessionControl(session_id="victim", action=SessionControl.ACTION_END, session_token=theirs)
    assert pipeline.handle_control(Record("c", 0, 0, b"victim", end.SerializeToString())).events  # the owner's END
    forged = SessionControl(session_id="s2", action=SessionControl.ACTION_END, session_token=theirs)
    out = pipeline.handle_control(Record("c", 0, 1, b"s2", forged.SerializeToString()))
    assert out.events == [] and DeadLetter.FromString(out.dead_letters[0][1]).reason == "foreign_token"


async def test_erasure_tombstones_every_event_and_the_state_live_ended_or_after_a_takeover() -> None:
    pipeline, metrics = make(FakeTryOn())
    started = time.time_ns() // 1000
    sent: dict[str, list[bytes]] = {}  # session -> the keys of the events it produced

    def keep(out: Outputs) -> Outputs:
        for partition, key, value in out.events:
            assert partition == 2  # with the session's frames and state: where its tombstones will go
            if value is not None:
                sent.setdefault(TryOnEvent.FromString(value).session_id, []).append(key)
        return out

    stubs: dict[str, bytes] = {}  # what END left on the state topic
    for session in ("live", "ended", "moved", "moved-long-ago"):
        keep(pipeline.handle_control(_control(SessionControl.ACTION_START, session=session, partition=2)))
        shown = frame(session=session).SerializeToString()
        keep(await pipeline.handle_frames([record(shown, key=session.encode(), partition=2)]))
    for session in ("ended", "moved", "moved-long-ago"):
        [(_, _, stub)] = keep(
            pipeline.handle_control(_control(SessionControl.ACTION_END, session=session, partition=2))
        ).states
        assert stub is not None
        stubs[session] = stub
        pipeline.sessions[session].ended_us -= 10_000_000  # long over
    pipeline.forgotten_at = 0
    await pipeline.handle_frames([])  # the ended sessions leave memory; what erasure needs stays
    assert "ended" not in pipeline.sessions
    # "moved...": their partition went to another worker, which reads the state topic back: the END stub just
    # written, and one whose END was long ago (only its event count is kept in memory)
    long_ago = SessionState.FromString(stubs["moved-long-ago"])
    long_ago.ended_unix_us = started - 3_600_000_000
    other, _ = make(FakeTryOn())
    other.restore([(b"moved", stubs["moved"]), (b"moved-long-ago", long_ago.SerializeToString())])
    assert "moved-long-ago" not in other.sessions and "moved" in other.sessions
    assert sent == {s: [f"{s}/{n}".encode() for n in range(len(sent[s]))] for s in sent}  # <session>/<n> keys

    for session, worker in (("live", pipeline), ("ended", pipeline), ("moved", other), ("moved-long-ago", other)):
        out = worker.handle_control(_control(SessionControl.ACTION_ERASE, session=session, partition=2))
        assert {partition for partition, _, _ in out.events} == {2}
        tombstones = [key for _, key, value in out.events if value is None]
        assert tombstones == sent[session], session  # every event it sent, and nothing else
        [notice] = [TryOnEvent.FromString(v) for _, _, v in out.events if v is not None]
        assert notice.type == TryOnEvent.TYPE_SESSION_ERASED and notice.session_id == session
        assert out.states == [(2, session.encode(), None)]
    assert sample(metrics, "vto_tryon_events_total", type="TYPE_SESSION_ERASED") == 2  # (two on `other`)

    # A frame still in flight is not handled, and the session cannot be reopened under the same id at once.
    late = await pipeline.handle_frames(
        [record(frame(session="live", seq=1).SerializeToString(), key=b"live", partition=2)]
    )
    assert late.rendered == [] and late.events == [] and late.states == []
    assert sample(metrics, "vto_frames_dropped_total", reason="session_erased") == 1
    again = pipeline.handle_control(_control(SessionControl.ACTION_START, session="live"))
    assert DeadLetter.FromString(again.dead_letters[0][1]).reason == "session_erased" and again.states == []


async def test_event_keys_never_repeat_across_a_restart_or_an_eviction(monkeypatch: pytest.MonkeyPatch) -> None:
    """Events are compacted by key: a repeated key would silently replace an earlier event."""
    monkeypatch.setattr("streams.pipeline.MAX_SESSIONS", 2)
    pipeline, _ = make(FakeTryOn())
    keys: list[bytes] = []
    for _ in range(2):  # the shopper restarts the session under the same id
        keys += [k for _, k, _ in pipeline.handle_control(_control(SessionControl.ACTION_START)).events]
    for other in ("x", "y"):  # two other sessions push s1 out of memory
        pipeline.handle_control(_control(SessionControl.ACTION_START, session=other))
    assert "s1" not in pipeline.sessions
    keys += [k for _, k, _ in pipeline.handle_control(_control(SessionControl.ACTION_SELECT_ITEM)).events]
    assert keys == [b"s1/0", b"s1/1", b"s1/2"]


async def test_a_session_erased_while_its_frame_is_inferred_gets_nothing_written_back() -> None:
    tryon = GatedTryOn()
    pipeline, metrics = make(tryon)
    pipeline.handle_control(_control(SessionControl.ACTION_START))  # event s1/0
    inflight = asyncio.create_task(pipeline.handle_frames([record(frame().SerializeToString())]))
    await asyncio.sleep(0.01)  # the frame is at Triton now
    erased = pipeline.handle_control(_control(SessionControl.ACTION_ERASE))
    assert [k for _, k, v in erased.events if v is None] == [b"s1/0"]
    tryon.gate.set()
    out = await inflight
    assert out.rendered == [] and out.events == [] and out.states == []  # nothing of it after its tombstones
    assert sample(metrics, "vto_frames_dropped_total", reason="session_erased") == 1


async def test_superseded_frames_do_not_use_up_the_sessions_rate_the_newest_is_rendered() -> None:
    settings = Settings(
        max_image_bytes=1000, max_image_side=640, frame_max_age_s=2.0, max_session_fps=5.0, supersede_after_s=0.3
    )
    pipeline, metrics = make(FakeTryOn(), settings)
    now = time.time_ns() // 1000
    backlog = [  # 16 frames queued up, the oldest a second old, the newest just captured
        record(frame(seq=i, capture_time_unix_us=now - (15 - i) * 66_000).SerializeToString(), offset=i)
        for i in range(16)
    ]
    out = await pipeline.handle_frames(backlog)
    assert [RenderedFrame.FromString(v).sequence for _, v in out.rendered][-1] == 15
    assert sample(metrics, "vto_frames_dropped_total", reason="rate_limited") == 0


def test_ending_or_erasing_a_session_needs_no_consent_but_starting_one_does() -> None:
    pipeline, _ = make(FakeTryOn())
    withdrawn = tokens.mint(SETTINGS.session_key(), "s1", ttl_s=600, consent=False)
    for action in (SessionControl.ACTION_END, SessionControl.ACTION_ERASE):
        control = SessionControl(session_id="s1", action=action, session_token=withdrawn)
        out = pipeline.handle_control(Record("c", 0, action, b"s1", control.SerializeToString()))
        assert out.dead_letters == [] and out.events, action
    theirs = tokens.mint(SETTINGS.session_key(), "s2", ttl_s=600, consent=False)
    start = SessionControl(session_id="s2", action=SessionControl.ACTION_START, session_token=theirs)
    out = pipeline.handle_control(Record("c", 0, 9, b"s2", start.SerializeToString()))
    assert DeadLetter.FromString(out.dead_letters[0][1]).reason == "no_consent"
