"""Consumer lag in records and seconds, from sampled high watermarks."""

from streams.consumer_lag import HISTORY, ConsumerLag, PartitionLag

TP = ("vto.frames.v1", 0)


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
    assert records == 1000 + HISTORY + 4 and seconds >= HISTORY - 1


def test_partitions_that_move_away_are_forgotten_and_new_ones_start_at_their_position() -> None:
    lag = ConsumerLag()
    assert lag.assigned([TP, ("vto.frames.v1", 1)]) == []
    lag.sample(10.0, {TP: 30, ("vto.frames.v1", 1): 5}, {TP: 25, ("vto.frames.v1", 1): 5})
    lag.handled_up_to({TP: 28})
    assert lag.lags(10.0) == {TP: (2, 0.0), ("vto.frames.v1", 1): (0, 0.0)}
    assert lag.assigned([TP]) == [("vto.frames.v1", 1)]
    assert list(lag.lags(11.0)) == [TP]
