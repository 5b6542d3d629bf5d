from pathlib import Path

import pytest
from pydantic import ValidationError

from streams.cli import main
from streams.errors import ConfigError
from streams.settings import Settings, get_settings
from streams.stack import embedded


def test_environment_variables_override_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VTO_KAFKA_BOOTSTRAP", "kafka-0:9092,kafka-1:9092")
    monkeypatch.setenv("VTO_TOPIC_PARTITIONS", "48")
    settings = Settings()
    assert settings.kafka_bootstrap == "kafka-0:9092,kafka-1:9092"
    assert settings.topic_partitions == 48


def test_settings_are_frozen_and_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError):
        Settings().topic_partitions = 3  # type: ignore[misc]
    monkeypatch.setenv("VTO_TOPIC_PARTITIONS", "0")
    with pytest.raises(ValidationError):
        Settings()


def test_config_table_lists_every_variable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config"]) == 0
    table = capsys.readouterr().out
    for name in Settings.model_fields:
        assert f"`VTO_{name.upper()}`" in table


def test_vto_config_values_mask_the_session_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VTO_SESSION_SECRET", "do-not-print-me-0123456789")
    monkeypatch.setenv("VTO_TOPIC_PARTITIONS", "12")
    get_settings.cache_clear()
    try:
        assert main(["config", "--values"]) == 0
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr().out
    assert "do-not-print-me" not in out and "VTO_SESSION_SECRET=**********" in out
    assert "VTO_TOPIC_PARTITIONS=12" in out


def test_the_embedded_stack_writes_a_private_key_once_and_every_process_reads_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("VTO_SESSION_SECRET", raising=False)
    settings = Settings(run_dir=tmp_path)
    with pytest.raises(ConfigError, match="VTO_SESSION_SECRET"):
        settings.session_key()  # no key: a worker would refuse to start
    embedded.ensure_session_secret(settings)
    key = settings.session_key()
    assert len(key) == 64 and (tmp_path / "session-secret").stat().st_mode & 0o777 == 0o600
    embedded.ensure_session_secret(settings)
    assert Settings(run_dir=tmp_path).session_key() == key  # kept across stack restarts: tokens stay valid
    mounted = tmp_path / "mounted"
    mounted.write_text("a-key-from-a-kubernetes-secret\n")
    assert Settings(session_secret_file=mounted).session_key() == b"a-key-from-a-kubernetes-secret"
    with pytest.raises(ConfigError):
        Settings(session_secret="short").session_key()


def test_the_embedded_stacks_default_ports_do_not_collide() -> None:
    # `vto stack up --workers N` gives worker i the port VTO_WORKER_WEB_PORT + i; gateway i VTO_GATEWAY_PORT + i.
    s = Settings()
    workers = {s.worker_web_port + i for i in range(16)}
    gateways = {s.gateway_port + i for i in range(s.gateway_reply_partitions)}
    single = [
        s.analytics_web_port,
        s.prometheus_port,
        s.triton_http_port,
        s.triton_metrics_port,
        s.kafka_controller_port,
    ]
    single.append(int(s.triton_grpc_url.rsplit(":", 1)[1]))
    single.append(int(s.kafka_bootstrap.rsplit(":", 1)[1]))
    assert len(set(single)) == len(single)
    assert not (workers & gateways) and not (set(single) & (workers | gateways))
