"""`vto stack up | down | status`: Kafka, then Triton, then the workers, the analytics worker and the browser
gateway (and Prometheus with `--with-prometheus`); stopped in reverse order."""

from __future__ import annotations

import json
import os
import secrets
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from streams.settings import Settings
from streams.stack import kafka, prometheus, triton
from streams.stack.procs import Service, wait_until


def answers_ok(url: str) -> bool:
    """The URL answers 200 now (a service's health or readiness endpoint)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@dataclass(frozen=True)
class Worker:
    index: int
    settings: Settings

    @property
    def port(self) -> int:
        return self.settings.worker_web_port + self.index

    @property
    def service(self) -> Service:
        return Service(f"worker-{self.index}", self.settings.run_dir)

    def readiness(self) -> dict[str, object]:
        """The worker's /readyz body (also when it answers 503); {} when it does not answer yet."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as resp:
                return dict(json.load(resp))
        except urllib.error.HTTPError as exc:
            with exc:
                return dict(json.loads(exc.read() or b"{}"))

    def ready(self) -> bool:
        return bool(self.readiness().get("ready"))

    def in_group(self) -> bool:
        """Serving, or a standby: in the group with no partition left for it (more workers than partitions)."""
        body = self.readiness()
        standby = body.get("assigned") and body.get("partitions") == 0 and not body.get("rebalancing")
        return bool(body.get("ready") or standby)

    def start(self, timeout: float = 90.0) -> None:
        marker = f"--name={self.settings.run_dir / self.service.name}"
        self.service.start(
            [sys.executable, "-m", "streams.cli", "worker", marker],
            env={
                "VTO_WORKER_WEB_PORT": str(self.port),
                "VTO_WORKER_INSTANCE": self.service.name,  # its transactional id outlives a restart
                "VTO_KAFKA_USER": "vto-worker",  # what the worker principal's ACLs allow, nothing more
                "PYTHONUNBUFFERED": "1",
            },
        )
        wait_until(self.service, self.in_group, timeout, f"worker on :{self.port}")
        observed(self.settings)

    def stop(self) -> bool:
        """SIGTERM: the worker drains (stops intake, finishes and commits what it holds) and exits."""
        stopped = self.service.stop(timeout=self.settings.drain_timeout_s + 10)
        observed(self.settings)
        return stopped


def observed(settings: Settings) -> None:
    """Tell a running embedded Prometheus which workers there are now."""
    if prometheus.service(settings).pid() is not None:
        workers = [w.port for w in running_workers(settings)]
        prometheus.write_targets(settings, workers, [g.port for g in running_gateways(settings)])


@dataclass(frozen=True)
class Gateway:
    """A browser gateway process (`vto gateway`): instance N listens on VTO_GATEWAY_PORT + N and reads partition N
    of the replies topic."""

    index: int
    settings: Settings

    @property
    def port(self) -> int:
        return self.settings.gateway_port + self.index

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def service(self) -> Service:
        return Service(f"gateway-{self.index}", self.settings.run_dir)

    def ready(self) -> bool:
        return answers_ok(f"{self.url}healthz")

    def start(self, timeout: float = 60.0) -> None:
        marker = f"--name={self.settings.run_dir / self.service.name}"
        self.service.start(
            [sys.executable, "-m", "streams.cli", "gateway", marker],
            env={
                "VTO_GATEWAY_PORT": str(self.port),
                "VTO_GATEWAY_INSTANCE": str(self.index),
                "VTO_KAFKA_USER": "vto-client",  # frames and control in, its replies partition out: nothing more
                "PYTHONUNBUFFERED": "1",
            },
        )
        wait_until(self.service, self.ready, timeout, f"gateway on :{self.port}")
        observed(self.settings)

    def stop(self) -> bool:
        stopped = self.service.stop()
        observed(self.settings)
        return stopped


