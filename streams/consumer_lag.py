"""Consumer lag per partition, in records and in seconds, as SREs (and KEDA) read it.

Lag in records is the partition's high watermark minus the next offset this worker will handle. Lag in seconds is
how long the oldest unhandled record has waited: the way kafka-lag-exporter estimates it, from a short history of
(time, high watermark) samples: the record at offset `next` arrived between the last sample whose watermark was
still at or below `next` and the first one above it. Resolution is the sampling interval (the worker samples every
second); no record needs to be fetched or decoded for it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from streams.metrics import Metrics

HISTORY = 600  # samples kept per partition: 10 minutes at one a second; an older backlog reads as >= that


@dataclass
class PartitionLag:
    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=HISTORY))

    def sample(self, now: float, highwater: int) -> None:
        self.samples.append((now, highwater))

    def lag(self, now: float, next_offset: int) -> tuple[int, float]:
        """(records, seconds) not yet handled when the next record to handle is `next_offset`."""
        if not self.samples:
            return 0, 0.0
        records = max(self.samples[-1][1] - next_offset, 0)
        if records == 0:
            return 0, 0.0
        arrived = self.samples[0][0]  # not in the history: it waited at least as long as the history reaches
        for when, highwater in reversed(self.samples):
            if highwater <= next_offset:
                break
            arrived = when
        return records, max(now - arrived, 0.0)


class ConsumerLag:
    """The worker's partitions: their watermarks (sampled) and how far it has handled them."""

    def __init__(self) -> None:
        self.partitions: dict[tuple[str, int], PartitionLag] = {}
        self.handled: dict[tuple[str, int], int] = {}  # next offset to handle, per partition

    def assigned(self, partitions: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """Keep the given partitions; return those that moved away (their metrics are removed)."""
        gone = [tp for tp in self.partitions if tp not in partitions]
        for tp in gone:
            self.partitions.pop(tp)
            self.handled.pop(tp, None)
        for tp in partitions:
            self.partitions.setdefault(tp, PartitionLag())
        return gone

    def handled_up_to(self, offsets: dict[tuple[str, int], int]) -> None:
        for tp, offset in offsets.items():
            self.handled[tp] = max(self.handled.get(tp, 0), offset)

    def sample(self, now: float, highwaters: dict[tuple[str, int], int], positions: dict[tuple[str, int], int]) -> None:
        """Record the watermarks; a partition with nothing handled yet starts from its consumer position."""
        for tp, highwater in highwaters.items():
            if tp in self.partitions:
                self.partitions[tp].sample(now, highwater)
                if tp not in self.handled and tp in positions:
                    self.handled[tp] = positions[tp]

    def lags(self, now: float) -> dict[tuple[str, int], tuple[int, float]]:
        return {tp: p.lag(now, self.handled[tp]) for tp, p in self.partitions.items() if tp in self.handled}

    async def export(self, consumer: Any, metrics: Metrics, topic: str, now: float) -> None:
        """One sample of the partitions of `topic` the consumer (Faust's) owns now, into the lag gauges; the gauges
        of partitions that moved away are removed, so a worker exports the lag of exactly what it owns."""
        owned = [tp for tp in consumer.assignment() if tp.topic == topic]
        for gone_topic, partition in self.assigned([(tp.topic, tp.partition) for tp in owned]):
            for gauge in (metrics.lag_messages, metrics.lag_seconds):
                gauge.remove(gone_topic, str(partition))
        if not owned:
            return
        highwaters = await consumer.highwaters(*owned)
        positions = {}
        for tp in owned:
            if (tp.topic, tp.partition) not in self.handled:  # nothing handled yet: from where it reads
                position = await consumer.position(tp)
                if position is not None:
                    positions[(tp.topic, tp.partition)] = position
        self.sample(now, {(tp.topic, tp.partition): hw for tp, hw in highwaters.items() if hw is not None}, positions)
        for (lag_topic, partition), (records, seconds) in self.lags(now).items():
            metrics.lag_messages.labels(lag_topic, str(partition)).set(records)
            metrics.lag_seconds.labels(lag_topic, str(partition)).set(seconds)
