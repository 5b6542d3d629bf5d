"""Faults against the real services, each while a shopper's session streams through them.

Triton killed mid-session (its whole process group, as a lost pod) and started again: while it is away the
session's frames are dropped and counted as inference_unavailable and the shopper gets STATUS_DEGRADED notices
instead of silence; once it is back, frames render again by themselves.

The broker restarted mid-session: frames wait in the client and on the broker, the worker waits for it (a batch
caught open is aborted and sent again), and afterwards every frame has exactly one outcome and every event is
there once.

Workers joining and leaving while sessions stream: partitions move both ways, and still every frame has exactly
one outcome and every event is there once."""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.request
import uuid
import zlib
from collections import Counter
from pathlib import Path

import pytest

from streams.accounting import account_when_settled
from streams.proto.vto.v1.frame_outcome_pb2 import FrameOutcome
from streams.proto.vto.v1.rendered_frame_pb2 import RenderedFrame
from streams.proto.vto.v1.tryon_event_pb2 import TryOnEvent
from streams.session_store import read_to_end
from streams.settings import Settings
from streams.stack import embedded, kafka, triton
from tests.kafka_io import consume, outcome_figures, record_result, session_events
from tests.shopper import Shopper

pytestmark = pytest.mark.integration

FPS = 5.0
ITEM = "tee-breton-stripes"


def dropped(settings: Settings, reason: str) -> float:
    url = f"http://127.0.0.1:{settings.worker_web_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    found = re.search(rf'vto_frames_dropped_total{{reason="{reason}"}} ([0-9.e+]+)', text)
    return float(found.group(1)) if found else 0.0


def test_triton_killed_and_restarted_degrades_visibly_and_recovers_by_itself(stack: Settings, data_dir: Path) -> None:
    settings = stack
    shopper = Shopper(settings, data_dir / "keypoints" / "tfjs_pose_yoga" / "pose.jpg", "fault-triton", FPS)
    session, sent = shopper.session, shopper.sent
    before = dropped(settings, "inference_unavailable")
    shopper.start()
    service = triton.service(settings)
    try:
        time.sleep(2.0)
        pid = service.pid()
        assert pid is not None, "the test stack's Triton is not running"
        os.killpg(pid, signal.SIGKILL)  # Triton and its python-backend stubs, as a lost pod
        killed_us = time.time_ns() // 1000
        time.sleep(4.0)
        triton.start(settings)  # waits until every model is ready again
        back_us = time.time_ns() // 1000
        time.sleep(4.0)
    finally:
        shopper.stop(end=False)
        triton.start(settings)  # whatever happened, the following tests get a Triton

    def done(found: list[object]) -> bool:  # every frame sent accounted as rendered or (counted) dropped
        frames = [RenderedFrame.FromString(m.value()) for m in found]  # type: ignore[attr-defined]
        ok = [f for f in frames if f.status == RenderedFrame.STATUS_OK]
        return bool(ok) and ok[-1].capture_time_unix_us >= sent[-1]

    msgs = consume(settings, settings.rendered_topic, lambda m: m.key() == session.encode(), 1, 120, until=done)
    frames = [RenderedFrame.FromString(m.value()) for m in msgs]
    ok = [f for f in frames if f.status == RenderedFrame.STATUS_OK]
    degraded = [f for f in frames if f.status == RenderedFrame.STATUS_DEGRADED]
    assert any(f.capture_time_unix_us < killed_us for f in ok), "nothing rendered before the kill"
    assert degraded, "the shopper was told nothing while Triton was away"
    # Around the outage only: a frame captured just before the kill may meet a dead Triton, and the worker's
    # channel may take a moment to reconnect once Triton is back.
    assert all(killed_us - 2_000_000 <= f.capture_time_unix_us <= back_us + 5_000_000 for f in degraded)
    assert all(not f.image and f.status_detail for f in degraded)
    after = [f for f in ok if f.capture_time_unix_us > back_us]
    assert after, "no frame rendered after Triton came back"
    recovery_s = (after[0].rendered_time_unix_us - back_us) / 1e6
    assert recovery_s < 10, f"first frame after the restart came {recovery_s:.1f} s later"
    lost = dropped(settings, "inference_unavailable") - before
    assert lost > 0
    # Every frame sent is accounted: rendered once, or dropped and counted (notices are one a second).
    rendered_sequences = {f.sequence for f in ok}
    assert len(rendered_sequences) + lost >= len(sent), (len(rendered_sequences), lost, len(sent))
    record_result(
        "triton_killed_and_restarted",
        {
            "frames_sent": len(sent),
            "rendered": len(rendered_sequences),
            "dropped": {"inference_unavailable": int(lost)},
            "degraded_notices": len(degraded),
            "triton_away_s": round((back_us - killed_us) / 1e6, 1),
            "recovery_s": round(recovery_s, 1),
        },
    )


def event_types(settings: Settings, session: str) -> list[str]:
    """The session's committed try-on events by type name; fails on any event sent twice or missing."""
    events = session_events(settings, session)
    kinds = Counter((TryOnEvent.Type.Name(e.type), e.sequence) for e in events)
    assert [kind for kind, n in kinds.items() if n > 1] == [], "an event was published twice"
    types = [TryOnEvent.Type.Name(e.type) for e in events]
    for once in ("TYPE_SESSION_STARTED", "TYPE_TRY_ON_RENDERED", "TYPE_SESSION_ENDED"):
        assert types.count(once) == 1, types
    return types


