"""The gateway's Kafka side: one producer for the pages' frames and control records, and one consumer of this
instance's own partition of the replies topic, whose rendered frames it hands to the event loop by session.

Routing at scale: every frame the gateway publishes names `reply_partition` = this instance's number, so the
workers write that session's rendered frames to that partition of `vto.gateway-replies.v1`; an instance reads
only its partition (assigned, no consumer group), never the other sessions' frames. docs/scaling.md.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from confluent_kafka import OFFSET_END, Consumer, KafkaError, Producer, TopicPartition

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
                **{"linger.ms": 2, "enable.idempotence": True, "message.max.bytes": limit, "log_level": 3},
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
                    "fetch.wait.max.ms": 10,
                    "fetch.message.max.bytes": limit,
                },
            ),
            logger=logging.getLogger("librdkafka"),
        )
        self.partition = settings.gateway_instance
        self.consumer.assign([TopicPartition(settings.replies_topic, self.partition, OFFSET_END)])
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._consume, name="replies", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _consume(self) -> None:
        """Rendered frames of this instance's partition to the event loop; the producer's callbacks served too."""
        while not self.stopping.is_set():
            self.producer.poll(0)
            msg = self.consumer.poll(0.05)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("replies consumer: %s", error)
                continue
            session = (msg.key() or b"").decode(errors="replace")
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
        self.consumer.close()


def _delivered(err: KafkaError | None, msg: object) -> None:
    if err is not None:
        log.error("a record from a page was not delivered: %s", err)