@dataclass(frozen=True)
class Analytics:
    """An analytics worker (`vto analytics worker`): instance N serves /metrics and /readyz on
    VTO_ANALYTICS_WEB_PORT + N."""

    index: int
    settings: Settings

    @property
    def port(self) -> int:
        return self.settings.analytics_web_port + self.index

    @property
    def service(self) -> Service:
        return Service(f"analytics-{self.index}", self.settings.run_dir)

    def ready(self) -> bool:
        return answers_ok(f"http://127.0.0.1:{self.port}/readyz")

    def start(self, timeout: float = 90.0) -> None:
        marker = f"--name={self.settings.run_dir / self.service.name}"
        self.service.start(
            [sys.executable, "-m", "streams.cli", "analytics", "worker", marker],
            env={
                "VTO_ANALYTICS_WEB_PORT": str(self.port),
                "VTO_ANALYTICS_INSTANCE": self.service.name,  # its transactional id outlives a restart
                "VTO_KAFKA_USER": "vto-analytics",
                "PYTHONUNBUFFERED": "1",
            },
        )
        wait_until(self.service, self.ready, timeout, f"analytics worker on :{self.port}")

    def stop(self) -> bool:
        return self.service.stop(timeout=self.settings.drain_timeout_s + 10)


def running_analytics(settings: Settings) -> list[Analytics]:
    found = sorted(settings.run_dir.glob("analytics-*.pid"))
    return [Analytics(int(p.stem.split("-")[1]), settings) for p in found]


def running_gateways(settings: Settings) -> list[Gateway]:
    found = sorted(settings.run_dir.glob("gateway-*.pid"))
    return [Gateway(int(p.stem.split("-")[1]), settings) for p in found]


def workers(settings: Settings, count: int) -> list[Worker]:
    return [Worker(i, settings) for i in range(count)]


def ensure_session_secret(settings: Settings) -> None:
    """The embedded stack's keys, 32 random bytes each (mode 0600), written once unless configured: the session-token
    key in <run dir>/session-secret (VTO_SESSION_SECRET[_FILE]; workers, `vto send` and `vto token` read it) and the
    analytics pseudonym key in <run dir>/analytics-secret (VTO_ANALYTICS_SECRET[_FILE])."""
    if not (settings.session_secret.get_secret_value() or settings.session_secret_file):
        _write_secret(settings.run_dir / "session-secret")
    if not (settings.analytics_secret.get_secret_value() or settings.analytics_secret_file):
        _write_secret(settings.run_dir / "analytics-secret")


def _write_secret(path: Path) -> None:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(32))


def up(settings: Settings, worker_count: int = 1, with_prometheus: bool = False) -> None:
    ensure_session_secret(settings)
    kafka.start(settings)
    triton.start(settings)
    if with_prometheus:
        prometheus.start(settings, [])
    for worker in workers(settings, worker_count):
        worker.start()
    Analytics(0, settings).start()
    Gateway(0, settings).start()


def running_workers(settings: Settings) -> list[Worker]:
    found = sorted(settings.run_dir.glob("worker-*.pid"))
    return [Worker(int(p.stem.split("-")[1]), settings) for p in found]


def down(settings: Settings) -> list[str]:
    """Stop everything this project started (by PID file), workers first so they can drain and commit."""
    stopped = [g.service.name for g in running_gateways(settings) if g.stop()]  # pages first: no new frames
    stopped += [w.service.name for w in running_workers(settings) if w.stop()]
    stopped += [a.service.name for a in running_analytics(settings) if a.stop()]  # after the events' writers
    if prometheus.stop(settings):
        stopped.append("prometheus")
    if triton.stop(settings):
        stopped.append("triton")
    if kafka.stop(settings):
        stopped.append("kafka")
    return stopped


def status(settings: Settings) -> dict[str, dict[str, object]]:
    def probe(check: object) -> bool:
        try:
            return bool(check())  # type: ignore[operator]
        except Exception:
            return False

    report: dict[str, dict[str, object]] = {
        "kafka": {
            "pid": kafka.service(settings).pid(),
            "ready": probe(lambda: kafka.ready(settings)),
            "bootstrap": settings.kafka_bootstrap,
        },
        "triton": {
            "pid": triton.service(settings).pid(),
            "ready": probe(lambda: triton.ready(settings)),
            "grpc": settings.triton_grpc_url,
        },
    }
    if (pid := prometheus.service(settings).pid()) is not None:
        report["prometheus"] = {
            "pid": pid,
            "ready": probe(lambda: prometheus.ready(settings)),
            "url": prometheus.url(settings),
        }
    for g in running_gateways(settings):
        report[g.service.name] = {"pid": g.service.pid(), "ready": probe(g.ready), "url": g.url}
    for w in running_workers(settings):
        report[w.service.name] = {"pid": w.service.pid(), "ready": probe(w.ready), "port": w.port}
    for a in running_analytics(settings):
        report[a.service.name] = {"pid": a.service.pid(), "ready": probe(a.ready), "port": a.port}
    return report
