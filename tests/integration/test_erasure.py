"""Erasure on request, through the real broker and worker: after a session has ended, an ERASE (with a token for
that session) leaves a tombstone for each of its try-on events and for its state on their compacted topics, and a
TYPE_SESSION_ERASED event for the sinks downstream."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Message

from streams.proto.vto.v1.tryon_event_pb2 import TryOnEvent
from streams.sender import erase, frames_of, send
from streams.session_store import read_states
from streams.settings import Settings
from tests.kafka_io import consume, events_of

pytestmark = pytest.mark.integration


def test_an_ended_session_is_erased_by_tombstones(stack: Settings, data_dir: Path) -> None:
    session = f"erase-{uuid.uuid4().hex[:8]}"
    photo = data_dir / "keypoints" / "tfjs_pose_yoga" / "pose.jpg"
    send(stack, list(frames_of(photo)) * 3, session, fps=10, item="tee-breton-stripes")

    def has(kind: TryOnEvent.Type.ValueType) -> Callable[[list[Message]], bool]:
        return lambda found: any(m.value() and TryOnEvent.FromString(m.value()).type == kind for m in found)

    before = consume(stack, stack.events_topic, events_of(session), 0, 60, until=has(TryOnEvent.TYPE_SESSION_ENDED))
    keys = {m.key() for m in before}
    assert len(keys) >= 3, [TryOnEvent.FromString(m.value()).type for m in before]  # STARTED, RENDERED, ..., ENDED

    erase(stack, session)  # what `vto erase --session S` does

    after = consume(stack, stack.events_topic, events_of(session), 0, 60, until=has(TryOnEvent.TYPE_SESSION_ERASED))
    tombstoned = {m.key() for m in after if m.value() is None}
    assert tombstoned == keys, "every event of the session, and only those, has a tombstone"
    [erased] = [TryOnEvent.FromString(m.value()) for m in after if m.value() and m.key() not in keys]
    assert erased.type == TryOnEvent.TYPE_SESSION_ERASED and erased.session_id == session
    partition = after[0].partition()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states = dict(read_states(stack, [partition]))
        if states.get(session.encode(), b"") is None:
            break
        time.sleep(0.5)
    assert states.get(session.encode(), b"") is None, "the session's state is not tombstoned"
