"""The worker's Faust configuration: what it may hold in memory, and where it listens."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from streams.app import create_app
from streams.settings import Settings


def test_a_worker_holds_a_few_batches_in_memory_not_thousands_of_frames() -> None:
    settings = Settings()
    app = create_app(settings, CollectorRegistry())
    buffered = app.conf.stream_buffer_maxsize + app.conf.broker_max_poll_records
    assert buffered <= 8 * settings.worker_batch_size
    assert buffered * settings.max_message_bytes <= 512 * 1024 * 1024  # worst case: every frame at the size limit


def test_the_worker_listens_on_the_configured_address_only() -> None:
    app = create_app(Settings(bind_address="127.0.0.1"), CollectorRegistry())
    assert app.conf.web_bind == "127.0.0.1"
