"""Start and stop the stack's processes by PID: each runs in its own session, logs to a file, and leaves a
PID file in the run folder. Only processes this module started (PID file + matching command line) are stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from streams.errors import StackError

# Children started by this process: kept so they are reaped through their Popen, never garbage-collected
# while running (the processes themselves outlive the CLI that started them, by design).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class Service:
    name: str
    run_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "logs" / f"{self.name}.log"

    def pid(self) -> int | None:
        """The PID of our running process, or None (stale PID files are removed)."""
        try:
            record = json.loads(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        pid, marker = int(record["pid"]), record["marker"]
        if marker not in _cmdline(pid):  # gone, or the PID now belongs to someone else
            self.pid_file.unlink(missing_ok=True)
            return None
        return pid

    def start(self, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
        if (pid := self.pid()) is not None:
            return pid
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        _CHILDREN[proc.pid] = proc
        marker = next(a for a in reversed(argv) if a)  # the last argument identifies our process
        self.pid_file.write_text(json.dumps({"pid": proc.pid, "marker": marker, "argv": argv}))
        deadline = time.monotonic() + 10
        while _cmdline(proc.pid).find(marker) < 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # until the child has exec'd: before that its command line is ours
        return proc.pid

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM (a graceful stop), then SIGKILL after `timeout`. True if a process was stopped."""
        pid = self.pid()
        if pid is None:
            return False
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return True

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    if pid in _CHILDREN:
        if _CHILDREN[pid].poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(service: Service, ready: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `ready` until it is true; fail with the service's log tail if it dies or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.pid() is None:
            raise StackError(f"{service.name} exited while starting; log {service.log_file}:\n{service.tail()}")
        try:
            if ready():
                return
        except Exception:  # not ready yet: connection refused and the like
            pass
        time.sleep(0.25)
    raise StackError(
        f"{service.name}: {what} not ready after {timeout:.0f}s; log {service.log_file}:\n{service.tail()}"
    )


def process_tree(pid: int) -> list[int]:
    """The process and its descendants, from /proc (Triton's models run in python-backend stub processes)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the process and its descendants so far (benchmarks)."""
    total = 0.0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def rss_bytes(pid: int) -> int:
    """Resident memory of the process and its descendants now (benchmarks)."""
    total = 0
    for p in process_tree(pid):
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            continue
    return total
