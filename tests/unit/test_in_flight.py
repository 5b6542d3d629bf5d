"""The worker's work in flight (streams/in_flight.py): handled at once, published in the order it was taken; a
failure stops everything after it from being published and is reported once per item it stopped."""

from __future__ import annotations

import asyncio

import pytest

from streams.in_flight import InFlight


class Log:
    def __init__(self) -> None:
        self.published: list[str] = []
        self.failures: list[BaseException] = []

    async def publish(self, name: str) -> None:
        await asyncio.sleep(0)
        self.published.append(name)


async def work(name: str, delay_s: float, started: list[str] | None = None, fail: bool = False) -> str:
    if started is not None:
        started.append(name)
    await asyncio.sleep(delay_s)
    if fail:
        raise RuntimeError(f"{name} failed")
    return name


async def test_published_in_the_order_taken_though_later_work_finishes_first() -> None:
    log = Log()
    flight = InFlight(4, log.failures.append)
    for name, delay in (("slow", 0.05), ("fast", 0.0), ("middle", 0.02)):
        flight.submit(work(name, delay), log.publish)
    await flight.drain()
    assert log.published == ["slow", "fast", "middle"]
    assert not log.failures


async def test_settle_holds_the_agent_while_most_are_in_flight() -> None:
    log, started = Log(), []
    flight = InFlight(2, log.failures.append)
    flight.submit(work("a", 0.05, started), log.publish)
    await flight.settle()  # one in flight: the agent may take the next batch at once
    assert not log.published
    flight.submit(work("b", 0.0, started), log.publish)
    await asyncio.sleep(0)
    assert started == ["a", "b"]  # b is handled while a is still at work
    await flight.settle()  # two in flight: wait until the oldest is published
    assert log.published[:1] == ["a"]
    await flight.drain()
    assert log.published == ["a", "b"]


async def test_a_failure_is_reported_and_nothing_after_it_is_published() -> None:
    log = Log()
    flight = InFlight(8, log.failures.append)
    flight.submit(work("ok", 0.0), log.publish)
    flight.submit(work("bad", 0.01, fail=True), log.publish)
    flight.submit(work("after", 0.0), log.publish)
    await flight.drain()
    assert log.published == ["ok"]
    # reported for the batch that failed and for the one it held back (the worker stops at the first)
    assert [str(e) for e in log.failures] == ["bad failed", "bad failed"]
    with pytest.raises(RuntimeError, match="bad failed"):
        await flight.settle()
    assert len(flight.queue) == 1  # the failed head is let go of, not kept in front for ever


async def test_an_agent_stopped_while_it_waits_does_not_cancel_the_batch() -> None:
    log = Log()
    flight = InFlight(1, log.failures.append)
    flight.submit(work("a", 0.05), log.publish)
    agent = asyncio.ensure_future(flight.settle())
    await asyncio.sleep(0.01)
    agent.cancel()  # Faust stops the agent; the batch goes on and is drained before the commit
    with pytest.raises(asyncio.CancelledError):
        await agent
    await flight.drain()
    assert log.published == ["a"]


async def test_what_is_published_is_let_go_of() -> None:
    log = Log()
    flight = InFlight(4, log.failures.append)
    for name in "abc":
        flight.submit(work(name, 0.0), log.publish)
        await flight.drain()
    assert len(flight.queue) == 1  # the done ones are dropped as the next is submitted
    await flight.settle()
    assert not flight.queue


async def test_a_cancelled_drain_leaves_the_work_going() -> None:
    """The revoke or stop handler cancelled while it drains: the batches go on, in order, and are published."""
    log = Log()
    flight = InFlight(4, log.failures.append)
    flight.submit(work("a", 0.03), log.publish)
    flight.submit(work("b", 0.0), log.publish)
    drain = asyncio.ensure_future(flight.drain())
    await asyncio.sleep(0.01)
    drain.cancel()
    with pytest.raises(asyncio.CancelledError):
        await drain
    await flight.drain()
    assert log.published == ["a", "b"]
    assert not log.failures


async def test_work_that_is_cancelled_is_a_failure_and_holds_back_what_follows() -> None:
    log = Log()
    flight = InFlight(4, log.failures.append)

    async def cancelled() -> str:
        raise asyncio.CancelledError  # e.g. a client library's own timeout, surfacing as a cancellation

    flight.submit(cancelled(), log.publish)
    flight.submit(work("after", 0.0), log.publish)
    await flight.drain()
    assert not log.published
    assert len(log.failures) == 2 and all(isinstance(e, asyncio.CancelledError) for e in log.failures)
