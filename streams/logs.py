"""Log lines as JSON objects, one per line (VTO_LOG_FORMAT=json, the default), or as text for a person.

Every line has `ts` (UTC, ISO 8601), `level`, `logger`, `msg` and the worker's `worker_id`; a line about a frame
also has `session_id`, `seq`, `partition`, `offset` and `trace_id` (passed as `extra=record.log_fields(frame)` in
streams/pipeline.py), so one shopper's frame can be followed from the log aggregator to its trace.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

# Fields a frame's log line may carry (see pipeline.Record.log_fields); anything else in `extra` is left out.
FRAME_FIELDS = ("session_id", "seq", "partition", "offset", "trace_id")


class JsonFormatter(logging.Formatter):
    def __init__(self, worker_id: str = "") -> None:
        super().__init__()
        self.worker_id = worker_id

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.worker_id:
            line["worker_id"] = self.worker_id
        for name in FRAME_FIELDS:
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def logging_config(log_format: str, level: str, worker_id: str = "") -> dict[str, Any]:
    """A logging.config.dictConfig for the worker (Faust applies it when the worker starts)."""
    formatter: dict[str, Any] = (
        {"()": JsonFormatter, "worker_id": worker_id}
        if log_format == "json"
        else {"format": "[%(asctime)s] %(levelname)s %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"vto": formatter},
        "handlers": {"out": {"class": "logging.StreamHandler", "formatter": "vto", "stream": sys.stdout}},
        "root": {"level": level.upper(), "handlers": ["out"]},
    }
