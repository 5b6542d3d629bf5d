"""The alert and recording rules (k8s/base/monitoring/prometheusrule.yaml): promtool checks them and runs their unit
tests (tests/prometheus/*_test.yml); every alert carries its severity, annotations and runbook, every runbook
belongs to an alert, and the rules read only metrics that exist."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.stack.prometheus import RULES, rule_groups, write_rules
from tools.promql import known_metric_names, metric_names

ROOT = Path(__file__).resolve().parents[2]
RULE_TESTS = sorted((ROOT / "tests" / "prometheus").glob("*_test.yml"))
RUNBOOKS = ROOT / "docs" / "runbooks"
RUNBOOK_URL = "https://github.com/vto-stream/vto-stream/blob/main/docs/runbooks/{}.md"
PIPELINE = ROOT / "streams" / "pipeline.py"
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
# Drop reasons the client causes (or that are moot): left out of the fresh-frame SLO's denominator
# (docs/runbooks/VTOFreshFrameBudgetBurn.md). The service's own are those of the rules' regex.
CLIENT_CAUSED_DROPS = {"rate_limited", "session_ended", "session_erased", "replayed"}


@pytest.fixture
def rule_dir(tmp_path: Path) -> Path:
    """The rule file as the embedded Prometheus reads it, with the unit tests next to it (their `rule_files`)."""
    write_rules(tmp_path / "rules.yml")
    for path in RULE_TESTS:
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def alert_names() -> set[str]:
    return {rule["alert"] for rule in alerts()}


def rule_tests() -> list[dict[str, Any]]:
    return [test for path in RULE_TESTS for test in yaml.safe_load(path.read_text())["tests"]]


def test_promtool_checks_the_rules(promtool: str, rule_dir: Path) -> None:
    result = subprocess.run(
        [promtool, "check", "rules", str(rule_dir / "rules.yml")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass(promtool: str, rule_dir: Path) -> None:
    assert [path.name for path in RULE_TESTS] == ["rules_test.yml", "slo_windows_test.yml"]
    result = subprocess.run(
        [promtool, "test", "rules", *(path.name for path in RULE_TESTS)],
        cwd=rule_dir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_prometheus_rule_selected_by_the_vto_stream_prometheus() -> None:
    document = yaml.safe_load(RULES.read_text())
    assert document["apiVersion"] == "monitoring.coreos.com/v1"
    assert document["kind"] == "PrometheusRule"
    assert document["metadata"]["name"] == "vto-stream"
    assert document["metadata"]["namespace"] == "vto-stream"
    assert document["metadata"]["labels"]["prometheus"] == "vto-stream"


def test_every_alert_has_a_severity_a_summary_a_description_and_a_runbook() -> None:
    assert alerts()
    for rule in alerts():
        name = rule["alert"]
        assert rule.get("labels", {}).get("severity") in ("page", "ticket"), name
        annotations = rule.get("annotations", {})
        assert annotations.get("summary", "").strip(), name
        assert annotations.get("description", "").strip(), name
        assert annotations.get("runbook_url") == RUNBOOK_URL.format(name), name
        assert (RUNBOOKS / f"{name}.md").is_file(), f"{name}: no docs/runbooks/{name}.md"


def test_every_runbook_belongs_to_an_alert_and_the_index_lists_them_all() -> None:
    pages = {path.stem for path in RUNBOOKS.glob("*.md")} - {"README"}
    assert pages == alert_names()
    index = (RUNBOOKS / "README.md").read_text()
    for name in alert_names():
        assert f"[{name}]({name}.md)" in index, f"docs/runbooks/README.md does not list {name}"


def test_burn_rate_alerts_page_on_the_short_windows_and_ticket_on_the_long_ones() -> None:
    windows = {"1h": "page", "6h": "page", "1d": "ticket", "3d": "ticket"}
    for name in ("VTOFrameLatencyBudgetBurn", "VTOFreshFrameBudgetBurn"):
        found = {r["labels"]["long_window"]: r["labels"]["severity"] for r in alerts() if r["alert"] == name}
        assert found == windows, name


def test_every_alert_is_tested_firing_with_its_annotations_and_silent() -> None:
    cases = [case for test in rule_tests() for case in test.get("alert_rule_test", [])]
    for name in alert_names():
        mine = [case for case in cases if case["alertname"] == name]
        firing = [alert for case in mine for alert in case.get("exp_alerts") or []]
        assert firing, f"{name}: no test where it fires"
        assert all(alert.get("exp_annotations") for alert in firing), f"{name}: a firing case without annotations"
        severities = {alert["exp_labels"]["severity"] for alert in firing}
        declared = {rule["labels"]["severity"] for rule in alerts() if rule["alert"] == name}
        assert severities == declared, f"{name}: severities {declared - severities} never tested firing"
        assert any(not case.get("exp_alerts") for case in mine), f"{name}: no test where it stays silent"


def test_every_slo_ratio_is_checked_with_exact_values() -> None:
    cases = [case for test in rule_tests() for case in test.get("promql_expr_test", [])]
    checked = {case["expr"] for case in cases if case.get("exp_samples")}
    ratios = {rule["record"] for rule in rules() if re.fullmatch(r"vto:.*:ratio_rate\w+", rule.get("record", ""))}
    assert len(ratios) == 14  # two SLOs x seven windows
    assert ratios <= checked, f"not checked: {sorted(ratios - checked)}"


def test_every_slo_window_expects_a_value_of_its_own() -> None:
    """Per SLO (and the accepted rate), the seven windows' expected values in one test differ pairwise: a window
    replaced by another (`[30m]` by `[5m]`) changes a value."""
    names = {rule["record"] for rule in rules() if "record" in rule}
    families = {n[: -len(w)] for n in names for w in WINDOWS if n.endswith(w)}
    families = {f for f in families if all(f + w in names for w in WINDOWS)}
    assert families >= {
        "vto:frame_latency_within_budget:ratio_rate",
        "vto:fresh_frames:ratio_rate",
        "vto:frames_accepted:rate",
    }
    for family in sorted(families):
        complete = 0
        for test in rule_tests():
            found: dict[tuple[Any, str], dict[str, float]] = {}
            for case in test.get("promql_expr_test", []):
                for window in WINDOWS:
                    if case["expr"] != family + window:
                        continue
                    for sample in case.get("exp_samples") or []:
                        labels = sample["labels"].removeprefix(family + window)
                        found.setdefault((case["eval_time"], labels), {})[window] = float(sample["value"])
            for (eval_time, labels), values in found.items():
                if len(values) < len(WINDOWS):
                    continue
                complete += 1
                distinct = set(values.values())
                assert len(distinct) == len(WINDOWS), f"{test['name']} at {eval_time}, {family}{labels}: {values}"
        assert complete, f"{family}: no test expects all of {WINDOWS} at once"


def fresh_frame_reason_regexes() -> set[str]:
    regexes = set()
    for rule in rules():
        if rule.get("record", "").startswith("vto:frames_accepted:"):
            [regex] = re.findall(r'reason=~"([^"]*)"', rule["expr"])
            regexes.add(regex)
    return regexes


def pipeline_drop_reasons() -> set[str]:
    """The reasons streams/pipeline.py passes to `self._drop(...)` and `self._refuse(...)`: string literals only,
    or the `reason` parameter passed on inside those two methods."""
    tree = ast.parse(PIPELINE.read_text())
    methods = {"_drop", "_refuse"}
    positions = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name in methods:
            params = [a.arg for a in node.args.args]
            positions[node.name] = params.index("reason") - 1  # less self
    assert set(positions) == methods
    forwarded = {
        id(node)
        for fn in ast.walk(tree)
        if isinstance(fn, ast.FunctionDef) and fn.name in methods
        for node in ast.walk(fn)
    }
    reasons = set()
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in methods
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "self"
        ):
            continue
        keyword = [k.value for k in node.keywords if k.arg == "reason"]
        position = positions[node.func.attr]
        [arg] = keyword or node.args[position : position + 1]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            reasons.add(arg.value)
        else:
            where = f"streams/pipeline.py:{node.lineno}"
            assert isinstance(arg, ast.Name) and arg.id == "reason" and id(node) in forwarded, (
                f"{where}: a drop reason that is not a string literal: {ast.unparse(arg)}"
            )
    return reasons


def test_every_drop_reason_of_the_pipeline_is_service_or_client_caused() -> None:
    """A reason renamed or added in streams/pipeline.py must be classified: counted against the fresh-frame SLO (the
    rules' regex) or listed here as the client's."""
    regexes = fresh_frame_reason_regexes()
    assert len(regexes) == 1, f"the windows of vto:frames_accepted differ in their reasons: {regexes}"
    [regex] = regexes
    service = set(regex.split("|")) - {""}
    assert service == {"stale", "superseded", "over_capacity", "inference_unavailable"}, sorted(service)
    assert not service & CLIENT_CAUSED_DROPS
    used = pipeline_drop_reasons()
    unclassified = used - service - CLIENT_CAUSED_DROPS
    assert not unclassified, f"drop reasons neither service- nor client-caused: {sorted(unclassified)}"
    unused = (service | CLIENT_CAUSED_DROPS) - used
    assert not unused, f"classified drop reasons the pipeline never uses: {sorted(unused)}"
    # and the windows' test feeds every one of them (those of the service each change every ratio)
    [windows] = [t for t in rule_tests() if t["name"] == "fresh-frame SLO ratio per window"]
    fed = {
        m
        for series in windows["input_series"]
        if series["series"].startswith("vto_frames_dropped_total")
        for m in re.findall(r'reason="([^"]*)"', series["series"])
    }
    assert fed == used


def test_recording_rules_are_named_level_metric_operations() -> None:
    for rule in rules():
        if "record" in rule:
            assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule["record"]


def test_rules_read_only_metrics_the_worker_triton_or_the_rules_produce() -> None:
    known = known_metric_names()
    for rule in rules():
        unknown = metric_names(rule["expr"]) - known
        assert not unknown, f"{rule.get('alert') or rule.get('record')} reads unknown metrics {sorted(unknown)}"
