"""Analytics against the real broker: synthetic sessions' events through a real analytics worker (a process, as
the vto-analytics principal), SIGKILLed mid-stream and restarted; the aggregates, the funnel and the
recommendations on the output topics must equal the truths computed independently from the sessions, exactly:
nothing lost, nothing counted twice, nothing of an aborted transaction counted. A record that is not an event goes
to the dead-letter topic with its reason."""

from __future__ import annotations

import time

import pytest

from streams.analytics.synthetic import generate
from streams.settings import Settings
from tests.analytics_run import AnalyticsRun, run_settings
from tests.analytics_truth import assert_matches
from tests.kafka_io import record_result

pytestmark = pytest.mark.integration
KEY = b"integration-analytics-key-0123456789"


def test_sigkilled_analytics_worker_neither_loses_nor_double_counts(stack: Settings) -> None:
    synthetic = generate(11, sessions=1500, partitions=stack.topic_partitions)
    run = AnalyticsRun(run_settings(stack, "eos-test", stack.analytics_web_port + 50), KEY)
    run.prepare()
    half = len(synthetic.records) // 2
    garbage = [(0, b"not-an-event", b"\xff\x00 not a protobuf"), (1, b"no-time/0", b"\n\x01s\x18\x01")]
    run.produce(synthetic.records[:half] + garbage)
    # A stream worker's aborted batch: events that never happened (a copy of some, under other sessions' keys).
    phantoms = [(p, b"phantom/" + key, value) for p, key, value in synthetic.records[:300] if value]
    run.produce_aborted(phantoms)
    run.start()
    try:
        committed_at_kill, ends = 0, 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # kill it once part of the first half is committed, not all of it
            committed_at_kill, ends = run.progress()
            if committed_at_kill > 0:
                break
            time.sleep(0.05)
        run.produce(synthetic.records[half:])  # more arrives while it runs; then it dies mid-batch
        time.sleep(0.3)
        committed_at_kill, ends = run.progress()
        run.kill()
        assert committed_at_kill < ends, "the worker had finished before the kill: nothing was at stake"
        restarted = time.monotonic()
        run.start()  # same instance: its transactional id aborts the open transaction at once
        caught_up_s = run.wait_caught_up()
        recovery_s = time.monotonic() - restarted
        items, funnel, recommendations = run.outputs()
        assert_matches(synthetic, items, funnel, recommendations)
        letters = run.dead_letters()
        assert sorted(d.reason for d in letters) == ["missing_event_time", "undecodable"]
        assert all(d.value and d.detail for d in letters)
        record_result(
            "analytics_sigkill",
            {
                "events": synthetic.events,
                "records_at_kill": ends,
                "uncommitted_at_kill": ends - committed_at_kill,
                "recovery_s": round(recovery_s, 2),
                "caught_up_after_restart_s": round(caught_up_s, 2),
                "item_windows": len(synthetic.items),
                "funnel_windows": len(synthetic.funnel),
                "late_events": synthetic.late_events,
                "items_with_recommendations": len(synthetic.also_tried),
                "equal_to_truth": True,
            },
        )
    finally:
        run.stop()
