"""PromQL helpers shared by the rule, dashboard and (the lead's) integration tests: the dashboard's queries as plain
PromQL, the metric names an expression reads, the names this project knows, and a parse check through promtool.

`metric_names` is a small lexer, not a parser (promtool is the parser): strings, label matchers, ranges and
grouping clauses are skipped, functions and aggregations are recognised by the `(` (or `by`/`without`) that
follows them; a `__name__` matcher contributes the names it lists (`__name__=~"a|b"`).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

# Triton's own metrics (https://github.com/triton-inference-server/server/blob/main/docs/user_guide/metrics.md);
# the nv_gpu_* ones exist on GPU hosts only.
TRITON_METRICS = frozenset(
    {
        "nv_inference_request_success",
        "nv_inference_request_failure",
        "nv_inference_count",
        "nv_inference_exec_count",
        "nv_inference_request_duration_us",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_input_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_compute_output_duration_us",
        "nv_inference_pending_request_count",
        "nv_gpu_utilization",
        "nv_gpu_memory_used_bytes",
        "nv_gpu_memory_total_bytes",
        "nv_cpu_utilization",
    }
)
PROMETHEUS_METRICS = frozenset({"up"})

# Grafana's built-in variables, as a plain Prometheus query would have them.
GRAFANA_VARIABLES = {"__rate_interval": "5m", "__interval": "1m", "__range": "1d"}
_GRAFANA_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")

AGGREGATIONS = frozenset(
    {
        "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
        "quantile", "limitk", "limit_ratio",
    }
)  # fmt: skip
FUNCTIONS = frozenset(
    {
        "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh", "avg_over_time",
        "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh", "count_over_time", "day_of_month",
        "day_of_week", "day_of_year", "days_in_month", "deg", "delta", "deriv", "double_exponential_smoothing", "end",
        "exp", "floor", "histogram_avg", "histogram_count", "histogram_fraction", "histogram_quantile",
        "histogram_stddev", "histogram_stdvar", "histogram_sum", "holt_winters", "hour", "idelta", "increase", "info",
        "irate", "label_join", "label_replace", "last_over_time", "ln", "log10", "log2", "mad_over_time",
        "max_over_time", "min_over_time", "minute", "month", "pi", "predict_linear", "present_over_time",
        "quantile_over_time", "rad", "rate", "resets", "round", "scalar", "sgn", "sin", "sinh", "sort", "sort_by_label",
        "sort_by_label_desc", "sort_desc", "sqrt", "start", "stddev_over_time", "stdvar_over_time", "sum_over_time",
        "tan", "tanh", "time", "timestamp", "vector", "year",
    }
)  # fmt: skip
_GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_KEYWORDS = _GROUPING | {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}

_TOKEN = re.compile(
    r"""
      (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<comment>\#[^\n]*)
    | (?P<range>\[[^\]]*\])
    | (?P<duration>\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*(?![\w:]))
    | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<ident>[a-zA-Z_:][\w:]*)
    | (?P<op>=~|!~|!=|==|>=|<=|\S)
    | \s+
    """,
    re.VERBOSE,
)
_METRIC_NAME = re.compile(r"[a-zA-Z_:][\w:]*")


def _tokens(expr: str) -> list[tuple[str, str]]:
    return [(m.lastgroup, m.group()) for m in _TOKEN.finditer(expr) if m.lastgroup and m.lastgroup != "comment"]


def _unquote(literal: str) -> str:
    body = literal[1:-1]
    return body if literal[0] == "`" else body.encode().decode("unicode_escape")


def _is_metric(word: str, following: str) -> bool:
    """An identifier outside label matchers and grouping clauses: a metric unless a keyword, a function or an
    aggregation (those are followed by their arguments, an aggregation maybe first by `by`/`without`)."""
    if word.lower() in _KEYWORDS:
        return False
    if word in FUNCTIONS and following == "(":
        return False
    return not (word in AGGREGATIONS and (following == "(" or following.lower() in ("by", "without")))


def metric_names(expr: str) -> set[str]:
    """The metric names (recording-rule names included) an expression selects."""
    tokens = _tokens(expr)
    names: set[str] = set()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if text == "{":  # label matchers: only a __name__ matcher names metrics
            i += 1
            while i < len(tokens) and tokens[i][1] != "}":
                if tokens[i][1] == "__name__" and i + 2 < len(tokens) and tokens[i + 2][0] == "string":
                    operator, value = tokens[i + 1][1], _unquote(tokens[i + 2][1])
                    alternatives = value.split("|") if operator == "=~" else [value] if operator == "=" else []
                    names.update(name for name in alternatives if _METRIC_NAME.fullmatch(name))
                i += 1
        elif kind == "ident" and text.lower() in _GROUPING and following == "(":
            while i < len(tokens) and tokens[i][1] != ")":  # by (le), on (job), group_left (code): label names
                i += 1
        elif kind == "ident" and _is_metric(text, following):
            names.add(text)
        i += 1
    return names


def grafana_to_promql(expr: str, step_s: float | None = None, scrape_interval_s: float = 15.0) -> str:
    """The query as Grafana sends it to Prometheus. For an instant query (no step) the variables take the values of
    GRAFANA_VARIABLES; for a range query with step `step_s`, `$__interval` is the step and `$__rate_interval`
    max(step + scrape interval, 4 x scrape interval), as Grafana computes them. An unknown `$variable` is an error."""
    values = dict(GRAFANA_VARIABLES)
    if step_s is not None:
        values["__interval"] = _duration(step_s)
        values["__rate_interval"] = _duration(max(step_s + scrape_interval_s, 4 * scrape_interval_s))

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise ValueError(f"unknown Grafana variable ${name} in {expr!r}")
        return values[name]

    return _GRAFANA_VARIABLE.sub(value, expr)


def _duration(seconds: float) -> str:
    return f"{max(1, math.ceil(seconds))}s"


def _panels(panels: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # a collapsed row holds its panels


def dashboard_panels(path: Path) -> list[dict[str, Any]]:
    """Every panel of a Grafana dashboard, rows included, those inside collapsed rows too."""
    return list(_panels(json.loads(path.read_text())["panels"]))


def dashboard_queries(path: Path) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of the dashboard, Grafana's variables substituted."""
    return [
        (panel.get("title", ""), grafana_to_promql(target["expr"]))
        for panel in dashboard_panels(path)
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def worker_metric_names() -> set[str]:
    """Every series name the worker and the browser gateway can expose (streams.metrics.Metrics and
    GatewayMetrics), with the suffixes of their types."""
    from streams.metrics import GatewayMetrics, Metrics

    registry, gateway_registry = CollectorRegistry(), CollectorRegistry()
    Metrics(registry)
    GatewayMetrics(gateway_registry)
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    families = [*registry.collect(), *gateway_registry.collect()]
    return {family.name + suffix for family in families for suffix in suffixes.get(family.type, ("",))}


def rule_names(groups: Sequence[dict[str, Any]] | None = None) -> set[str]:
    """The names recorded by the project's recording rules (k8s/base/monitoring/prometheusrule.yaml)."""
    from streams.stack.prometheus import rule_groups

    return {rule["record"] for group in groups or rule_groups() for rule in group["rules"] if "record" in rule}


def known_metric_names() -> set[str]:
    """What a query of ours may read: the worker's metrics, Triton's, our recording rules and `up`."""
    return worker_metric_names() | TRITON_METRICS | PROMETHEUS_METRICS | rule_names()


def unknown_metric_names(expr: str, known: set[str] | None = None) -> set[str]:
    """The metric names `expr` reads that nothing of ours produces (a typo, a metric renamed or not added yet)."""
    return metric_names(expr) - (known_metric_names() if known is None else known)


def promtool_check(
    exprs: Sequence[str], directory: Path, promtool: str = "promtool"
) -> subprocess.CompletedProcess[str]:
    """`promtool check rules` on the expressions as recording rules `dashboard:expr_<n>`: does each one parse?"""
    rules = [{"record": f"dashboard:expr_{n}", "expr": expr} for n, expr in enumerate(exprs)]
    path = directory / "exprs.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "exprs", "rules": rules}]}, sort_keys=False))
    return subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
