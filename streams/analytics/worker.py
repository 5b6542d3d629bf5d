"""`vto analytics worker`: the Faust app that turns try-on events into windowed aggregates and "also tried"
recommendations (streams/analytics/aggregate.py does the arithmetic; docs/analytics.md the definitions).

Exactly once: like the stream worker (streams/app.py), every batch's outputs (aggregate records, co-tries, the
state entries it changed) and the consumer offsets past its events commit in one Kafka transaction
(streams/publisher.py). A worker killed mid-batch leaves an open transaction that is aborted; the partitions' next
owner reads the committed state back (`vto.analytics-state.v1`, partition = the events or co-tries partition) and
handles the events after the committed offsets: nothing is lost and nothing counted twice.

Faust's own tables are not used for this state: with `processing_guarantee="exactly_once"` faust-streaming 0.15
logs and carries on when a transaction's commit fails (transport/drivers/aiokafka.py `commit_transaction`), which
would lose or double-count.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from google.protobuf.message import DecodeError
from prometheus_client import CollectorRegistry

from streams import kafka_client
from streams.analytics.aggregate import AlsoTriedCounts, Changes, Windows
from streams.app import next_offsets, serve_metrics_and_liveness, transactional_app
from streams.metrics import AnalyticsMetrics
from streams.pipeline import Record, now_us
from streams.proto.vto.v1.analytics_pb2 import CoTry
from streams.proto.vto.v1.dead_letter_pb2 import DeadLetter
from streams.proto.vto.v1.tryon_event_pb2 import TryOnEvent
from streams.publisher import Out, Publisher
from streams.session_store import read_to_end
from streams.settings import Settings, get_settings

log = logging.getLogger(__name__)

BATCH = 1000  # events per batch: aggregation is cheap, transactions are not
BATCH_WINDOW_S = 0.2


class Partitions:
    """The state of the partitions this worker owns: `Windows` per events partition, `AlsoTriedCounts` per co-tries
    partition. All of it is dropped when partitions are revoked and read back from the state topic when they are
    assigned: in memory there is never more than what is committed plus the open transaction. `generation` counts
    the revocations: a batch begun before one is not published (its counts went with the dropped state)."""

    def __init__(self, settings: Settings, key: bytes) -> None:
        self.settings, self.key = settings, key
        self.windows: dict[int, Windows] = {}
        self.cotries: dict[int, AlsoTriedCounts] = {}
        self.generation = 0

    def revoke(self) -> None:
        self.windows, self.cotries = {}, {}
        self.generation += 1

    def new_windows(self, partition: int) -> Windows:
        s = self.settings
        return Windows(partition, self.key, s.analytics_grace_s, s.analytics_session_ttl_s)

    def new_counts(self) -> AlsoTriedCounts:
        s = self.settings
        return AlsoTriedCounts(s.analytics_top_k, s.analytics_half_life_days, s.analytics_window_days)

    def assign(self, events: set[int], cotries: set[int]) -> int:
        """Read the state of the assigned partitions back (blocking: run it in an executor); returns entries."""
        windows = {p: self.new_windows(p) for p in events}
        counts = {p: self.new_counts() for p in cotries}
        read = 0
        wanted = sorted(events | cotries)
        if wanted:
            s = self.settings
            for msg in read_to_end(s, s.analytics_state_topic, wanted, timeout_s=120.0, group=s.analytics_group):
                key, p = (msg.key() or b"").decode(), int(msg.partition() or 0)
                if key.startswith("e/") and p in windows:
                    windows[p].restore(key, msg.value())
                elif key.startswith("c/") and p in counts:
                    counts[p].restore(key, msg.value())
                read += 1
        self.windows, self.cotries = windows, counts
        return read


def changes_to_records(settings: Settings, changes: Changes, partition: int) -> list[Out]:
    """A partition's changes as records: aggregates keyed per window (and partition), co-tries keyed by item (the
    default partitioner routes them), state entries to the state partition of the same number."""
    s = settings
    out = [
        Out(
            s.analytics_items_topic,
            "analytics_items",
            f"{a.window_s}/{a.window_start_unix_us}/{a.item_id}/{a.partition}".encode(),
            a.SerializeToString(),
        )
        for a in changes.items
    ]
    out += [
        Out(
            s.analytics_funnel_topic,
            "analytics_funnel",
            f"{f.window_s}/{f.window_start_unix_us}/{f.partition}".encode(),
            f.SerializeToString(),
        )
        for f in changes.funnel
    ]
    out += [
        Out(s.analytics_also_tried_topic, "analytics_also_tried", a.item_id.encode(), a.SerializeToString())
        for a in changes.also_tried
    ]
    out += [
        Out(s.analytics_cotries_topic, "analytics_cotries", c.item_id.encode(), c.SerializeToString())
        for c in changes.cotries
    ]
    out += [
        Out(s.analytics_state_topic, "analytics_state", key.encode(), value, partition)
        for key, value in changes.state.items()
    ]
    return out


def decode_event(record: Record, max_skew_s: float = 5.0) -> TryOnEvent | None:
    """The event of a record; None for a tombstone (an erased event). ValueError for a record that is not one, or
    one dated further ahead of this worker's clock than `max_skew_s` (it would close every window)."""
    if record.value is None:
        return None
    try:
        event = TryOnEvent.FromString(record.value)
    except DecodeError as exc:
        raise ValueError(f"undecodable: not a TryOnEvent ({exc})") from exc
    if not event.session_id:
        raise ValueError("missing_session_id: TryOnEvent.session_id is empty")
    if event.event_time_unix_us <= 0:
        raise ValueError("missing_event_time: TryOnEvent.event_time_unix_us is not set")
    if event.type == TryOnEvent.TYPE_UNSPECIFIED or event.type not in TryOnEvent.Type.values():
        raise ValueError(f"unknown_type: TryOnEvent.type {event.type}")
    ahead_s = event.event_time_unix_us / 1e6 - now_us() / 1e6
    if ahead_s > max_skew_s:
        raise ValueError(f"future_event_time: the event is dated {ahead_s:.0f} s ahead of the worker's clock")
    return event


