"""Stage 'publish': micro-batches' outputs and the offsets of the records they consumed, in one Kafka transaction
per `VTO_COMMIT_INTERVAL_S`.

Readers that read committed (analytics, `vto account`, the session states a takeover reads back) see each batch
whole and once, or not at all: a batch's try-on events, fit advice, frame outcomes, dead letters and session
states commit together with the consumer offsets past the records that produced them. A worker killed mid-interval
leaves an open transaction that the broker aborts (at once when a worker of the same `VTO_WORKER_INSTANCE`
starts, else after `VTO_TRANSACTION_TIMEOUT_S`); the partition's next owner handles those records again from
the committed offsets, with the session states of the last committed batch.

Shoppers read uncommitted: a rendered frame shows the moment it is written. A frame of an aborted batch can
therefore reach a shopper twice, with the same sequence number (clients keep the newest).

A record the broker can never take (over its topic's size limit) is left out and counted
(`vto_publish_errors_total{topic}`); any other failure aborts the transaction and the batch is sent again, so
the agent never dies on a publish error and nothing it consumed is skipped.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka.errors import (
    CorruptRecordException,
    KafkaError,
    MessageSizeTooLargeError,
    ProducerFenced,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from aiokafka.structs import TopicPartition

from streams import tracing
from streams.metrics import PublishMetrics
from streams.pipeline import Outputs
from streams.settings import Settings
from streams.stack.kafka import record_limits

log = logging.getLogger(__name__)

RECORD_OVERHEAD = 1024  # bytes a record batch adds around one record, with room to spare
RETRY_DELAYS_S = (0.05, 0.2, 0.5, 1.0, 2.0)  # between attempts of one batch; the last repeats until it goes
# What no broker will ever take: such a record is left out (and counted) rather than holding its batch forever.
NEVER_TAKEN = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError, CorruptRecordException)
GIVE_UP_S = 120.0  # a batch that cannot be committed for this long stops the worker (it is restarted)


class Producer(Protocol):
    """What the publisher needs of aiokafka's AIOKafkaProducer (tests pass a fake)."""

    async def begin_transaction(self) -> None: ...

    async def send(
        self, topic: str, value: bytes | None, key: bytes | None, partition: int | None, headers: Any = None
    ) -> Any: ...

    async def send_offsets_to_transaction(self, offsets: dict[TopicPartition, int], group_id: str) -> None: ...

    async def commit_transaction(self) -> None: ...

    async def abort_transaction(self) -> None: ...


@dataclass(frozen=True)
class Out:
    """One record to send: its topic (and label for metrics), key, value and, for states, partition."""

    topic: str
    label: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


def records(out: Outputs, settings: Settings) -> list[Out]:
    """A batch's outputs in the order they are sent (states last: a state accounts for its frames)."""

    def headers(kind: str, index: int) -> tuple[tuple[str, bytes], ...]:
        traceparent = out.traces.get((kind, index))
        return ((tracing.HEADER, traceparent.encode()),) if traceparent else ()

    def traced(topic: str, label: str, kind: str, pairs: Sequence[tuple[bytes | None, bytes]]) -> list[Out]:
        return [Out(topic, label, k, v, None, headers(kind, i)) for i, (k, v) in enumerate(pairs)]

    listed = traced(settings.rendered_topic, "rendered", "rendered", out.rendered)
    listed += [
        Out(settings.replies_topic, "replies", k, v, p, headers("replies", i))
        for i, (p, k, v) in enumerate(out.replies)
    ]
    listed += [Out(settings.events_topic, "events", k, v, p) for p, k, v in out.events]
    listed += traced(settings.dead_letter_topic, "dead_letter", "dead_letters", out.dead_letters)
    listed += traced(settings.outcomes_topic, "outcomes", "outcomes", out.outcomes)
    listed += [Out(settings.state_topic, "state", k, v, p) for p, k, v in out.states]
    return listed


