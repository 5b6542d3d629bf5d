"""Reading topics to their end without joining a group: session states read back on takeover (`read_states`),
and any topic for `vto account` (`read_to_end`).

States are written by the worker that handles a session (streams/app.py `publish`), to the state topic's
partition with the same number as the session's frames partition. So the worker that takes over frames
partition p reads state partition p from its start to its end (compaction keeps it to one record per live
session) and continues every session of it with its tracking state, its smoothing state and the events it
has already sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from streams import kafka_client
from streams.settings import Settings

log = logging.getLogger(__name__)


def read_to_end(
    settings: Settings, topic: str, partitions: list[int] | None = None, timeout_s: float = 30.0, group: str = ""
) -> Iterator[Message]:
    """Every record of `topic`'s `partitions` (None: all), from the start to the end they had when called.
    Uses `assign` only: never joins a group or commits (state restore on takeover, `vto account`); its group id
    is `<group>.reader` (default the workers' group)."""
    consumer = Consumer(
        kafka_client.confluent(
            settings,
            **{
                "group.id": f"{group or settings.worker_group}.reader",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 10,  # the end of a partition is noticed at once, not after librdkafka's 500 ms
                "fetch.max.bytes": 64 * 1024 * 1024,
            },
        ),
        logger=logging.getLogger("librdkafka"),  # its lines go through the worker's (JSON) logging, not stderr
    )
    try:
        if partitions is None:
            partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        pending: dict[int, int] = {}
        starts = []
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                pending[p] = high
                starts.append(TopicPartition(topic, p, low))
        if not starts:
            return
        consumer.assign(starts)
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} partitions {sorted(pending)} not read within {timeout_s} s")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            partition, error = int(msg.partition() or 0), msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.pop(partition, None)
                    continue
                raise KafkaException(error)
            yield msg
            if int(msg.offset() or 0) + 1 >= pending.get(partition, 0):
                pending.pop(partition, None)
    finally:
        consumer.close()


def read_states(settings: Settings, partitions: list[int], timeout_s: float = 30.0) -> list[tuple[bytes, bytes | None]]:
    """The latest (key, value) per session of the given state partitions; value None = tombstone.

    Only the last record per key is kept while reading, so memory is bounded by the live sessions, not by the
    records compaction has not yet removed."""
    latest: dict[bytes, bytes | None] = {}
    for msg in read_to_end(settings, settings.state_topic, partitions, timeout_s):
        key = msg.key()
        if key is not None:
            latest.pop(key, None)  # re-insert: dict order stays the order of each key's last record
            latest[key] = msg.value()
    return list(latest.items())
