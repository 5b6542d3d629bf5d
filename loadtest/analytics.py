"""Analytics throughput and exactly-once figures on the real broker: synthetic sessions' events (streams/analytics/
synthetic.py) produced up front to topics of the run's own, one analytics worker process started, timed until it
has committed every event; the outputs compared with the sessions' independently computed truths. A second run
SIGKILLs the worker mid-stream and restarts it. Writes loadtest/results/analytics-<date>.json.

    .venv/bin/python -m loadtest.analytics [--sessions 6000]

Starts the embedded Kafka when none is running (and stops it afterwards); needs no Triton.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from pathlib import Path

from pydantic import SecretStr

from streams.analytics import offline
from streams.analytics.synthetic import generate
from streams.settings import Settings
from streams.stack import embedded, kafka, procs
from tests.analytics_run import AnalyticsRun, run_settings
from tests.analytics_truth import assert_matches

ROOT = Path(__file__).resolve().parents[1]
KEY = b"loadtest-analytics-key-0123456789"


def sample_report(settings: Settings, date: str) -> dict[str, object]:
    """`vto analytics export` and `vto analytics report` over the run's topics: the sample in docs/analytics.md
    (loadtest/results/analytics-report-<date>.txt, docs/images/analytics-report-<date>.png)."""
    data = ROOT / ".cache" / "analytics-bench"
    written = offline.export(settings.model_copy(update={"analytics_secret": SecretStr(KEY.decode())}), data)
    found = offline.report(data)
    chart = ROOT / "docs" / "images" / f"analytics-report-{date}.png"
    offline.draw_chart(found, chart)
    text = offline.render_text(found)
    (ROOT / "loadtest" / "results" / f"analytics-report-{date}.txt").write_text(text + "\n")
    return {"exported": written, "chart": str(chart.relative_to(ROOT))}


def one_run(
    base: Settings, sessions: int, seed: int, kill_at: float | None, report_date: str = ""
) -> dict[str, object]:
    synthetic = generate(seed, sessions=sessions, partitions=base.topic_partitions)
    run = AnalyticsRun(run_settings(base, f"bench-{seed}", base.analytics_web_port + 60), KEY)
    run.prepare()
    run.produce(synthetic.records)
    figures: dict[str, object] = {"sessions": len(synthetic.sessions), "events": synthetic.events}
    try:
        pid = run.start()
        began, cpu0 = time.monotonic(), procs.cpu_seconds(pid)
        if kill_at is not None:
            while True:  # until the share `kill_at` of the events is committed
                committed, ends = run.progress()
                if committed >= kill_at * synthetic.events:
                    break
                time.sleep(0.05)
            run.kill()
            figures["committed_at_kill"] = committed
            figures["records_at_kill"] = ends
            restarted = time.monotonic()
            pid, cpu0 = run.start(), 0.0
            figures["recovery_to_ready_s"] = round(time.monotonic() - restarted, 2)
        caught_up_s = run.wait_caught_up(timeout_s=600)
        elapsed = time.monotonic() - began - 0.2  # wait_caught_up needs two more polls to be sure (~0.2 s)
        cpu = procs.cpu_seconds(pid) - cpu0
        samples = run.metrics()
        items, funnel, recommendations = run.outputs()
        assert_matches(synthetic, items, funnel, recommendations)
        figures.update(
            {
                "seconds": round(elapsed, 2),
                "events_per_s": round(synthetic.events / elapsed),
                "worker_cpu_s_per_1000_events": round(1000 * cpu / synthetic.events, 3) if kill_at is None else None,
                "caught_up_after_last_start_s": round(caught_up_s, 2),
                "aggregate_s": round(samples.get("vto_stage_seconds_sum{aggregate}", 0.0), 2),
                "batches": int(samples.get("vto_stage_seconds_count{aggregate}", 0)),
                "publish_commit_s": round(samples.get("vto_stage_seconds_sum{publish}", 0.0), 2),
                "commits": int(samples.get("vto_stage_seconds_count{publish}", 0)),
                "item_records": len(items),
                "funnel_records": len(funnel),
                "items_with_recommendations": len(recommendations),
                "late_events": synthetic.late_events,
                "equal_to_truth": True,
            }
        )
        if report_date:
            figures["sample_report"] = sample_report(run.settings, report_date)
    finally:
        run.stop()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=6000)
    args = parser.parse_args()
    settings = Settings()
    started_kafka = not kafka.service(settings).pid()
    if started_kafka:
        embedded.ensure_session_secret(settings)
        kafka.start(settings)
    try:
        results = {
            "date": datetime.date.today().isoformat(),
            "machine": f"{os.cpu_count()} CPUs",
            "throughput": one_run(settings, args.sessions, 21, None, datetime.date.today().isoformat()),
            "sigkill": one_run(settings, args.sessions, 22, 0.4),
        }
    finally:
        if started_kafka:
            kafka.stop(settings)
    out = ROOT / "loadtest" / "results" / f"analytics-{results['date']}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
