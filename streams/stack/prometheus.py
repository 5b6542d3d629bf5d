"""The embedded Prometheus (Debian's `prometheus` package), started by `vto stack up --with-prometheus`: it scrapes
the workers and Triton with the same alert and recording rules as production, which live in one place, the
PrometheusRule of `k8s/` (`rule_groups`)."""

from __future__ import annotations

import json
import shutil
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from streams.errors import StackError
from streams.settings import Settings
from streams.stack.procs import Service, wait_until

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "k8s" / "base" / "monitoring" / "prometheusrule.yaml"


def rule_groups(source: Path = RULES) -> list[dict[str, Any]]:
    """The rule groups of the project's PrometheusRule (its `spec.groups`)."""
    document = yaml.safe_load(source.read_text())
    return list(document["spec"]["groups"])


def write_rules(path: Path, source: Path = RULES) -> Path:
    """A Prometheus rule file (what `promtool` and a plain `prometheus` read) with the PrometheusRule's groups."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"groups": rule_groups(source)}, sort_keys=False))
    return path


def available() -> bool:
    return shutil.which("prometheus") is not None


def service(settings: Settings) -> Service:
    return Service("prometheus", settings.run_dir)


def url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.prometheus_port}"


def write_targets(settings: Settings, worker_ports: list[int], gateway_ports: list[int] | None = None) -> None:
    """The workers and gateways to scrape (file-based discovery: Prometheus picks a change up within seconds)."""
    for name, ports in (("workers", worker_ports), ("gateways", gateway_ports or [])):
        targets = [{"targets": [f"127.0.0.1:{port}" for port in ports], "labels": {}}]
        path = settings.run_dir / f"prometheus-{name}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(targets))
        tmp.replace(path)  # never a half-written file for Prometheus to read


def write_config(settings: Settings) -> Path:
    """Scrape jobs named as in production (the rules select `job="vto-worker"` and `job="triton"`; the analytics
    worker is `job="vto-analytics"`), every 2 s so a
    test or a demo sees its figures at once; the rules of k8s/base/monitoring/prometheusrule.yaml."""
    rules = write_rules(settings.run_dir / "prometheus-rules.yml")
    config = {
        "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": "vto-worker",
                "file_sd_configs": [{"files": [str(settings.run_dir / "prometheus-workers.json")]}],
            },
            {"job_name": "triton", "static_configs": [{"targets": [f"127.0.0.1:{settings.triton_metrics_port}"]}]},
            {
                "job_name": "vto-gateway",
                "file_sd_configs": [{"files": [str(settings.run_dir / "prometheus-gateways.json")]}],
            },
            {  # the embedded stack's one analytics worker (streams/stack/embedded.py `Analytics(0, ...)`)
                "job_name": "vto-analytics",
                "static_configs": [{"targets": [f"127.0.0.1:{settings.analytics_web_port}"]}],
            },
        ],
    }
    path = settings.run_dir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def ready(settings: Settings) -> bool:
    try:
        with urllib.request.urlopen(f"{url(settings)}/-/ready", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def start(
    settings: Settings, worker_ports: list[int], gateway_ports: list[int] | None = None, timeout: float = 60.0
) -> None:
    if not available():
        raise StackError("`prometheus` is not installed: `apt-get install prometheus` (Debian's package)")
    write_targets(settings, worker_ports, gateway_ports)
    config = write_config(settings)
    svc = service(settings)
    svc.start(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={settings.run_dir / 'prometheus-data'}",
            "--storage.tsdb.retention.time=2d",
            f"--web.listen-address={settings.bind_address}:{settings.prometheus_port}",
            "--web.console.templates=/dev/null",
            "--web.console.libraries=/dev/null",
        ]
    )
    wait_until(svc, lambda: ready(settings), timeout, "Prometheus")


def stop(settings: Settings) -> bool:
    return service(settings).stop()


def _api(settings: Settings, path: str, params: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
    """A query through Prometheus' HTTP API: its result (an error answer raises StackError)."""
    with urllib.request.urlopen(
        f"{url(settings)}/api/v1/{path}?{urllib.parse.urlencode(params)}", timeout=timeout
    ) as resp:
        body = json.load(resp)
    if body.get("status") != "success":
        raise StackError(f"Prometheus refused {params['query']!r}: {body}")
    return list(body["data"]["result"])


def query(settings: Settings, expr: str) -> list[dict[str, Any]]:
    """An instant query: its result vector."""
    return _api(settings, "query", {"query": expr}, timeout=10)


def query_range(settings: Settings, expr: str, start: float, end: float, step_s: float) -> list[dict[str, Any]]:
    """A range query: its result matrix (one entry per series, `values` [t, "v"])."""
    return _api(settings, "query_range", {"query": expr, "start": start, "end": end, "step": step_s}, timeout=30)