def dead_letter(settings: Settings, record: Record, error: ValueError, worker_id: str) -> Out:
    reason, _, detail = str(error).partition(": ")
    letter = DeadLetter(
        source_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key or b"",
        value=record.value or b"",
        reason=reason,
        detail=detail,
        worker_id=worker_id,
        time_unix_us=now_us(),
    )
    return Out(settings.dead_letter_topic, "dead_letter", record.key, letter.SerializeToString())


def current_records(events: Iterable[Any], generation_id: int) -> list[Record]:
    """The records of a batch fetched in the consumer's current generation. One fetched before the last rebalance
    is left out: the seek to the committed offsets that followed it delivers it again, after records that would
    otherwise be counted before it (and it then skipped as counted already)."""
    out = []
    for e in events:
        msg = e.message
        if msg.generation_id == generation_id:
            out.append(Record(msg.topic, msg.partition, msg.offset, msg.key, msg.value))
    return out


def create_app(settings: Settings, registry: CollectorRegistry | None = None) -> faust.App:
    key = settings.analytics_key()  # no pseudonym key: ConfigError now
    metrics = AnalyticsMetrics(registry or CollectorRegistry())
    worker_id = f"{socket.gethostname()}-{os.getpid()}"
    app = transactional_app(
        settings,
        settings.analytics_group,
        settings.analytics_instance,
        settings.analytics_web_port,
        BATCH,
        worker_id,
        read_committed=True,
    )

    def topic(name: str) -> Any:
        return app.topic(name, key_type=bytes, value_type=bytes, allow_empty=True, internal=False)

    owned = Partitions(settings, key)
    restored = asyncio.Event()
    holder: dict[str, Publisher] = {}
    started = asyncio.Lock()
    gate = asyncio.Lock()  # a batch's publication, or a revocation: one at a time

    async def publish(generation: int, out: list[Out], records: list[Record]) -> None:
        """A batch's records with its offsets, unless partitions were revoked since it began (then its counts were
        dropped with the state, and the next owner, maybe this worker again, counts its records from the committed
        offsets)."""
        async with gate:
            if generation == owned.generation and (out or records):
                await (await publisher()).publish_records(out, next_offsets(records))

    async def new_producer() -> AIOKafkaProducer:
        old = holder.get("publisher")
        if old is not None:
            try:
                await old.producer.stop()  # type: ignore[attr-defined]
            except KafkaError as exc:
                log.warning("closing the fenced producer: %s", exc)
        producer = AIOKafkaProducer(
            **kafka_client.aiokafka(settings),
            client_id=worker_id,
            transactional_id=f"{settings.analytics_group}.{settings.analytics_instance or worker_id}",
            transaction_timeout_ms=int(settings.transaction_timeout_s * 1000),
            enable_idempotence=True,
            acks="all",
            retry_backoff_ms=10,
        )
        await producer.start()  # registers the transactional id: aborts what a predecessor left open
        return producer

    async def publisher() -> Publisher:
        async with started:
            if "publisher" not in holder:
                holder["publisher"] = Publisher(
                    await new_producer(), settings, metrics, renew=new_producer, group=settings.analytics_group
                )
        return holder["publisher"]

    @app.agent(topic(settings.events_topic))
    async def events(stream: Any) -> AsyncIterator[None]:
        async for batch in stream.take_events(BATCH, within=BATCH_WINDOW_S):
            await restored.wait()
            generation, records = owned.generation, current_records(batch, app.consumer_generation_id)
            begun = time.perf_counter()
            out, touched, counted = [], set(), []
            for record in records:
                windows = owned.windows.get(record.partition)
                if windows is None or not windows.first_time(record.offset):
                    continue  # not (or no longer) this worker's partition; or fetched again: counted already
                touched.add(record.partition)
                counted.append(record)
                try:
                    event = decode_event(record, settings.max_clock_skew_s)
                except ValueError as exc:
                    log.warning("dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc)
                    out.append(dead_letter(settings, record, exc, worker_id))
                    continue
                if event is not None:  # None: a tombstone (an erased event)
                    windows.add(event)
                    metrics.events.labels(TryOnEvent.Type.Name(event.type)).inc()
            for p in sorted(touched):
                changes = owned.windows[p].take_changes()
                out += changes_to_records(settings, changes, p)
                for size, n in changes.late.items():
                    metrics.late_events.labels(str(size)).inc(n)
                for size, n in changes.closed.items():
                    metrics.windows_closed.labels(str(size)).inc(n)
                metrics.cotries.inc(len(changes.cotries) // 2)
            metrics.stage_seconds.labels("aggregate").observe(time.perf_counter() - begun)
            await publish(generation, out, counted)
            yield None

    @app.agent(topic(settings.analytics_cotries_topic))
    async def cotries(stream: Any) -> AsyncIterator[None]:
        async for batch in stream.take_events(BATCH, within=BATCH_WINDOW_S):
            await restored.wait()
            generation, records = owned.generation, current_records(batch, app.consumer_generation_id)
            touched, counted = set(), []
            for record in records:
                counts = owned.cotries.get(record.partition)
                if counts is None or not counts.first_time(record.offset):
                    continue
                touched.add(record.partition)
                counted.append(record)
                if record.value:  # written by analytics workers only: always a CoTry
                    counts.add(CoTry.FromString(record.value))
            out = []
            for p in sorted(touched):
                out += changes_to_records(settings, owned.cotries[p].take_changes(), p)
            await publish(generation, out, counted)
            yield None

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        """Every assignment starts from what is committed: the open transaction first, then the state read back."""
        restored.clear()
        try:
            async with gate:
                if "publisher" in holder:
                    await holder["publisher"].flush()
                owned.revoke()
            mine = {(tp.topic, tp.partition) for tp in app.consumer.assignment()}
            events_p = {p for t, p in mine if t == settings.events_topic}
            cotries_p = {p for t, p in mine if t == settings.analytics_cotries_topic}
            await publisher()
            begun = time.perf_counter()
            read = await asyncio.get_running_loop().run_in_executor(None, owned.assign, events_p, cotries_p)
            log.info(
                "analytics state of events partitions %s and co-tries partitions %s read back (%d entries, %.3f s)",
                sorted(events_p),
                sorted(cotries_p),
                read,
                time.perf_counter() - begun,
            )
            metrics.ready.set(1 if events_p else 0)
        finally:
            restored.set()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        restored.clear()
        async with gate:
            if "publisher" in holder:  # what was done with the partitions is committed before they move
                await holder["publisher"].flush()
            owned.revoke()  # read back from the state topic on the next assignment
        metrics.ready.set(0)

    @app.timer(interval=max(settings.commit_interval_s, 0.05))  # type: ignore[untyped-decorator]
    async def commit_open_transaction() -> None:
        if "publisher" in holder:
            await holder["publisher"].flush()

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]
    async def gauges() -> None:
        metrics.open_windows.set(sum(len(w.items) + len(w.funnel) for w in owned.windows.values()))
        metrics.sessions.set(sum(len(w.sessions) for w in owned.windows.values()))
        marks = [w.watermark for w in owned.windows.values() if w.watermark]
        metrics.watermark_lag.set(max(now_us() - min(marks), 0) / 1e6 if marks else 0)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def flush_on_shutdown(sender: Any, **kwargs: Any) -> None:
        if "publisher" in holder:
            await holder["publisher"].flush()

    serve_metrics_and_liveness(app, metrics.registry, worker_id)

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        ok = bool(owned.windows) and restored.is_set() and not app.rebalancing
        body = {"ready": ok, "events_partitions": sorted(owned.windows), "cotries_partitions": sorted(owned.cotries)}
        return web.json(body, status=200 if ok else 503)

    app.metrics = metrics  # type: ignore[attr-defined]
    app.owned = owned  # type: ignore[attr-defined]
    return app


def main(argv: list[str] | None = None) -> None:
    """`vto analytics worker`: run one analytics worker until SIGTERM (graceful: commit, then stop)."""
    settings = get_settings()
    app = create_app(settings)
    quiet = ["--quiet"] if settings.log_format == "json" else []
    sys.argv = ["vto-analytics", *quiet, "worker", "-l", settings.log_level.lower(), *(argv or [])]
    app.main()
