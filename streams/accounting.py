"""`vto account --session S --json`: what became of every frame a session sent, read from the topics alone.

The frames topic says what was sent (records keyed by the session id, for as long as the frames' retention keeps
them); the outcomes topic (`FrameOutcome`, one per frames record, written by the worker with the batch's other
outputs) says what became of each: rendered, dropped for a reason, or dead-lettered for a reason. A frame
without an outcome is unaccounted; an outcome for a frame the topic no longer holds is counted, not matched.
"""

from __future__ import annotations

import time
from collections import Counter

from confluent_kafka import KafkaException

from streams.errors import VTOError
from streams.proto.vto.v1.frame_outcome_pb2 import FrameOutcome
from streams.session_store import read_to_end
from streams.settings import Settings
from streams.stack import kafka


def account(settings: Settings, session: str, timeout_s: float = 60.0) -> dict[str, object]:
    """The session's frames and their outcomes, added up (see the module docstring for the JSON's fields)."""
    try:
        reachable = kafka.ready(settings)
    except KafkaException:
        reachable = False
    if not reachable:
        raise VTOError(f"Kafka is not reachable at {settings.kafka_bootstrap}: start the stack (`vto stack up`)")
    key = session.encode()
    sent = {
        (int(m.partition() or 0), int(m.offset() or 0))
        for m in read_to_end(settings, settings.frames_topic, timeout_s=timeout_s)
        if m.key() == key
    }
    outcomes: dict[tuple[int, int], list[FrameOutcome]] = {}
    for msg in read_to_end(settings, settings.outcomes_topic, timeout_s=timeout_s):
        if msg.key() != key:
            continue
        outcome = FrameOutcome.FromString(msg.value() or b"")
        outcomes.setdefault((outcome.partition, outcome.offset), []).append(outcome)
    counts: dict[str, Counter[str]] = {"rendered": Counter(), "dropped": Counter(), "dead_letter": Counter()}
    names = {
        FrameOutcome.OUTCOME_RENDERED: "rendered",
        FrameOutcome.OUTCOME_DROPPED: "dropped",
        FrameOutcome.OUTCOME_DEAD_LETTER: "dead_letter",
    }
    for found in outcomes.values():
        last = found[-1]  # a frame handled twice (a worker died before committing) counts once, as it ended
        counts[names.get(last.outcome, "dropped")][last.reason or "ok"] += 1
    return {
        "session": session,
        "frames": len(sent),
        "rendered": sum(counts["rendered"].values()),
        "rendered_without_pose": counts["rendered"]["no_pose"],
        "dropped": dict(counts["dropped"]),
        "dead_lettered": dict(counts["dead_letter"]),
        "accounted": len(sent & set(outcomes)),
        "unaccounted": len(sent - set(outcomes)),
        "handled_twice": sum(1 for found in outcomes.values() if len(found) > 1),
        "outcomes_without_frame": len(set(outcomes) - sent),  # their frames' retention has passed
    }


def account_when_settled(settings: Settings, session: str, frames: int, timeout_s: float = 60.0) -> dict[str, object]:
    """`account` once every one of the `frames` the session sent has an outcome (outcomes become visible as their
    worker's transaction commits), or when `timeout_s` ran out."""
    deadline = time.monotonic() + timeout_s
    while True:
        summary = account(settings, session)
        if int(summary["accounted"]) >= frames or time.monotonic() > deadline:  # type: ignore[call-overload]
            return summary
        time.sleep(0.5)
