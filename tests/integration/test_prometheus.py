"""A real Prometheus (Debian's package) scraping the embedded stack's worker and Triton with the project's scrape
config and the rules of k8s/base/monitoring/prometheusrule.yaml, while a shopper's session streams through: the
figures an SRE relies on are there and add up (latency quantiles, outcomes, lag, sessions, Triton's own metrics),
every rule evaluates, no alert fires on a healthy stack, and every query of the Grafana dashboard runs."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.accounting import account_when_settled
from streams.settings import Settings
from streams.stack import embedded, prometheus
from tests.shopper import Shopper
from tools.promql import dashboard_queries, metric_names

pytestmark = pytest.mark.integration

DASHBOARD = Path(__file__).resolve().parents[2] / "k8s" / "base" / "monitoring" / "dashboards" / "vto-stream.json"
FPS = 8.0


@pytest.fixture(scope="module")
def observed(stack: Settings) -> Iterator[Settings]:
    if not prometheus.available():
        if os.environ.get("CI"):
            pytest.fail("`prometheus` is not installed (.ci/run installs Debian's package)")
        pytest.skip("`prometheus` is not installed (apt-get install prometheus)")
    shutil.rmtree(stack.run_dir / "prometheus-data", ignore_errors=True)  # no samples of an earlier run's processes
    workers, gateways = embedded.running_workers(stack), embedded.running_gateways(stack)
    prometheus.start(stack, [w.port for w in workers], [g.port for g in gateways])
    try:
        yield stack
    finally:
        prometheus.stop(stack)


def value(settings: Settings, expr: str) -> float:
    """A query whose answer is one number (NaN when it has none)."""
    result = prometheus.query(settings, expr)
    return float(result[0]["value"][1]) if result else float("nan")


def eventually(settings: Settings, expr: str, ok: object, timeout_s: float = 30.0) -> float:
    """The query's value once `ok(value)` holds (scrapes come every 2 s, rules are evaluated every 2 s)."""
    deadline, last = time.monotonic() + timeout_s, float("nan")
    while time.monotonic() < deadline:
        last = value(settings, expr)
        if ok(last):  # type: ignore[operator]
            return last
        time.sleep(1.0)
    raise AssertionError(f"{expr} = {last} after {timeout_s:.0f} s")


def api(settings: Settings, path: str) -> dict[str, object]:
    with urllib.request.urlopen(f"{prometheus.url(settings)}/api/v1/{path}", timeout=10) as resp:
        return dict(json.load(resp)["data"])


def test_prometheus_sees_latency_outcomes_lag_sessions_and_triton_while_a_session_streams(
    observed: Settings, data_dir: Path
) -> None:
    settings = observed
    eventually(settings, 'sum(up{job="vto-worker"})', lambda v: v >= 1)
    eventually(settings, 'up{job="triton"}', lambda v: v == 1)
    eventually(settings, 'sum(up{job="vto-gateway"})', lambda v: v >= 1)  # the browser gateway, scraped too
    frames_before = value(settings, "sum(vto_frames_total)")
    frames_before = 0.0 if frames_before != frames_before else frames_before  # NaN: no frame yet on this worker
    shopper = Shopper(settings, data_dir / "keypoints" / "tfjs_pose_yoga" / "pose.jpg", "prometheus", FPS)
    shopper.start()
    try:
        time.sleep(4.0)
        # While the session streams: one active session, lag measured on every frames partition.
        eventually(settings, "sum(vto_active_sessions)", lambda v: v >= 1)
        partitions = value(settings, f'count(vto_consumer_lag_messages{{topic="{settings.frames_topic}"}})')
        assert partitions == settings.topic_partitions
        time.sleep(4.0)
    finally:
        shopper.stop()
    summary = account_when_settled(settings, shopper.session, len(shopper.sent))

    # Every frame the session sent is counted once by the worker's outcome counter, as on Kafka.
    total = eventually(settings, "sum(vto_frames_total)", lambda v: v - frames_before >= len(shopper.sent))
    assert total - frames_before == len(shopper.sent)
    rendered = value(settings, 'sum(vto_frames_total{outcome=~"rendered|no_pose"})')
    assert rendered >= summary["rendered"]  # type: ignore[operator]

    # Latency quantiles from the histogram: plausible for this CPU machine, ordered, and consistent with the
    # bucket counts (every rendered frame observed once).
    quantile = "histogram_quantile({q}, sum by (le) (rate(vto_frame_latency_seconds_bucket[1m])))"
    p50, p99 = value(settings, quantile.format(q=0.5)), value(settings, quantile.format(q=0.99))
    assert 0.001 < p50 <= p99 < 5.0, (p50, p99)
    observed_frames = value(settings, "sum(vto_frame_latency_seconds_count)")
    assert observed_frames >= summary["rendered"]  # type: ignore[operator]
    stages = {r["metric"]["stage"] for r in prometheus.query(settings, "sum by (stage) (vto_stage_seconds_count)")}
    assert {"validate", "queue", "infer", "publish"} <= stages

    # Caught up once the session ended: no lag, in records or seconds.
    eventually(settings, "max(vto_consumer_lag_messages)", lambda v: v == 0)
    eventually(settings, "max(vto_consumer_lag_seconds)", lambda v: v == 0)

    # Triton's own metrics: the try-on model served requests, with queue and compute times.
    assert value(settings, 'sum(nv_inference_request_success{model="tryon"})') >= summary["rendered"]  # type: ignore[operator]
    assert value(settings, 'sum(nv_inference_compute_infer_duration_us{model="tryon"})') > 0

    # Every rule of the PrometheusRule loads and evaluates without error; nothing fires on a healthy stack.
    groups = api(settings, "rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]  # type: ignore[attr-defined]
    expected = sum(len(group["rules"]) for group in prometheus.rule_groups())
    assert len(rules) == expected
    assert [r["name"] for r in rules if r["health"] != "ok"] == []
    # Nothing fires or is pending (the alerts' `for:` outlasts this test, so pending is what a problem would show)
    # but the latency SLO's burn: this CPU machine renders most frames in over 100 ms (docs/scaling.md).
    active = [
        r["name"]
        for r in rules
        if r["type"] == "alerting" and r["state"] != "inactive" and r["name"] != "VTOFrameLatencyBudgetBurn"
    ]
    assert active == []


# What a healthy CPU stack never shows (no drops, errors or retries; no GPU): their queries may return nothing.
MAY_BE_EMPTY = {
    "vto:frames_dropped:rate5m",
    "vto:dead_letters:rate5m",
    "vto_publish_retries_total",
    "vto_publish_errors_total",
    "vto_inference_errors_total",
    "vto_inference_retries_total",
    "vto_state_restore_failures_total",
    "vto_gateway_refused_total",
    "nv_gpu_utilization",
    "nv_gpu_memory_used_bytes",
    "nv_gpu_memory_total_bytes",
}


def test_every_dashboard_query_runs_against_the_real_prometheus(observed: Settings) -> None:
    """Runs after the streaming test above (same module): every query parses and executes on the real server,
    and every one about something that happened on this stack returns data."""
    failed, empty = [], []
    for title, expr in dashboard_queries(DASHBOARD):
        params = urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(f"{prometheus.url(observed)}/api/v1/query?{params}", timeout=10) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            failed.append((title, expr, exc.read().decode(errors="replace")))
            continue
        if not body["data"]["result"] and not metric_names(expr) & MAY_BE_EMPTY:
            empty.append((title, expr))
    assert failed == []
    assert empty == []