def test_broker_restarted_mid_session_every_frame_accounted_every_event_once(stack: Settings, data_dir: Path) -> None:
    settings = stack
    shopper = Shopper(settings, data_dir / "keypoints" / "tfjs_pose_yoga" / "pose.jpg", "fault-broker", FPS, ITEM)
    shopper.start()
    try:
        time.sleep(3.0)
        kafka.stop(settings)  # a graceful broker restart, as in a rolling upgrade
        down_us = time.time_ns() // 1000
        time.sleep(2.0)
        kafka.start(settings)
        back_us = time.time_ns() // 1000
        time.sleep(4.0)
    finally:
        if kafka.service(settings).pid() is None:
            kafka.start(settings)  # whatever happened, the following tests get a broker
        shopper.stop(end=True)
    session = shopper.session

    types = Counter(event_types(settings, session))
    summary = account_when_settled(settings, session, len(shopper.sent))
    assert summary["frames"] == len(shopper.sent) and summary["unaccounted"] == 0, summary
    assert summary["handled_twice"] == 0, summary

    rendered = [
        RenderedFrame.FromString(m.value())
        for m in consume(settings, settings.rendered_topic, lambda m: m.key() == session.encode(), summary["rendered"])
    ]
    after = sorted((f for f in rendered if f.capture_time_unix_us > back_us), key=lambda f: f.rendered_time_unix_us)
    assert after, "nothing captured after the broker came back was rendered"
    recovery_s = (after[0].rendered_time_unix_us - back_us) / 1e6
    record_result(
        "broker_restarted",
        {
            **outcome_figures(summary),
            "events": dict(types),
            "broker_away_s": round((back_us - down_us) / 1e6, 1),
            "recovery_s": round(recovery_s, 1),
        },
    )
    assert recovery_s < 15, f"rendering resumed only {recovery_s:.1f} s after the broker was back"


def one_session_per_partition(name: str, partitions: int) -> list[str]:
    """Session ids whose frames land on every partition, one each (librdkafka's default partitioner: CRC-32 of the
    key modulo the partition count), so that whichever partitions a rebalance moves, some session moves."""
    chosen: dict[int, str] = {}
    while len(chosen) < partitions:
        session = f"{name}-{uuid.uuid4().hex[:8]}"
        chosen.setdefault(zlib.crc32(session.encode()) % partitions, session)
    return [chosen[p] for p in range(partitions)]


def test_workers_joining_and_leaving_while_frames_flow_lose_and_repeat_nothing(stack: Settings, data_dir: Path) -> None:
    settings = stack
    photo = data_dir / "keypoints" / "tfjs_pose_yoga" / "pose.jpg"
    ids = one_session_per_partition("fault-rebalance", settings.topic_partitions)
    shoppers = [Shopper(settings, photo, "fault-rebalance", 2.0, ITEM, session=s) for s in ids]
    second = embedded.Worker(1, settings)
    for shopper in shoppers:
        shopper.start()
    try:
        time.sleep(2.0)
        second.start()  # joins the group: half the partitions move to it while the sessions stream
        time.sleep(3.0)
        second.service.stop()  # leaves again (SIGTERM): its partitions come back to the first
        time.sleep(3.0)
    finally:
        second.service.stop()
        for shopper in shoppers:
            shopper.stop(end=True)
    summaries = {s.session: account_when_settled(settings, s.session, len(s.sent)) for s in shoppers}
    for shopper in shoppers:
        summary = summaries[shopper.session]
        assert summary["frames"] == len(shopper.sent) and summary["unaccounted"] == 0, summary
        assert summary["handled_twice"] == 0, summary
        event_types(settings, shopper.session)
    outcomes = [
        FrameOutcome.FromString(m.value())
        for m in read_to_end(settings, settings.outcomes_topic)
        if (m.key() or b"").decode() in summaries
    ]
    assert {o.partition for o in outcomes} == set(range(settings.topic_partitions)), "a partition had no session"
    by_session: dict[str, list[RenderedFrame]] = {}
    for m in read_to_end(settings, settings.rendered_topic):  # committed, in offset order
        if (m.key() or b"").decode() in summaries:
            frame = RenderedFrame.FromString(m.value())
            by_session.setdefault(frame.session_id, []).append(frame)
    for session, frames in by_session.items():
        sequences = [f.sequence for f in frames]
        assert sequences == sorted(set(sequences)), f"{session}: a rendered frame came twice or out of order"
        assert len(frames) == summaries[session]["rendered"], session
    moved = [s for s, frames in by_session.items() if len({f.worker_id for f in frames}) > 1]
    assert moved, "no session moved between the workers"
    sent = sum(len(s.sent) for s in shoppers)
    rendered = sum(len(frames) for frames in by_session.values())
    record_result(
        "worker_joined_and_left",
        {
            "sessions": len(shoppers),
            "frames_sent": sent,
            "rendered": rendered,
            "dropped": {s: summaries[s]["dropped"] for s in summaries if summaries[s]["dropped"]},
            "sessions_moved": len(moved),
            "unaccounted": sum(int(summaries[s]["unaccounted"]) for s in summaries),  # type: ignore[call-overload]
            "handled_twice": sum(int(summaries[s]["handled_twice"]) for s in summaries),  # type: ignore[call-overload]
        },
    )
