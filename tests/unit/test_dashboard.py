"""The Grafana dashboard (k8s/base/monitoring/dashboards/vto-stream.json): every panel queries the `${datasource}`
variable, every query parses (promtool) and reads only metrics that exist: the worker's (streams.metrics), Triton's,
the recording rules' or `up`. The checker itself is tested on a made-up name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tools.promql import (
    dashboard_panels,
    dashboard_queries,
    grafana_to_promql,
    known_metric_names,
    metric_names,
    promtool_check,
    unknown_metric_names,
)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "k8s" / "base" / "monitoring" / "dashboards" / "vto-stream.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def panels() -> list[dict[str, Any]]:
    return [panel for panel in dashboard_panels(DASHBOARD) if panel["type"] != "row"]


def test_dashboard_identity_and_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "vto-stream"
    assert dashboard["schemaVersion"] == 39
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


def test_every_panel_has_a_title_the_datasource_variable_and_a_query() -> None:
    assert len(panels()) >= 20
    for panel in panels():
        title = panel.get("title", "")
        assert title.strip(), panel["id"]
        assert panel.get("datasource") == DATASOURCE, title
        assert panel.get("targets"), title
        for target in panel["targets"]:
            assert target.get("expr", "").strip(), title
            assert target.get("datasource") == DATASOURCE, title


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    every = dashboard_panels(DASHBOARD)
    assert len({panel["id"] for panel in every}) == len(every)
    cells: dict[tuple[int, int], str] = {}
    for panel in every:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_every_query_parses(promtool: str, tmp_path: Path) -> None:
    queries = dashboard_queries(DASHBOARD)
    result = promtool_check([expr for _, expr in queries], tmp_path, promtool)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_query_reads_metrics_that_exist() -> None:
    known = known_metric_names()
    problems = {title: sorted(unknown_metric_names(expr, known)) for title, expr in dashboard_queries(DASHBOARD)}
    assert not {title: names for title, names in problems.items() if names}


def test_a_made_up_metric_is_reported_unknown() -> None:
    known = known_metric_names()
    assert unknown_metric_names('sum by (outcome) (rate(vto_frames_renderd_total{job="vto-worker"}[5m]))', known) == {
        "vto_frames_renderd_total"
    }
    assert unknown_metric_names("vto:frame_latency_seconds:p99_rate1m > 0.1 and up", known) == {
        "vto:frame_latency_seconds:p99_rate1m"
    }
    assert not unknown_metric_names("vto:frame_latency_seconds:p99_rate5m > 0.1 and up", known)


def test_metric_names_skips_functions_labels_strings_and_durations() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{le!="+Inf", x=~"b|c"}[5m:1m] offset 1h)))'
        " / ignoring (code) group_left (model) max without (pod) (b) > bool 1e6"
        ' or label_replace(c, "dst", "$1", "src", "(.*)") unless count_values("le", d) and sum(e) by (f)'
        ' + {__name__=~"g|h", job="j"} * NaN'
    )
    assert metric_names(expr) == {"a_bucket", "b", "c", "d", "e", "g", "h"}


def test_grafana_variables_become_plain_promql() -> None:
    expr = "rate(x[$__rate_interval]) + rate(y[${__interval}])"
    assert grafana_to_promql(expr) == "rate(x[5m]) + rate(y[1m])"
    # A range query: $__interval is the step, $__rate_interval max(step + scrape interval, 4 x scrape interval).
    assert grafana_to_promql(expr, step_s=2.5, scrape_interval_s=2) == "rate(x[8s]) + rate(y[3s])"
    assert grafana_to_promql(expr, step_s=30, scrape_interval_s=2) == "rate(x[32s]) + rate(y[30s])"
    with pytest.raises(ValueError, match="job"):
        grafana_to_promql('up{job="$job"}')


def test_the_dashboard_shows_what_on_call_needs() -> None:
    read = set().union(*(metric_names(expr) for _, expr in dashboard_queries(DASHBOARD)))
    wanted = {
        "vto_frame_latency_seconds_bucket",
        "vto:frame_latency_seconds:p99_rate5m",
        "vto:frame_latency_within_budget:ratio_rate1h",
        "vto:fresh_frames:ratio_rate1h",
        "vto:stage_seconds:p95_rate5m",
        "vto:frames:rate5m",
        "vto:frames_dropped:rate5m",
        "vto:dead_letters:rate5m",
        "vto:consumer_lag_messages:max",
        "vto:consumer_lag_seconds:max",
        "vto_active_sessions",
        "vto_worker_ready",
        "vto_batch_frames_bucket",
        "vto_inference_errors_total",
        "vto_inference_retries_total",
        "vto_publish_retries_total",
        "vto_publish_errors_total",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_count",
        "nv_inference_exec_count",
        "nv_inference_request_failure",
        "nv_gpu_utilization",
    }
    assert wanted <= read, sorted(wanted - read)
    heatmaps = [p for p in panels() if p["type"] == "heatmap"]
    assert [t["format"] for p in heatmaps for t in p["targets"]] == ["heatmap"]
    budget = next(p for p in panels() if "p99" in p["title"])
    steps = budget["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert budget["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "line"
    assert 0.1 in [step["value"] for step in steps]
    assert any("GPU hosts only" in p["title"] for p in panels())
