"""`vto demo` as a measurement: the demo's run (a real video through the whole embedded stack) with its summary
written to loadtest/results/demo-<date>.json, the figures the README quotes.

    .venv/bin/python loadtest/demo.py
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from streams import demo
from streams.settings import get_settings

RESULTS = Path(__file__).with_name("results")


def main() -> None:
    settings = get_settings()
    summary = demo.run(settings, settings.data_dir / demo.DEFAULT_VIDEO, Path("out/demo"), fps=15.0)
    out = RESULTS / f"demo-{datetime.now(UTC).strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps(asdict(summary), indent=2) + "\n")
    print(out.read_text())
    print(f"written {out}")


if __name__ == "__main__":
    main()
