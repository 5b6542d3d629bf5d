"""Read session states back from the compacted state topic when a worker is assigned frame partitions.

States are written by the worker that handles a session (streams/app.py `publish`), to the state topic's
partition with the same number as the session's frames partition. So the worker that takes over frames
partition p reads state partition p from its start to its end (compaction keeps it to one record per live
session) and continues every session of it with its tracking state, its smoothing state and the events it
has already sent.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from streams.settings import Settings

log = logging.getLogger(__name__)


def read_states(settings: Settings, partitions: list[int], timeout_s: float = 30.0) -> list[tuple[bytes, bytes | None]]:
    """The latest (key, value) per session of the given state partitions; value None = tombstone.

    Only the last record per key is kept while reading, so memory is bounded by the live sessions, not by the
    records compaction has not yet removed."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"{settings.worker_group}.state-restore",  # never commits: only `assign` is used
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "fetch.max.bytes": 64 * 1024 * 1024,
        }
    )
    latest: dict[bytes, bytes | None] = {}
    try:
        pending: dict[int, int] = {}
        starts = []
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(settings.state_topic, p), timeout=10)
            if high > low:
                pending[p] = high
                starts.append(TopicPartition(settings.state_topic, p, low))
        if not starts:
            return []
        consumer.assign(starts)
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"state partitions {sorted(pending)} not read within {timeout_s} s")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            partition, error, key = int(msg.partition() or 0), msg.error(), msg.key()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.pop(partition, None)
                    continue
                raise KafkaException(error)
            if key is not None:
                latest.pop(key, None)  # re-insert: dict order stays the order of each key's last record
                latest[key] = msg.value()
            if int(msg.offset() or 0) + 1 >= pending.get(partition, 0):
                pending.pop(partition, None)
    finally:
        consumer.close()
    return list(latest.items())