class Publisher:
    """The worker's one transactional producer (control and frames agents take turns). Each batch's records are
    sent at once in the open transaction (shoppers read uncommitted: a rendered frame shows without waiting); the
    transaction, with the consumer offsets past every batch in it, commits once it has been open
    `VTO_COMMIT_INTERVAL_S` (`publish`), or when the worker's timer or a rebalance asks (`flush`): one commit's
    round trips are paid per interval, not per batch. Offsets are {(topic, partition): next offset to read}."""

    def __init__(
        self,
        producer: Producer,
        settings: Settings,
        metrics: PublishMetrics,
        renew: Callable[[], Awaitable[Producer]] | None = None,
        group: str = "",
    ) -> None:
        self.producer, self.settings, self.metrics = producer, settings, metrics
        self.group = group or settings.worker_group  # the consumer group whose offsets commit with the records
        self.renew = renew  # a new producer of the same transactional id, for one that was fenced
        self.limits = record_limits(settings)  # per topic, as the topics are declared
        self.lock = asyncio.Lock()
        self.records: list[Out] = []  # sent (or to send) in the open transaction
        self.offsets: dict[TopicPartition, int] = {}  # to commit with it
        self.sent: list[tuple[Out, Any]] = []  # (record, acknowledgement) of what went out in it
        self.opened = 0.0  # monotonic time it began; 0: none is open
        self.send_error: KafkaError | None = None  # once a send failed: the commit aborts and sends all again

    async def publish(self, out: Outputs, offsets: Mapping[tuple[str, int], int]) -> int:
        """Send a batch's outputs in the open transaction and add its offsets to it; commit when the interval
        is up. Returns the records left out because no broker would ever take them."""
        return await self.publish_records(records(out, self.settings), offsets)

    async def publish_records(self, listed: Sequence[Out], offsets: Mapping[tuple[str, int], int]) -> int:
        """`publish` for records listed by the caller (the analytics worker's)."""
        batch, refused = [], 0
        for record in listed:
            size = len(record.key or b"") + len(record.value or b"") + RECORD_OVERHEAD
            if size > self.limits[record.topic]:
                self._refused(record, f"{size} bytes is over the topic's limit")
                refused += 1
            else:
                batch.append(record)
        async with self.lock:
            self.records += batch
            for (topic, partition), offset in offsets.items():
                tp = TopicPartition(topic, partition)
                self.offsets[tp] = max(self.offsets.get(tp, 0), offset)
            if self.send_error is None:
                await self._send(batch)
            if time.monotonic() - self.opened >= self.settings.commit_interval_s:
                refused += await self._commit()
        return refused

    async def flush(self) -> int:
        """Commit the open transaction now, if there is one (the worker's timer, a rebalance, shutdown)."""
        async with self.lock:
            return await self._commit() if self.records or self.offsets else 0

    async def _send(self, batch: list[Out]) -> None:
        try:
            if not self.opened:
                await self.producer.begin_transaction()
                self.opened = time.monotonic()
            for record in batch:
                try:
                    ack = await self.producer.send(
                        record.topic, record.value, record.key, record.partition, headers=list(record.headers) or None
                    )
                except NEVER_TAKEN as exc:
                    self._refused(record, str(exc))
                    self.records.remove(record)
                    continue
                self.sent.append((record, ack))
        except BaseException as exc:  # aiokafka raises more than KafkaError (its state checks are assertions)
            log.error("publish failed: %s", exc)
            self.send_error = exc if isinstance(exc, KafkaError) else KafkaError(repr(exc))
            if not isinstance(exc, Exception):
                raise  # cancelled: the batch stays in the transaction to commit or abort

    def _new_transaction(self) -> None:
        """Nothing sent yet in the next transaction (begun by the next `_send`)."""
        self.sent, self.opened, self.send_error = [], 0.0, None

    async def _commit(self) -> int:
        """Commit the open transaction; on any failure, abort it and send all it held again in a fresh one until
        the broker takes it. Returns the records left out."""
        started, refused = time.monotonic(), 0
        for attempt in itertools.count():
            failed = await self._finish()
            if failed is None:
                self.metrics.stage_seconds.labels("publish").observe(time.monotonic() - started)
                self.records, self.offsets = [], {}
                self._new_transaction()
                return refused
            lasting = [record for record, exc in failed if record and isinstance(exc, NEVER_TAKEN)]
            for record in lasting:
                self._refused(record, "the broker refused it")
                self.records.remove(record)
            refused += len(lasting)
            if time.monotonic() - started > GIVE_UP_S:
                # Broker gone for minutes, or a producer that cannot recover: stop, so that the orchestrator
                # restarts this worker and the partitions' records are handled again from the committed offsets.
                log.critical("no transaction committed for %.0f s; exiting", GIVE_UP_S)
                os._exit(70)
            delay = RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S) - 1)]
            log.warning("transaction of %d records aborted; sending again in %.2f s", len(self.records), delay)
            self.metrics.publish_retries.inc()
            await asyncio.sleep(delay)
            self._new_transaction()
            await self._send(list(self.records))
        raise AssertionError("unreachable")  # itertools.count() never ends

    async def _finish(self) -> list[tuple[Out | None, BaseException]] | None:
        """Wait for the open transaction's acknowledgements, then commit it with the offsets; None when committed,
        else what failed (the transaction is aborted)."""
        producer = self.producer
        failed: list[tuple[Out | None, BaseException]] = []
        try:
            if self.send_error is not None or len(self.sent) != len(self.records):
                raise self.send_error or KafkaError("a record could not be sent")
            if not self.opened:  # offsets only (every record was refused): still a transaction of its own
                await producer.begin_transaction()
                self.opened = time.monotonic()
            acks = await asyncio.gather(*(ack for _, ack in self.sent), return_exceptions=True)
            failed += [(r, ack) for (r, _), ack in zip(self.sent, acks, strict=True) if isinstance(ack, BaseException)]
            if any(isinstance(exc, ProducerFenced) for _, exc in failed):
                raise ProducerFenced()
            if not failed:
                if self.offsets:
                    await producer.send_offsets_to_transaction(self.offsets, self.group)
                await producer.commit_transaction()
                return None
        except ProducerFenced as exc:
            # The broker bumped this transactional id's epoch: a transaction that outlived its timeout (the broker
            # was away), or another worker started with the same VTO_WORKER_INSTANCE. The records go again with a
            # new producer; twice-configured workers keep fencing each other, which the log says.
            log.error("this worker's producer was fenced (%s): a new one takes over its transactions", exc)
            await self._renew()
            return [(None, exc)]
        except Exception as exc:  # KafkaError, a timeout, or aiokafka's assertion of a producer in a fatal state
            failed.append((None, exc))
        for _, error in failed:
            log.error("publish failed: %s", error)
        try:
            await producer.abort_transaction()
        except Exception as exc:  # fenced meanwhile, or fatal: a new producer aborts what this one left open
            log.error("could not abort the transaction (%s): a new producer takes over", exc)
            await self._renew()
        return failed

    async def _renew(self) -> None:
        if self.renew is None:
            os._exit(70)
        try:
            self.producer = await self.renew()
        except Exception as exc:  # the broker away: the commit loop tries again
            log.error("could not start a new producer: %s", exc)

    def _refused(self, record: Out, why: str) -> None:
        log.error("a record of %s was left out of its batch: %s", record.label, why)
        self.metrics.publish_errors.labels(record.label).inc()
