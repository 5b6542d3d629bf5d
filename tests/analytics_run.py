"""An analytics worker run against the real broker on topics of its own (so other tests' events do not mix in):
synthetic events produced, the worker started as a process (and SIGKILLed when asked), committed progress watched,
the outputs read back. Used by tests/integration/test_analytics.py and loadtest/analytics.py."""

from __future__ import annotations

import os
import signal
import sys
import time
import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from streams import kafka_client
from streams.proto.vto.v1.analytics_pb2 import AlsoTried, FunnelAggregate, ItemAggregate
from streams.proto.vto.v1.dead_letter_pb2 import DeadLetter
from streams.session_store import read_to_end
from streams.settings import Settings
from streams.stack import embedded, kafka
from streams.stack.procs import Service, wait_until


def run_settings(base: Settings, tag: str, port: int) -> Settings:
    """`base` with topics, group and instance of the run's own (the analytics principal's ACLs follow the names)."""
    return base.model_copy(
        update={
            "events_topic": f"vto.{tag}-events.v1",
            "analytics_items_topic": f"vto.{tag}-items.v1",
            "analytics_funnel_topic": f"vto.{tag}-funnel.v1",
            "analytics_also_tried_topic": f"vto.{tag}-also-tried.v1",
            "analytics_cotries_topic": f"vto.{tag}-cotries.v1",
            "analytics_state_topic": f"vto.{tag}-state.v1",
            "analytics_group": f"vto-{tag}",
            "analytics_instance": f"{tag}-0",
            "analytics_web_port": port,
        }
    )


ENV_OF = {
    "events_topic": "VTO_EVENTS_TOPIC",
    "analytics_items_topic": "VTO_ANALYTICS_ITEMS_TOPIC",
    "analytics_funnel_topic": "VTO_ANALYTICS_FUNNEL_TOPIC",
    "analytics_also_tried_topic": "VTO_ANALYTICS_ALSO_TRIED_TOPIC",
    "analytics_cotries_topic": "VTO_ANALYTICS_COTRIES_TOPIC",
    "analytics_state_topic": "VTO_ANALYTICS_STATE_TOPIC",
    "analytics_group": "VTO_ANALYTICS_GROUP",
    "analytics_instance": "VTO_ANALYTICS_INSTANCE",
    "analytics_web_port": "VTO_ANALYTICS_WEB_PORT",
}


