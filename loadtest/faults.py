"""Fault figures: runs the fault tests against the real services (a worker SIGKILLed, the broker restarted, a
worker joining and leaving, Triton killed, a worker SIGTERMed and drained, the analytics worker SIGKILLed) and
writes what each measured to
loadtest/results/faults-<date>.json: frames sent, rendered, dropped by reason, dead-lettered, unaccounted, events,
recovery and drain times.

    .venv/bin/python loadtest/faults.py
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = [
    "tests/integration/test_faults.py",
    "tests/integration/test_worker_takeover.py",
    "tests/integration/test_lifecycle.py",
    "tests/integration/test_analytics.py",
]


def main() -> int:
    out = ROOT / "loadtest" / "results" / f"faults-{datetime.date.today().isoformat()}.json"
    out.unlink(missing_ok=True)
    env = {**os.environ, "VTO_FAULT_RESULTS": str(out)}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS], cwd=ROOT, env=env)
    if out.exists():
        print(out.read_text())
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
