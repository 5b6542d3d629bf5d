"""The analytics worker's plumbing without a broker: what is an event and what is dead-lettered, how a batch's
changes become records (topics, keys, partitions), and that its consumer reads committed records only."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry

from streams.analytics.aggregate import Windows
from streams.analytics.worker import changes_to_records, create_app, current_records, dead_letter, decode_event
from streams.pipeline import Record
from streams.proto.vto.v1.dead_letter_pb2 import DeadLetter
from streams.proto.vto.v1.tryon_event_pb2 import TryOnEvent
from streams.settings import Settings

SETTINGS = Settings(analytics_secret="unit-test-analytics-key-0123", session_secret="unit-test-session-key-0123")
T = 1_800_000_000_000_000


def rec(value: bytes | None, partition: int = 2) -> Record:
    return Record(SETTINGS.events_topic, partition, 7, b"s/0", value)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\xff\xff not a protobuf", "undecodable"),
        (
            TryOnEvent(type=TryOnEvent.TYPE_SESSION_STARTED, event_time_unix_us=T).SerializeToString(),
            "missing_session_id",
        ),
        (TryOnEvent(session_id="s", type=TryOnEvent.TYPE_SESSION_STARTED).SerializeToString(), "missing_event_time"),
        (TryOnEvent(session_id="s", event_time_unix_us=T).SerializeToString(), "unknown_type"),
        (TryOnEvent(session_id="s", type=99, event_time_unix_us=T).SerializeToString(), "unknown_type"),  # type: ignore[arg-type]
        (
            TryOnEvent(
                session_id="s",
                type=TryOnEvent.TYPE_PURCHASE,
                event_time_unix_us=time.time_ns() // 1000 + 86_400_000_000,
            ).SerializeToString(),
            "future_event_time",
        ),
    ],
)
def test_a_record_that_is_not_an_event_is_dead_lettered_with_its_reason(value: bytes, reason: str) -> None:
    with pytest.raises(ValueError) as raised:
        decode_event(rec(value))
    letter = DeadLetter.FromString(dead_letter(SETTINGS, rec(value), raised.value, "w1").value or b"")
    assert (letter.reason, letter.source_topic, letter.partition, letter.offset) == (
        reason,
        SETTINGS.events_topic,
        2,
        7,
    )
    assert letter.value == value and letter.detail


def test_a_tombstone_is_no_event_and_no_error() -> None:
    assert decode_event(rec(None)) is None


def test_changes_become_aggregate_cotry_and_state_records_on_the_right_partitions() -> None:
    w = Windows(3, b"k" * 32, 120.0, 3600.0)
    for item, t in (("a", T), ("b", T + 1_000_000)):
        w.add(
            TryOnEvent(
                session_id="shopper-42", item_id=item, type=TryOnEvent.TYPE_TRY_ON_RENDERED, event_time_unix_us=t
            )
        )
    out = changes_to_records(SETTINGS, w.take_changes(), 3)
    by_topic: dict[str, list[tuple[bytes | None, int | None]]] = {}
    for o in out:
        by_topic.setdefault(o.topic, []).append((o.key, o.partition))
    start60, start3600 = T - T % 60_000_000, T - T % 3_600_000_000
    assert sorted(k for k, _ in by_topic[SETTINGS.analytics_items_topic]) == sorted(
        f"{size}/{start}/{item}/3".encode() for size, start in ((60, start60), (3600, start3600)) for item in "ab"
    )
    assert {p for _, p in by_topic[SETTINGS.analytics_state_topic]} == {3}  # the events partition's number
    assert sorted(k for k, _ in by_topic[SETTINGS.analytics_cotries_topic]) == [b"a", b"b"]  # both directions
    assert {p for _, p in by_topic[SETTINGS.analytics_cotries_topic]} == {None}  # routed by item key
    assert b"shopper-42" not in b"".join(o.key + (o.value or b"") for o in out if o.key)  # its pseudonym only


async def test_the_consumer_reads_committed_records_only() -> None:
    app = create_app(SETTINGS, CollectorRegistry())
    consumer = app.consumer._thread._create_worker_consumer(app.transport)
    try:
        assert consumer._isolation_level == "read_committed"
    finally:
        await consumer.stop()


def test_records_fetched_before_the_last_rebalance_are_left_out() -> None:
    def event(offset: int, generation: int) -> SimpleNamespace:
        message = SimpleNamespace(topic="t", partition=0, offset=offset, key=b"k", value=b"v", generation_id=generation)
        return SimpleNamespace(message=message)

    batch = [event(100, 3), event(101, 3), event(50, 4), event(51, 4)]  # a buffer from generation 3, then the seek
    assert [r.offset for r in current_records(batch, 4)] == [50, 51]


async def test_the_stream_workers_consumer_reads_what_clients_write_at_once() -> None:
    # Frames and controls are not written in transactions: the stream worker keeps librdkafka's default.
    from streams.app import create_app as create_worker

    app = create_worker(SETTINGS, CollectorRegistry())
    consumer = app.consumer._thread._create_worker_consumer(app.transport)
    try:
        assert consumer._isolation_level == "read_uncommitted"
    finally:
        await consumer.stop()
