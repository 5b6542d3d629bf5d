import json
import subprocess
import sys
from pathlib import Path

from streams.stack.procs import Service

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_start_tracks_and_stop_ends_our_process(tmp_path: Path) -> None:
    svc = Service("sleeper", tmp_path)
    pid = svc.start(SLEEPER)
    assert svc.pid() == pid
    assert svc.start(SLEEPER) == pid  # idempotent: no second copy
    assert svc.stop(timeout=5)
    assert svc.pid() is None
    assert not svc.pid_file.exists()
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]


def test_a_pid_file_naming_someone_elses_process_is_never_signalled(tmp_path: Path) -> None:
    other = subprocess.Popen(SLEEPER)
    try:
        svc = Service("stale", tmp_path)
        svc.pid_file.write_text(json.dumps({"pid": other.pid, "marker": "not-this-process", "argv": []}))
        assert svc.pid() is None
        assert not svc.stop(timeout=1)
        assert other.poll() is None  # still running
    finally:
        other.kill()
        other.wait()
