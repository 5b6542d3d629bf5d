"""The worker's log configuration: JSON lines (the default) or text."""

import json
import logging
import logging.config

import pytest

from streams.logs import JsonFormatter, logging_config


def test_json_lines_carry_the_worker_and_the_frame_fields(capsys: pytest.CaptureFixture[str]) -> None:
    logging.config.dictConfig(logging_config("json", "info", worker_id="w7"))
    try:
        logging.getLogger("streams.pipeline").warning(
            "dead-lettering %s", "x", extra={"session_id": "s1", "seq": 4, "partition": 2, "offset": 9, "trace_id": "t"}
        )
        logging.getLogger("other").info("plain", extra={"password": "secret"})  # not a frame field: left out
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["msg"] == "dead-lettering x" and first["level"] == "warning" and first["worker_id"] == "w7"
    assert (first["session_id"], first["seq"], first["partition"], first["offset"], first["trace_id"]) == (
        "s1",
        4,
        2,
        9,
        "t",
    )
    assert "password" not in second and second["logger"] == "other"


def test_text_format_is_for_people() -> None:
    config = logging_config("text", "debug")
    assert "()" not in config["formatters"]["vto"] and config["root"]["level"] == "DEBUG"
    assert logging_config("json", "info")["formatters"]["vto"]["()"] is JsonFormatter
