"""Stage 'publish': a batch's outputs and its consumer offsets go in one transaction; what the broker can never take
is left out and counted, anything else aborts the transaction and the whole batch goes again; the agent never
dies on a publish error. (The real broker: tests/integration/test_worker_takeover.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, ProducerFenced
from aiokafka.structs import TopicPartition
from prometheus_client import CollectorRegistry

from streams import publisher as publisher_module
from streams.app import next_offsets
from streams.metrics import Metrics
from streams.pipeline import Outputs, Record
from streams.publisher import Publisher
from streams.settings import Settings

SETTINGS = Settings(max_message_bytes=4000, commit_interval_s=0)  # a commit per publish, unless a test says


class FakeProducer:
    """Like aiokafka's transactional producer: records and offsets become visible only when a transaction commits.
    `fail` maps a value to the exception its acknowledgement raises, once per listed exception."""

    def __init__(
        self,
        fail: dict[bytes, list[BaseException]] | None = None,
        raise_on_send: dict[bytes, list[BaseException]] | None = None,
        abort_error: BaseException | None = None,
    ) -> None:
        self.fail = fail or {}
        self.raise_on_send = raise_on_send or {}  # raised by send() itself, as aiokafka's state checks do
        self.abort_error = abort_error
        self.committed: list[tuple[str, bytes | None, int | None]] = []
        self.offsets: dict[TopicPartition, int] = {}
        self.open: list[tuple[str, bytes | None, int | None]] | None = None
        self.open_offsets: dict[TopicPartition, int] = {}
        self.aborted = 0
        self.headers: dict[bytes, Any] = {}  # value -> the headers it was sent with

    async def begin_transaction(self) -> None:
        assert self.open is None, "a transaction is already open"
        self.open, self.open_offsets = [], {}

    async def send(
        self, topic: str, value: bytes | None, key: bytes | None, partition: int | None, headers: Any = None
    ) -> Any:
        assert self.open is not None, "send outside a transaction"
        raising = self.raise_on_send.get(value or b"")
        if raising:
            raise raising.pop(0)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        failures = self.fail.get(value or b"")
        if failures:
            future.set_exception(failures.pop(0))
        else:
            self.open.append((topic, value, partition))
            self.headers[value or b""] = headers
            future.set_result(None)
        return future

    async def send_offsets_to_transaction(self, offsets: dict[TopicPartition, int], group_id: str) -> None:
        assert self.open is not None and group_id == SETTINGS.worker_group
        self.open_offsets = dict(offsets)

    async def commit_transaction(self) -> None:
        assert self.open is not None
        self.committed += self.open
        self.offsets.update(self.open_offsets)
        self.open = None

    async def abort_transaction(self) -> None:
        if self.abort_error is not None:
            raise self.abort_error  # a producer in aiokafka's fatal state cannot abort
        self.open, self.aborted = None, self.aborted + 1


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publisher_module, "RETRY_DELAYS_S", (0.0,))


def batch() -> Outputs:
    return Outputs(
        rendered=[(b"s1", b"frame-0"), (b"s1", b"frame-1")],
        events=[(3, b"s1/0", b"event")],
        outcomes=[(b"s1", b"outcome-0"), (b"s1", b"outcome-1")],
        states=[(3, b"s1", b"state")],
    )


EVERY_VALUE = [b"frame-0", b"frame-1", b"event", b"outcome-0", b"outcome-1", b"state"]  # batch()'s, in send order


def metric(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.registry.get_sample_value(name, labels or {}) or 0.0


async def test_outputs_and_offsets_commit_together_states_last() -> None:
    producer, metrics = FakeProducer(), Metrics(CollectorRegistry())
    taken = [Record(SETTINGS.frames_topic, 3, 41, b"s1", b""), Record(SETTINGS.frames_topic, 3, 40, b"s1", b"")]
    offsets = next_offsets(taken)
    assert await Publisher(producer, SETTINGS, metrics).publish(batch(), offsets) == 0
    assert [(topic, value) for topic, value, _ in producer.committed] == [
        (SETTINGS.rendered_topic, b"frame-0"),
        (SETTINGS.rendered_topic, b"frame-1"),
        (SETTINGS.events_topic, b"event"),
        (SETTINGS.outcomes_topic, b"outcome-0"),
        (SETTINGS.outcomes_topic, b"outcome-1"),
        (SETTINGS.state_topic, b"state"),
    ]
    assert producer.committed[-1][2] == 3  # the state goes to the session's frames partition number
    assert producer.offsets == {TopicPartition(SETTINGS.frames_topic, 3): 42}  # past the last record taken


async def test_what_is_written_about_a_frame_carries_its_trace_context_in_a_header() -> None:
    rendered, outcome = "00-" + "a" * 32 + "-" + "b" * 16 + "-01", "00-" + "c" * 32 + "-" + "d" * 16 + "-01"
    out, producer = batch(), FakeProducer()
    out.dead_letters = [(b"s1", b"letter")]
    out.traces = {("rendered", 1): rendered, ("outcomes", 1): outcome, ("dead_letters", 0): outcome}
    publisher = Publisher(producer, SETTINGS, Metrics(CollectorRegistry()))
    await publisher.publish(out, {})
    await publisher.flush()
    assert producer.headers[b"frame-1"] == [("traceparent", rendered.encode())]
    assert producer.headers[b"outcome-1"] == [("traceparent", outcome.encode())]
    assert producer.headers[b"letter"] == [("traceparent", outcome.encode())]
    assert producer.headers[b"frame-0"] is None and producer.headers[b"state"] is None


async def test_a_record_not_acknowledged_aborts_the_batch_and_the_whole_batch_goes_again() -> None:
    producer = FakeProducer(fail={b"event": [KafkaTimeoutError()]})
    metrics = Metrics(CollectorRegistry())
    offsets = {(SETTINGS.frames_topic, 0): 7}
    assert await Publisher(producer, SETTINGS, metrics).publish(batch(), offsets) == 0
    assert producer.aborted == 1
    values = [value for _, value, _ in producer.committed]
    assert values == [b"frame-0", b"frame-1", b"event", b"outcome-0", b"outcome-1", b"state"]  # each once
    assert producer.offsets == {TopicPartition(SETTINGS.frames_topic, 0): 7}
    assert metric(metrics, "vto_publish_retries_total") == 1
    assert metric(metrics, "vto_publish_errors_total", {"topic": "events"}) == 0


async def test_a_record_no_broker_takes_is_left_out_and_counted_and_the_rest_commits() -> None:
    metrics = Metrics(CollectorRegistry())
    out = batch()
    out.rendered.insert(1, (b"s1", b"x" * 5000))  # over the rendered topic's limit: refused before sending
    producer = FakeProducer(fail={b"outcome-1": [MessageSizeTooLargeError()]})  # refused by the broker
    assert await Publisher(producer, SETTINGS, metrics).publish(out, {(SETTINGS.frames_topic, 1): 3}) == 2
    assert [value for _, value, _ in producer.committed] == [b"frame-0", b"frame-1", b"event", b"outcome-0", b"state"]
    assert producer.offsets == {TopicPartition(SETTINGS.frames_topic, 1): 3}
    assert metric(metrics, "vto_publish_errors_total", {"topic": "rendered"}) == 1
    assert metric(metrics, "vto_publish_errors_total", {"topic": "outcomes"}) == 1


async def test_a_dead_letter_may_be_larger_than_a_frame() -> None:
    metrics = Metrics(CollectorRegistry())
    producer = FakeProducer()
    out = Outputs(dead_letters=[(b"s1", b"d" * 6000)])  # over a frame's limit, within the dead-letter topic's
    assert await Publisher(producer, SETTINGS, metrics).publish(out, {}) == 0
    assert [topic for topic, _, _ in producer.committed] == [SETTINGS.dead_letter_topic]


async def test_control_and_frames_agents_take_turns_in_the_one_producer() -> None:
    producer = FakeProducer()  # asserts that no transaction begins while another is open
    publisher = Publisher(producer, SETTINGS, Metrics(CollectorRegistry()))
    await asyncio.gather(*(publisher.publish(batch(), {(SETTINGS.frames_topic, i): i}) for i in range(5)))
    assert len(producer.committed) == 5 * 6 and len(producer.offsets) == 5


async def test_batches_go_out_at_once_and_commit_together_once_the_interval_is_up() -> None:
    producer = FakeProducer()
    settings = Settings(max_message_bytes=4000, commit_interval_s=3600)
    publisher = Publisher(producer, settings, Metrics(CollectorRegistry()))
    await publisher.publish(batch(), {(SETTINGS.frames_topic, 0): 5})
    await publisher.publish(batch(), {(SETTINGS.frames_topic, 0): 9, (SETTINGS.frames_topic, 1): 2})
    assert producer.open is not None and len(producer.open) == 12  # sent: a shopper reading uncommitted sees them
    assert producer.committed == [] and producer.offsets == {}  # committed readers do not yet
    await publisher.flush()  # the worker's timer
    assert len(producer.committed) == 12 and producer.open is None
    assert producer.offsets == {
        TopicPartition(SETTINGS.frames_topic, 0): 9,
        TopicPartition(SETTINGS.frames_topic, 1): 2,
    }
    await publisher.flush()  # nothing open: nothing happens
    assert len(producer.committed) == 12


async def test_a_failure_in_an_open_transaction_sends_all_it_held_again_each_once() -> None:
    producer = FakeProducer(fail={b"event": [KafkaTimeoutError()]})  # the first batch's event is lost
    settings = Settings(max_message_bytes=4000, commit_interval_s=3600)
    publisher = Publisher(producer, settings, Metrics(CollectorRegistry()))
    await publisher.publish(batch(), {(SETTINGS.frames_topic, 0): 5})
    second = Outputs(rendered=[(b"s2", b"frame-x")])
    await publisher.publish(second, {(SETTINGS.frames_topic, 0): 6})
    await publisher.flush()
    assert producer.aborted == 1
    values = [value for _, value, _ in producer.committed]
    assert sorted(values) == sorted(
        [b"frame-0", b"frame-1", b"event", b"outcome-0", b"outcome-1", b"state", b"frame-x"]
    )
    assert producer.offsets == {TopicPartition(SETTINGS.frames_topic, 0): 6}


async def test_a_send_that_raises_anything_mid_batch_aborts_and_the_whole_batch_goes_again() -> None:
    """aiokafka's send() raises more than KafkaError (an assertion on an unknown partition, an illegal state):
    the records after it were never sent, so the transaction must not commit the batch's offsets without them."""
    producer = FakeProducer(raise_on_send={b"event": [AssertionError("Unrecognized partition")]})
    publisher = Publisher(producer, SETTINGS, Metrics(CollectorRegistry()))
    assert await publisher.publish(batch(), {(SETTINGS.frames_topic, 0): 3}) == 0
    assert producer.aborted == 1
    assert [v for _, v, _ in producer.committed] == EVERY_VALUE


@pytest.mark.parametrize(
    "broken",
    [
        FakeProducer(fail={b"event": [ProducerFenced()]}),  # the broker bumped its epoch
        FakeProducer(fail={b"event": [KafkaTimeoutError()]}, abort_error=AssertionError("fatal state")),
    ],
    ids=["fenced", "cannot-abort"],
)
async def test_a_producer_that_is_fenced_or_cannot_abort_is_replaced_and_the_batch_goes_once_through_the_new_one(
    broken: FakeProducer,
) -> None:
    fresh = FakeProducer()

    async def renew() -> FakeProducer:
        return fresh

    publisher = Publisher(broken, SETTINGS, Metrics(CollectorRegistry()), renew=renew)  # type: ignore[arg-type]
    assert await publisher.publish(batch(), {(SETTINGS.frames_topic, 0): 4}) == 0
    assert broken.committed == [] and publisher.producer is fresh
    assert [v for _, v, _ in fresh.committed] == EVERY_VALUE
    assert fresh.offsets == {TopicPartition(SETTINGS.frames_topic, 0): 4}
