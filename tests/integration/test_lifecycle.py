"""A worker's lifecycle as Kubernetes drives it, against the real services: SIGTERM (a pod being stopped or moved)
drains the worker well within the pod's grace period: it stops taking frames, finishes and commits what it holds,
and exits; nothing it handled is handled again by its successor, and no frame is lost. Its log is JSON, line by
line, with the session and trace on a line about a frame."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from streams import tracing
from streams.accounting import account_when_settled
from streams.proto.vto.v1.frame_outcome_pb2 import FrameOutcome
from streams.session_store import read_to_end
from streams.settings import Settings
from streams.stack import embedded
from tests.kafka_io import outcome_figures, record_result
from tests.shopper import Shopper

pytestmark = pytest.mark.integration

FPS = 8.0


def outcomes_of(settings: Settings, session: str) -> list[FrameOutcome]:
    found = read_to_end(settings, settings.outcomes_topic)
    return [FrameOutcome.FromString(m.value() or b"") for m in found if m.key() == session.encode()]


def test_sigterm_drains_and_commits_within_the_grace_period_and_the_successor_loses_nothing(
    stack: Settings, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = embedded.Worker(0, stack)
    # The worker under test commits only when made to: its commit interval outlasts the whole test. What it handled
    # reaches Kafka only if SIGTERM drains it (an abrupt stop would leave it all to its successor).
    worker.stop()
    monkeypatch.setenv("VTO_COMMIT_INTERVAL_S", "9")
    worker.start()
    monkeypatch.delenv("VTO_COMMIT_INTERVAL_S")
    log_start = worker.service.log_file.stat().st_size
    shopper = Shopper(stack, data_dir / "keypoints" / "tfjs_pose_yoga" / "pose.jpg", "drain", FPS)
    shopper.start()
    try:
        time.sleep(1.0)
        # A frame that is no frame, in the session: a dead letter, and a log line about it.
        shopper.producer.produce(
            stack.frames_topic,
            key=shopper.session.encode(),
            value=b"junk",
            headers=[(tracing.HEADER, b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")],
        )
        time.sleep(1.5)
        sent_before = len(shopper.sent)
        started = time.monotonic()
        assert worker.stop(), "the test stack's worker-0 was not running"
        drain_s = time.monotonic() - started
        worker.start()  # its successor (the same name: a restarted pod), committing as usual
        time.sleep(3.0)
    finally:
        shopper.stop()

    summary = account_when_settled(stack, shopper.session, len(shopper.sent) + 1)
    figures = outcome_figures(summary)
    record_result("sigterm_drain", {**figures, "frames_sent": len(shopper.sent) + 1, "drain_s": round(drain_s, 2)})
    assert summary["unaccounted"] == 0 and summary["handled_twice"] == 0, summary
    assert summary["frames"] == len(shopper.sent) + 1
    assert summary["dead_lettered"] == {"undecodable": 1}
    assert drain_s < stack.drain_timeout_s, f"the drain took {drain_s:.1f} s"

    # Drained, not abandoned: the frames the first worker handled were committed by its drain, so its successor
    # (another process: another worker id) did not handle them again. Only the last few frames sent before
    # SIGTERM, not yet fetched when intake stopped, may be the successor's.
    by_worker: dict[str, list[int]] = {}
    for o in outcomes_of(stack, shopper.session):
        if o.reason != "undecodable":
            by_worker.setdefault(o.worker_id, []).append(o.sequence)
    assert len(by_worker) == 2, by_worker
    first, successor = sorted(by_worker.values(), key=min)
    assert sorted(first) == list(range(len(first))) and len(first) >= sent_before - 3, (len(first), sent_before)
    assert min(successor) == len(first)

    with worker.service.log_file.open("rb") as file:
        file.seek(log_start)
        lines = [line for line in file.read().decode(errors="replace").splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line of the worker's output is a JSON object
    assert all({"ts", "level", "logger", "msg", "worker_id"} <= set(line) for line in parsed)
    assert any(line["msg"].startswith("drained and committed in") for line in parsed)
    [about_frame] = [line for line in parsed if line.get("session_id") == shopper.session]
    assert about_frame["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736" and about_frame["level"] == "warning"

    # The junk frame's dead letter goes on with the trace its frame came with.
    [letter] = [m for m in read_to_end(stack, stack.dead_letter_topic) if m.key() == shopper.session.encode()]
    assert tracing.trace_id(tracing.header(letter.headers() or [])) == "4bf92f3577b34da6a3ce929d0e0e4736"
