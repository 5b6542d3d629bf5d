"""Consumer lag in records and seconds, from sampled high watermarks."""

from faust.types import TP as TopicPartition
from prometheus_client import CollectorRegistry

from streams.consumer_lag import HISTORY, ConsumerLag, PartitionLag
from streams.metrics import Metrics

TP = ("vto.frames.v1", 0)  # a (topic, partition) key of the lag tables


def test_caught_up_is_zero_lag() -> None:
    lag = PartitionLag()
    lag.sample(100.0, 50)
    assert lag.lag(100.5, 50) == (0, 0.0)


def test_seconds_count_from_when_the_oldest_unhandled_record_arrived() -> None:
    lag = PartitionLag()
    for t, highwater in [(100.0, 10), (101.0, 10), (102.0, 12), (103.0, 15), (104.0, 20)]:
        lag.sample(t, highwater)
    # Offset 10 (the next to handle) arrived between the samples at 101 s (watermark 10) and 102 s (12).
    assert lag.lag(104.0, 10) == (10, 2.0)
    # Offset 13 arrived by 103 s.
    assert lag.lag(104.0, 13) == (7, 1.0)


def test_a_backlog_older_than_the_history_reads_at_least_the_history() -> None:
    lag = PartitionLag()
    for i in range(HISTORY + 5):
        lag.sample(float(i), 1000 + i)
    records, seconds = lag.lag(float(HISTORY + 5), 0)
    assert len(lag.samples) == HISTORY  # bounded: ten minutes of samples, not the whole backlog's
    assert records == 1000 + HISTORY + 4 and seconds == HISTORY


def test_partitions_that_move_away_are_forgotten_and_new_ones_start_at_their_position() -> None:
    lag = ConsumerLag()
    assert lag.assigned([TP, ("vto.frames.v1", 1)]) == []
    lag.sample(10.0, {TP: 30, ("vto.frames.v1", 1): 5}, {TP: 25, ("vto.frames.v1", 1): 5})
    lag.handled_up_to({TP: 28})
    assert lag.lags(10.0) == {TP: (2, 0.0), ("vto.frames.v1", 1): (0, 0.0)}
    assert lag.assigned([TP]) == [("vto.frames.v1", 1)]
    assert list(lag.lags(11.0)) == [TP]


class FakeConsumer:
    """What the export needs of Faust's consumer: its assignment, high watermarks and positions."""

    def __init__(
        self,
        assignment: list[TopicPartition],
        highwaters: dict[TopicPartition, int],
        positions: dict[TopicPartition, int],
    ) -> None:
        self.owned, self.highwater, self.positions = assignment, highwaters, positions

    def assignment(self) -> set[TopicPartition]:
        return set(self.owned)

    async def highwaters(self, *tps: TopicPartition) -> dict[TopicPartition, int]:
        return {tp: self.highwater[tp] for tp in tps}

    async def position(self, tp: TopicPartition) -> int | None:
        return self.positions.get(tp)


def gauges(metrics: Metrics, name: str) -> dict[str, float]:
    return {
        s.labels["partition"]: s.value
        for family in metrics.registry.collect()
        if family.name == name
        for s in family.samples
    }


async def test_the_worker_exports_the_lag_of_exactly_the_partitions_it_owns() -> None:
    frames = [TopicPartition("vto.frames.v1", p) for p in range(3)]
    control = TopicPartition("vto.session-control.v1", 0)
    consumer = FakeConsumer(
        [*frames, control], {**dict.fromkeys(frames, 50), control: 9}, {frames[0]: 40, frames[1]: 50, frames[2]: 50}
    )
    lag, metrics = ConsumerLag(), Metrics(CollectorRegistry())
    await lag.export(consumer, metrics, "vto.frames.v1", 100.0)
    assert gauges(metrics, "vto_consumer_lag_messages") == {"0": 10, "1": 0, "2": 0}  # from the positions
    lag.handled_up_to({("vto.frames.v1", 0): 45})
    consumer.highwater[frames[0]] = 60
    await lag.export(consumer, metrics, "vto.frames.v1", 103.0)
    assert gauges(metrics, "vto_consumer_lag_messages") == {"0": 15, "1": 0, "2": 0}
    assert gauges(metrics, "vto_consumer_lag_seconds") == {"0": 3.0, "1": 0.0, "2": 0.0}  # offset 45 came by 100 s
    consumer.owned = [frames[0], control]  # partitions 1 and 2 moved to another worker: their series go
    await lag.export(consumer, metrics, "vto.frames.v1", 104.0)
    assert set(gauges(metrics, "vto_consumer_lag_messages")) == {"0"}
    assert set(gauges(metrics, "vto_consumer_lag_seconds")) == {"0"}