class AnalyticsRun:
    def __init__(self, settings: Settings, key: bytes) -> None:
        self.settings, self.key = settings, key
        self.service = Service(f"analytics-{settings.analytics_instance}", settings.run_dir)

    def prepare(self) -> None:
        """Its topics (created afresh: a run starts from empty topics) and the analytics principal's ACLs on them."""
        admin = kafka.admin(self.settings)
        mine = [
            self.settings.events_topic,
            self.settings.analytics_items_topic,
            self.settings.analytics_funnel_topic,
            self.settings.analytics_also_tried_topic,
            self.settings.analytics_cotries_topic,
            self.settings.analytics_state_topic,
        ]
        existing = [t for t in mine if t in admin.list_topics(timeout=10).topics]
        if existing:
            for future in admin.delete_topics(existing, operation_timeout=30).values():
                future.result()
            deadline = time.monotonic() + 60
            while set(existing) & set(admin.list_topics(timeout=10).topics) and time.monotonic() < deadline:
                time.sleep(0.5)
        groups = [g.group_id for g in admin.list_consumer_groups(request_timeout=10).result().valid]
        if self.settings.analytics_group in groups:  # its committed offsets: of topics that are no more
            for future in admin.delete_consumer_groups([self.settings.analytics_group], request_timeout=30).values():
                future.result()
        kafka.create_topics(self.settings)
        if kafka_client.secure(self.settings):
            kafka.create_acls(self.settings)

    def produce(self, records: list[tuple[int, bytes, bytes | None]]) -> None:
        # Idempotent: the order within a partition is what the test is about (out of order only as generated).
        producer = Producer(kafka_client.confluent(self.settings, **{"linger.ms": 20, "enable.idempotence": True}))
        for partition, key, value in records:
            producer.produce(self.settings.events_topic, key=key, value=value, partition=partition)
            producer.poll(0)
        assert producer.flush(60) == 0

    def produce_aborted(self, records: list[tuple[int, bytes, bytes | None]]) -> None:
        """Records in a transaction that is then aborted (what a stream worker that died mid-batch leaves)."""
        producer = Producer(
            kafka_client.confluent(self.settings, **{"transactional.id": f"{self.service.name}-aborted"})
        )
        producer.init_transactions(30)
        producer.begin_transaction()
        for partition, key, value in records:
            producer.produce(self.settings.events_topic, key=key, value=value, partition=partition)
        producer.flush(30)
        producer.abort_transaction(30)

    def start(self) -> int:
        env = {name: str(getattr(self.settings, field)) for field, name in ENV_OF.items()}
        env.update(
            {
                "VTO_KAFKA_USER": "vto-analytics",
                "VTO_ANALYTICS_SECRET": self.key.decode(),
                "VTO_LOG_FORMAT": "text",
                "PYTHONUNBUFFERED": "1",
            }
        )
        marker = f"--name={self.settings.run_dir / self.service.name}"
        pid = self.service.start([sys.executable, "-m", "streams.cli", "analytics", "worker", marker], env=env)
        wait_until(self.service, self.ready, 90, "analytics worker")
        return pid

    def ready(self) -> bool:
        return embedded.answers_ok(f"http://127.0.0.1:{self.settings.analytics_web_port}/readyz")

    def kill(self) -> None:
        pid = self.service.pid()
        assert pid is not None, "the analytics worker is not running"
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.service.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        self.service.pid_file.unlink(missing_ok=True)

    def stop(self) -> None:
        self.service.stop(timeout=30)

    def progress(self) -> tuple[int, int]:
        """(records the group has committed past, records there are) over the events and co-tries topics. The
        co-tries are written in transactions: a partition of them ends with a commit marker, which takes an offset
        but is no record, so there the records end one before the high watermark."""
        s = self.settings
        consumer = Consumer(kafka_client.confluent(s, **{"group.id": s.analytics_group, "enable.auto.commit": False}))
        try:
            committed = ends = 0
            for topic, marker in ((s.events_topic, 0), (s.analytics_cotries_topic, 1)):
                parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
                tps = [TopicPartition(topic, p) for p in parts]
                for tp in consumer.committed(tps, timeout=10):
                    committed += max(tp.offset, 0)
                for tp in tps:
                    high = consumer.get_watermark_offsets(tp, timeout=10)[1]
                    ends += max(high - marker, 0)
            return committed, ends
        finally:
            consumer.close()

    def wait_caught_up(self, timeout_s: float = 180.0) -> float:
        """Until every event and co-try is committed (co-tries are written by the worker itself: the ends must stay
        put over three polls, so that no co-try is still on its way)."""
        started = time.monotonic()
        stable, last = 0, (-1, -1)
        while time.monotonic() - started < timeout_s:
            now = self.progress()
            stable = stable + 1 if now[0] == now[1] and now == last else 0
            last = now
            if stable >= 2:
                return time.monotonic() - started
            time.sleep(0.1)
        raise TimeoutError(f"analytics not caught up in {timeout_s} s: {self.progress()}; log:\n{self.service.tail()}")

    def outputs(self) -> tuple[list[ItemAggregate], list[FunnelAggregate], list[AlsoTried]]:
        s = self.settings

        def latest(topic: str) -> list[bytes]:
            values: dict[bytes, bytes] = {}
            for msg in read_to_end(s, topic, timeout_s=120):
                value = msg.value()
                if value is None:
                    values.pop(msg.key() or b"", None)
                else:
                    values[msg.key() or b""] = value
            return list(values.values())

        return (
            [ItemAggregate.FromString(v) for v in latest(s.analytics_items_topic)],
            [FunnelAggregate.FromString(v) for v in latest(s.analytics_funnel_topic)],
            [AlsoTried.FromString(v) for v in latest(s.analytics_also_tried_topic)],
        )

    def dead_letters(self) -> list[DeadLetter]:
        s = self.settings
        found = [DeadLetter.FromString(m.value() or b"") for m in read_to_end(s, s.dead_letter_topic, timeout_s=60)]
        return [d for d in found if d.source_topic == s.events_topic]

    def metrics(self) -> dict[str, float]:
        """The worker's /metrics samples without labels, and vto_stage_seconds by stage (name{stage})."""
        url = f"http://127.0.0.1:{self.settings.analytics_web_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        found = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                stage = sample.labels.get("stage")
                if not sample.labels or stage:
                    found[f"{sample.name}{{{stage}}}" if stage else sample.name] = sample.value
        return found
