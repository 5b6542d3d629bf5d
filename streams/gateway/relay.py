"""The gateway's Kafka side: one producer for the pages' frames and control records, and one consumer of this
instance's own partition of the replies topic, whose rendered frames it hands to the event loop by session.

Routing at scale: every frame the gateway publishes names `reply_partition` = this instance's number, so the
workers write that session's rendered frames to that partition of `vto.gateway-replies.v1`; an instance reads
only its partition (assigned, no consumer group), never the other sessions' frames. docs/scaling.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from streams import kafka_client
from streams.settings import Settings

log = logging.getLogger(__name__)
Deliver = Callable[[str, bytes], None]  # (session id, RenderedFrame bytes), called on the event loop


class Relay:
    def __init__(self, settings: Settings, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        self.settings, self.loop, self.deliver = settings, loop, deliver
        limit = settings.max_message_bytes + 65536
        self.producer = Producer(
            kafka_client.confluent(
                settings,
                **{
                    "linger.ms": 2,
                    "enable.idempotence": True,
                    "message.max.bytes": limit,
                    "log_level": 3,
                    # Bounded: 64 MB of frames waiting for the broker at most, and a frame that could not be sent
                    # within 10 s is dropped (it would be stale anyway), not held for librdkafka's 5 minutes.
                    "queue.buffering.max.kbytes": 65536,
                    "message.timeout.ms": 10_000,
                },
            ),
            logger=logging.getLogger("librdkafka"),
        )
        self.consumer = Consumer(
            kafka_client.confluent(
                settings,
                **{
                    "group.id": f"vto-client-gateway-{settings.gateway_instance}",  # assigned, never joins
                    "enable.auto.commit": False,
                    "isolation.level": "read_uncommitted",  # as a shopper: a frame shows the moment it is written
                    # A fetch returns as soon as a frame is there (fetch.min.bytes 1): the wait only bounds idle
                    # polling. librdkafka's 500 ms, not 10 ms: 100 idle fetches a second cost the broker CPU
                    # (loadtest/bench.py measured it) and bought no latency.
                    "fetch.message.max.bytes": limit,
                },
            ),
            logger=logging.getLogger("librdkafka"),
        )
        self.partition = settings.gateway_instance
        # From the partition's end as it is now, resolved before the gateway says it is ready: a frame rendered
        # after that is read, even one written before the consumer's first fetch (OFFSET_END would skip it).
        _, end = self.consumer.get_watermark_offsets(TopicPartition(settings.replies_topic, self.partition), timeout=30)
        self.consumer.assign([TopicPartition(settings.replies_topic, self.partition, end)])
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._consume, name="replies", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _consume(self) -> None:
        """Rendered frames of this instance's partition to the event loop; the producer's callbacks served too.
        An unexpected error is logged and the loop goes on; the thread ends only when asked to (or the event loop
        is gone), and `/healthz` reports a dead thread."""
        while not self.stopping.is_set() and not self.loop.is_closed():
            try:
                self._poll_once()
            except Exception:
                log.exception("replies relay: an error polling Kafka; going on")
                self.stopping.wait(0.5)

    def _poll_once(self) -> None:
        self.producer.poll(0)
        msg = self.consumer.poll(0.05)
        if msg is None:
            return
        error = msg.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("replies consumer: %s", error)
            return
        session = (msg.key() or b"").decode(errors="replace")
        with contextlib.suppress(RuntimeError):  # the loop closed while shutting down
            self.loop.call_soon_threadsafe(self.deliver, session, msg.value() or b"")

    def publish(
        self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, str | bytes | None]] | None = None
    ) -> None:
        """Hand a record to the producer (it batches and retries); BufferError when its queue is full."""
        self.producer.produce(topic, key=key, value=value, headers=headers, on_delivery=_delivered)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.producer.flush(10)
        if not self.thread.is_alive():  # never close the consumer under a thread still polling it
            self.consumer.close()


def _delivered(err: KafkaError | None, msg: object) -> None:
    if err is not None:
        log.error("a record from a page was not delivered: %s", err)
