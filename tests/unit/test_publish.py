"""Stage 'publish': everything goes out, a record the broker refuses is counted and never kills the agent, and
session states go only after what they account for."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry

from streams.app import Topics, publish
from streams.metrics import Metrics
from streams.pipeline import Outputs


class FakeTopic:
    """Like a Faust topic: send() returns a future the broker resolves later; refuses values over `limit`."""

    def __init__(self, log: list[tuple[str, bytes | None]], name: str, limit: int = 1000, nack: bool = False) -> None:
        self.log, self.name, self.limit, self.nack = log, name, limit, nack

    async def send(self, key: bytes, value: bytes | None, partition: int | None = None) -> Any:
        if value is not None and len(value) > self.limit:
            raise ValueError(f"message of {len(value)} bytes is larger than {self.limit}")  # aiokafka: at send
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.nack:
            future.set_exception(RuntimeError("broker gone"))
        else:
            self.log.append((self.name, value))
            future.set_result(None)
        return future


async def test_an_oversized_record_is_counted_and_the_rest_goes_out() -> None:
    sent: list[tuple[str, bytes | None]] = []
    metrics = Metrics(CollectorRegistry())
    topics = Topics(*(FakeTopic(sent, name) for name in ("rendered", "events", "dlq", "state", "outcomes")))
    out = Outputs(
        rendered=[(b"s1", b"small"), (b"s1", b"x" * 5000), (b"s1", b"small too")],
        events=[(b"s1", b"event")],
        states=[(0, b"s1", b"state")],
        outcomes=[(b"s1", b"outcome")],
    )
    assert await publish(out, topics, metrics) == 1
    assert sent == [
        ("rendered", b"small"),
        ("rendered", b"small too"),
        ("events", b"event"),
        ("outcomes", b"outcome"),
        ("state", b"state"),
    ]
    assert metrics.registry.get_sample_value("vto_publish_errors_total", {"topic": "rendered"}) == 1


async def test_records_the_broker_never_acknowledges_are_counted_too() -> None:
    sent: list[tuple[str, bytes | None]] = []
    metrics = Metrics(CollectorRegistry())
    topics = Topics(
        FakeTopic(sent, "rendered", nack=True),
        FakeTopic(sent, "events"),
        FakeTopic(sent, "dlq"),
        FakeTopic(sent, "state"),
        FakeTopic(sent, "outcomes"),
    )
    out = Outputs(rendered=[(b"s1", b"a"), (b"s1", b"b")], states=[(0, b"s1", None)])
    assert await publish(out, topics, metrics) == 2
    assert sent == [("state", None)]  # the tombstone still goes
    assert metrics.registry.get_sample_value("vto_publish_errors_total", {"topic": "rendered"}) == 2
