"""Stage 'publish': a micro-batch's outputs and the offsets of the records it consumed, in one Kafka transaction.

Readers that read committed (analytics, `vto account`, the session states a takeover reads back) see each batch
whole and once, or not at all: a batch's try-on events, fit advice, frame outcomes, dead letters and session
states commit together with the consumer offsets past the records that produced them. A worker killed mid-batch
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
from collections.abc import Awaitable, Callable, Mapping
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

from streams.metrics import Metrics
from streams.pipeline import Outputs
from streams.settings import Settings

log = logging.getLogger(__name__)

RECORD_OVERHEAD = 1024  # bytes a record batch adds around one record, with room to spare
RETRY_DELAYS_S = (0.05, 0.2, 0.5, 1.0, 2.0)  # between attempts of one batch; the last repeats until it goes
# What no broker will ever take: such a record is left out (and counted) rather than holding its batch forever.
NEVER_TAKEN = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError, CorruptRecordException)
GIVE_UP_S = 120.0  # a batch that cannot be committed for this long stops the worker (it is restarted)


class Producer(Protocol):
    """What the publisher needs of aiokafka's AIOKafkaProducer (tests pass a fake)."""

    async def begin_transaction(self) -> None: ...

    async def send(self, topic: str, value: bytes | None, key: bytes | None, partition: int | None) -> Any: ...

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


def records(out: Outputs, settings: Settings) -> list[Out]:
    """A batch's outputs in the order they are sent (states last: a state accounts for its frames)."""
    listed = [Out(settings.rendered_topic, "rendered", k, v) for k, v in out.rendered]
    listed += [Out(settings.events_topic, "events", k, v, p) for p, k, v in out.events]
    listed += [Out(settings.dead_letter_topic, "dead_letter", k, v) for k, v in out.dead_letters]
    listed += [Out(settings.outcomes_topic, "outcomes", k, v) for k, v in out.outcomes]
    listed += [Out(settings.state_topic, "state", k, v, p) for p, k, v in out.states]
    return listed


def size_limit(settings: Settings, topic: str) -> int:
    """The largest record a topic takes (its max.message.bytes, streams/stack/kafka.py `topic_specs`)."""
    if topic == settings.dead_letter_topic:
        return 2 * settings.max_message_bytes
    if topic in (settings.frames_topic, settings.rendered_topic):
        return settings.max_message_bytes
    return settings.max_message_bytes + 65536  # the broker's message.max.bytes


class Publisher:
    """Sends each batch in a transaction of the worker's one transactional producer (control and frames agents
    take turns). Offsets are {(topic, partition): next offset to read}."""

    def __init__(
        self,
        producer: Producer,
        settings: Settings,
        metrics: Metrics,
        renew: Callable[[], Awaitable[Producer]] | None = None,
    ) -> None:
        self.producer, self.settings, self.metrics = producer, settings, metrics
        self.renew = renew  # a new producer of the same transactional id, for one that was fenced
        self.lock = asyncio.Lock()

    async def publish(self, out: Outputs, offsets: Mapping[tuple[str, int], int]) -> int:
        """Send `out` and commit `offsets` in one transaction, retrying until the broker takes it; returns the
        records left out because no broker would ever take them."""
        pending, refused = [], 0
        for record in records(out, self.settings):
            size = len(record.key or b"") + len(record.value or b"") + RECORD_OVERHEAD
            if size > size_limit(self.settings, record.topic):
                self._refused(record, f"{size} bytes is over the topic's limit")
                refused += 1
            else:
                pending.append(record)
        commit = {TopicPartition(topic, partition): offset for (topic, partition), offset in offsets.items()}
        async with self.lock:
            started = time.monotonic()
            for attempt in itertools.count():
                failed = await self._attempt(pending, commit)
                if failed is None:
                    return refused
                lasting = [record for record, exc in failed if record and isinstance(exc, NEVER_TAKEN)]
                for record in lasting:
                    self._refused(record, "the broker refused it")
                    pending.remove(record)
                refused += len(lasting)
                if time.monotonic() - started > GIVE_UP_S:
                    # Broker gone for minutes, or a producer that cannot recover: stop, so that the orchestrator
                    # restarts this worker and the partitions' records are handled again from the committed offsets.
                    log.critical("no transaction committed for %.0f s; exiting", GIVE_UP_S)
                    os._exit(70)
                delay = RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S) - 1)]
                log.warning("transaction of %d records aborted; sending again in %.2f s", len(pending), delay)
                self.metrics.publish_retries.inc()
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # itertools.count() never ends

    async def _attempt(
        self, pending: list[Out], offsets: dict[TopicPartition, int]
    ) -> list[tuple[Out | None, BaseException]] | None:
        """One transaction; None when committed, else what failed (the transaction is aborted)."""
        producer = self.producer
        failed: list[tuple[Out | None, BaseException]] = []
        try:
            await producer.begin_transaction()
            sent = []
            for record in pending:
                try:
                    sent.append((record, await producer.send(record.topic, record.value, record.key, record.partition)))
                except KafkaError as exc:
                    failed.append((record, exc))
            acks = await asyncio.gather(*(ack for _, ack in sent), return_exceptions=True)
            failed += [(rec, ack) for (rec, _), ack in zip(sent, acks, strict=True) if isinstance(ack, BaseException)]
            if any(isinstance(exc, ProducerFenced) for _, exc in failed):
                raise ProducerFenced()
            if not failed:
                if offsets:
                    await producer.send_offsets_to_transaction(offsets, self.settings.worker_group)
                await producer.commit_transaction()
                return None
        except ProducerFenced as exc:
            # The broker bumped this transactional id's epoch: a transaction that outlived its timeout (the broker
            # was away), or another worker started with the same VTO_WORKER_INSTANCE. The batch goes again with a
            # new producer; twice-configured workers keep fencing each other, which the log says.
            log.error("this worker's producer was fenced (%s): a new one takes over its transactions", exc)
            if self.renew is None:
                os._exit(70)
            self.producer = await self.renew()
            return [(None, exc)]
        except (TimeoutError, KafkaError) as exc:
            failed.append((None, exc))
        for _, error in failed:
            log.error("publish failed: %s", error)
        try:
            await producer.abort_transaction()
        except KafkaError as exc:
            log.error("could not abort the transaction: %s", exc)
        return failed

    def _refused(self, record: Out, why: str) -> None:
        log.error("a record of %s was left out of its batch: %s", record.label, why)
        self.metrics.publish_errors.labels(record.label).inc()
