"""The worker's work in flight, published in record order.

The frames agent takes its next micro-batch while earlier ones are still at Triton (VTO_WORKER_BATCHES_IN_FLIGHT):
each batch is handled as soon as it is taken, and its outputs and consumer offsets are published strictly after
those of everything taken before it, so a transaction never holds offsets past records whose outputs are not in
it. Control records join the same order: their session states go out after the frames handled before them.

A failure of any of them stops the process (`on_failure`): the worker's sessions in memory have moved past outputs
that will never be published, and only a restart from the committed offsets and states is consistent again.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class InFlight:
    def __init__(self, most: int, on_failure: Callable[[BaseException], None]) -> None:
        self.most = most  # batches in hand at once (`settle`)
        self.on_failure = on_failure
        self.queue: deque[asyncio.Future[None]] = deque()  # oldest first

    def submit(self, work: Awaitable[T], publish: Callable[[T], Awaitable[None]]) -> asyncio.Future[None]:
        """Run `work` now, and `publish` its result once everything submitted before is published."""
        while self.queue and self.queue[0].done():  # published (a failure has already called on_failure)
            self._retrieved(self.queue.popleft())
        previous = self.queue[-1] if self.queue else None
        task = asyncio.ensure_future(self._run(work, publish, previous))
        self.queue.append(task)
        return task

    async def settle(self) -> None:
        """Wait until fewer than `most` are in flight: the frames agent takes its next batch then."""
        while self.queue and (len(self.queue) >= self.most or self.queue[0].done()):
            head = self.queue[0]
            try:
                await asyncio.shield(head)  # a stopping agent must not cancel a batch half-published
            finally:
                if head.done() and self.queue and self.queue[0] is head:
                    self._retrieved(self.queue.popleft())

    async def drain(self) -> None:
        """Everything in flight published (before offsets are committed on a rebalance or a stop). A drain that is
        itself cancelled leaves the work going (asyncio.wait, unlike gather, cancels nothing)."""
        if self.queue:
            done, _ = await asyncio.wait(list(self.queue))
            for task in done:
                self._retrieved(task)

    async def _run(self, work: Awaitable[T], publish: Callable[[T], Awaitable[None]], previous: Any) -> None:
        try:
            result = await work
            if previous is not None:
                await previous
            await publish(result)
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is None or not task.cancelling():  # the work's own cancellation: it failed like any error
                self.on_failure(exc)
            raise  # this task cancelled (the loop closing): whatever waits on it reports it
        except BaseException as exc:
            self.on_failure(exc)
            raise

    @staticmethod
    def _retrieved(task: asyncio.Future[None]) -> None:
        if not task.cancelled():
            task.exception()  # retrieved: reported through on_failure, not as "never retrieved"
