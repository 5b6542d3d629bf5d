"""Small helpers for tests that talk to the real broker."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, Message, Producer

from streams import kafka_client
from streams.proto.vto.v1.tryon_event_pb2 import TryOnEvent
from streams.session_store import read_to_end
from streams.settings import Settings


def produce(settings: Settings, topic: str, records: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = Producer(kafka_client.confluent(settings, **{"message.max.bytes": 8 * 1024 * 1024}))
    for key, value in records:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


def events_of(session: str) -> Callable[[Message], bool]:
    """Matches the try-on events of a session: keyed <session_id>/<n> (tombstones included)."""
    prefix = f"{session}/".encode()
    return lambda m: (m.key() or b"").startswith(prefix)


def session_events(settings: Settings, session: str, timeout_s: float = 90) -> list[TryOnEvent]:
    """The session's committed try-on events once its END came: the whole topic read to its end then (so an event
    committed twice, or after the END, is seen too). Fails unless the keys are <session>/0..n-1, each once."""

    def ended(found: list[Message]) -> bool:
        return any(m.value() and TryOnEvent.FromString(m.value()).type == TryOnEvent.TYPE_SESSION_ENDED for m in found)

    consume(settings, settings.events_topic, events_of(session), 0, timeout_s, until=ended)
    prefix = f"{session}/".encode()
    found = [m for m in read_to_end(settings, settings.events_topic) if (m.key() or b"").startswith(prefix)]
    numbers = sorted(int((m.key() or b"").rsplit(b"/", 1)[1]) for m in found)
    assert numbers == list(range(len(found))), f"event keys of {session}: {numbers}"
    return [TryOnEvent.FromString(m.value()) for m in found]


def consume(
    settings: Settings,
    topic: str,
    match: Callable[[Message], bool],
    count: int,
    timeout_s: float = 60,
    until: Callable[[list[Message]], bool] | None = None,
) -> list[Message]:
    """Read `topic` from the start until `count` matching records came, or `until(found)` holds when given
    (or time ran out)."""
    done = until or (lambda found: len(found) >= count)
    consumer = Consumer(
        kafka_client.confluent(
            settings,
            **{"group.id": f"test-{uuid.uuid4()}", "auto.offset.reset": "earliest", "enable.auto.commit": False},
        )
    )
    consumer.subscribe([topic])
    found: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not done(found) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error() and match(msg):
                found.append(msg)
    finally:
        consumer.close()
    return found


def outcome_figures(summary: dict[str, object]) -> dict[str, object]:
    """What `vto account` says of a session, as a fault result records it."""
    names = ("frames", "rendered", "dropped", "dead_lettered", "unaccounted", "handled_twice")
    return {("frames_sent" if name == "frames" else name): summary[name] for name in names}


def record_result(name: str, figures: dict[str, object]) -> None:
    """A fault test's figures, printed, and added to the JSON file VTO_FAULT_RESULTS names when set
    (`loadtest/faults.py` sets it: that is where the figures in docs/guarantees.md come from)."""
    print(f"\n{name}: {json.dumps(figures)}")
    path = os.environ.get("VTO_FAULT_RESULTS")
    if path:
        results = Path(path)
        data = json.loads(results.read_text()) if results.exists() else {}
        data[name] = figures
        results.write_text(json.dumps(data, indent=2) + "\n")
