import pytest
from pydantic import ValidationError

from streams.cli import main
from streams.settings import Settings


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
