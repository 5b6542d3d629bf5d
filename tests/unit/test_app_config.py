"""The worker's Faust configuration: what it may hold in memory, and where it listens."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import faust
import pytest
from prometheus_client import CollectorRegistry

from streams import app as app_module
from streams import kafka_client
from streams.app import create_app
from streams.settings import Settings
from streams.stack import certs


def test_a_worker_holds_a_few_batches_in_memory_not_thousands_of_frames() -> None:
    settings = Settings(kafka_security="PLAINTEXT")
    app = create_app(settings, CollectorRegistry())
    buffered = app.conf.stream_buffer_maxsize + app.conf.broker_max_poll_records
    assert buffered <= 8 * settings.worker_batch_size
    assert buffered * settings.max_message_bytes <= 512 * 1024 * 1024  # worst case: every frame at the size limit


def test_the_worker_listens_on_the_configured_address_only() -> None:
    app = create_app(Settings(bind_address="127.0.0.1", kafka_security="PLAINTEXT"), CollectorRegistry())
    assert app.conf.web_bind == "127.0.0.1"


def test_the_worker_authenticates_as_its_principal_over_tls(tmp_path: Path) -> None:
    certs.ensure(tmp_path)
    certs.users(tmp_path)
    settings = Settings(run_dir=tmp_path, kafka_user="vto-worker")
    credentials = create_app(settings, CollectorRegistry()).conf.broker_credentials
    assert credentials.username == "vto-worker" and credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.protocol.value == "SASL_SSL" and credentials.ssl_context.verify_mode == ssl.CERT_REQUIRED
    producer = kafka_client.aiokafka(settings)  # the transactional producer's
    assert producer["security_protocol"] == "SASL_SSL" and producer["sasl_plain_username"] == "vto-worker"


async def test_faust_never_commits_offsets_itself_they_go_only_with_the_transactions() -> None:
    """Faust's acknowledged offsets run ahead of the open transaction: committing them at a rebalance or a stop
    would skip records whose outputs are then aborted (a frame left without an outcome)."""
    app = create_app(Settings(kafka_security="PLAINTEXT"), CollectorRegistry())
    assert await app.consumer._commit({("vto.frames.v1", 0): 99}) is True  # nothing sent to the broker
    assert app.conf.broker_commit_interval > 24 * 3600


async def test_sigterm_marks_the_worker_draining_and_a_drain_past_its_timeout_exits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The drain as the app runs it (Faust's stop made to hang): not ready and draining at once; past
    VTO_DRAIN_TIMEOUT_S the watchdog ends the process (here: records that it would)."""
    stuck = asyncio.Event()

    async def hanging_stop(self: object) -> None:
        await stuck.wait()

    expired: list[float] = []
    monkeypatch.setattr(faust.App, "on_stop", hanging_stop)
    monkeypatch.setattr(app_module, "_drain_expired", expired.append)
    app = create_app(Settings(kafka_security="PLAINTEXT", drain_timeout_s=0.2), CollectorRegistry())
    app.metrics.ready.set(1)  # type: ignore[attr-defined]
    drain = asyncio.ensure_future(app.on_stop())
    await asyncio.sleep(0.05)
    registry = app.metrics.registry  # type: ignore[attr-defined]
    assert registry.get_sample_value("vto_worker_draining") == 1 and registry.get_sample_value("vto_worker_ready") == 0
    assert expired == []
    await asyncio.sleep(0.4)
    assert expired == [0.2]  # the watchdog fired: the real one exits with status 75
    stuck.set()
    await drain


async def test_a_drain_within_its_timeout_does_not_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    async def quick_stop(self: object) -> None:
        await asyncio.sleep(0.01)

    expired: list[float] = []
    monkeypatch.setattr(faust.App, "on_stop", quick_stop)
    monkeypatch.setattr(app_module, "_drain_expired", expired.append)
    app = create_app(Settings(kafka_security="PLAINTEXT", drain_timeout_s=0.2), CollectorRegistry())
    await app.on_stop()
    await asyncio.sleep(0.3)
    assert expired == []
