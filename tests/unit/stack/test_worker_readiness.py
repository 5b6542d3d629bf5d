"""How `vto stack up` reads a worker's /readyz: serving, a standby with no partition left, or not there yet."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from streams.settings import Settings
from streams.stack.embedded import Worker


@pytest.fixture
def readyz() -> Iterator[tuple[int, dict[str, object]]]:
    """A stand-in /readyz answering with whatever body the test puts in the dict (503 unless ready)."""
    reply: dict[str, object] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(reply).encode()
            self.send_response(200 if reply.get("ready") else 503)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], reply
    server.shutdown()
    server.server_close()


def test_a_worker_without_partitions_is_in_the_group_but_not_ready(
    readyz: tuple[int, dict[str, object]], tmp_path: Path
) -> None:
    port, reply = readyz
    worker = Worker(0, Settings(run_dir=tmp_path, worker_web_port=port))
    reply.update(ready=False, assigned=False, partitions=0, rebalancing=True)
    assert not worker.ready() and not worker.in_group()
    reply.update(ready=False, assigned=True, partitions=0, rebalancing=False)  # more workers than partitions
    assert not worker.ready() and worker.in_group()
    reply.update(ready=True, assigned=True, partitions=3, rebalancing=False)
    assert worker.ready() and worker.in_group()
