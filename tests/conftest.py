"""Test configuration. Integration and end-to-end tests share one real stack (Kafka + Triton + a worker),
started by the project's own code on ports of its own, and stopped at the end of the run."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as grpc

ROOT = Path(__file__).resolve().parents[1]
TEST_ENV = {
    "VTO_KAFKA_BOOTSTRAP": "127.0.0.1:19092",
    "VTO_KAFKA_CONTROLLER_PORT": "19093",
    "VTO_TRITON_GRPC_URL": "127.0.0.1:18001",
    "VTO_TRITON_HTTP_PORT": "18000",
    "VTO_TRITON_METRICS_PORT": "18002",
    "VTO_WORKER_WEB_PORT": "16066",
    "VTO_PROMETHEUS_PORT": "19090",
    "VTO_GATEWAY_PORT": "18080",
    "VTO_RUN_DIR": str(ROOT / ".cache" / "test-run"),
    # Tests check what comes out, not load shedding (unit-tested); a busy CI machine must not drop frames.
    "VTO_FRAME_MAX_AGE_S": "60",
    "VTO_SUPERSEDE_AFTER_S": "60",
    # The session-token key of the test stack's workers and of the tests that mint tokens for them.
    "VTO_SESSION_SECRET": "test-session-secret-0123456789",
    "VTO_ANALYTICS_SECRET": "test-analytics-secret-0123456789",
    "VTO_ANALYTICS_WEB_PORT": "16090",
}
for _key, _value in TEST_ENV.items():
    os.environ.setdefault(_key, _value)

from streams.settings import Settings  # noqa: E402
from streams.stack import embedded  # noqa: E402


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def data_dir(settings: Settings) -> Path:
    if not settings.data_dir.is_dir():
        pytest.fail(f"sample data not found at {settings.data_dir} (set VTO_DATA_DIR)")
    return settings.data_dir


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[Settings]:
    """The real embedded stack, fresh broker storage each run; always brought down, even after failures."""
    embedded.down(settings)  # leftovers of an interrupted run, found by their PID files
    shutil.rmtree(settings.run_dir / "kafka-data", ignore_errors=True)
    try:
        embedded.up(settings)
        yield settings
    finally:
        embedded.down(settings)
    leftovers = {name: s["pid"] for name, s in embedded.status(settings).items() if s["pid"] is not None}
    assert not leftovers, f"processes still running after `stack down`: {leftovers}"


@pytest.fixture(scope="session")
def triton_client(stack: Settings) -> Iterator[grpc.InferenceServerClient]:
    """A gRPC client of the stack's real Triton."""
    client = grpc.InferenceServerClient(stack.triton_grpc_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def promtool() -> str:
    """Debian's promtool (package `prometheus`): `make test` installs it where it can; CI must have it."""
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not on PATH (Debian: apt-get install prometheus)")
        pytest.skip("promtool is not on PATH (Debian: apt-get install prometheus)")
    return path
