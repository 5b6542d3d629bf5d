"""Freshness under overload, measured on the real embedded stack: one session sent faster than the worker can
render (30 fps of the dance video on the 2-core CPU machine), with latest-frame-wins on (VTO_SUPERSEDE_AFTER_S
at its default) and off (60 s), side by side in one run on the same warm broker and Triton. Prints and writes
loadtest/results/overload-<date>.json: frames sent, rendered, superseded, and the capture -> rendered-frame-
consumed latency overall and over the last second of the session (a growing delay shows there).

    .venv/bin/python loadtest/overload.py [--fps 30] [--seconds 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from streams.accounting import account_when_settled
from streams.demo import DEFAULT_VIDEO, collect, rendered_consumer
from streams.proto.vto.v1.rendered_frame_pb2 import RenderedFrame
from streams.sender import EncodedFrame, frames_of, send
from streams.settings import Settings, get_settings
from streams.stack import embedded

RESULTS = Path(__file__).with_name("results")
# VTO_SUPERSEDE_AFTER_S of the worker: the default, and so long that nothing is superseded
MODES = {"latest_frame_wins": str(Settings.model_fields["supersede_after_s"].default), "every_frame": "60"}


def restart_worker(settings: Settings, supersede_after_s: str) -> None:
    for worker in embedded.running_workers(settings):
        worker.service.stop()
    os.environ["VTO_SUPERSEDE_AFTER_S"] = supersede_after_s  # the worker process inherits it
    embedded.workers(settings, 1)[0].start()


def run(settings: Settings, clip: list[EncodedFrame], fps: float, item: str) -> dict[str, object]:
    session = f"overload-{uuid.uuid4().hex[:8]}"
    consumer = rendered_consumer(settings)
    expected = [len(clip)]
    got: list[tuple[RenderedFrame, int]] = []
    reader = threading.Thread(target=lambda: got.extend(collect(consumer, {session}, expected, 90)))
    reader.start()
    sent = send(settings, clip, session, fps, item)
    summary = account_when_settled(settings, session, len(sent))
    expected[0] = int(summary["rendered"])  # type: ignore[call-overload]
    reader.join()
    consumer.close()
    latency = np.array([consumed - f.capture_time_unix_us for f, consumed in got]) / 1000.0
    last_second = sent[-1].capture_time_unix_us - 1_000_000
    tail = np.array([consumed - f.capture_time_unix_us for f, consumed in got if f.capture_time_unix_us > last_second])

    def pct(values: np.ndarray, q: float) -> float | None:
        return round(float(np.percentile(values, q)), 1) if values.size else None

    return {
        "frames_sent": len(sent),
        "rendered": int(summary["rendered"]),  # type: ignore[call-overload]
        "dropped": summary["dropped"],
        "unaccounted": summary["unaccounted"],
        "latency_ms_p50": pct(latency, 50),
        "latency_ms_p95": pct(latency, 95),
        "latency_ms_max": pct(latency, 100),
        "last_second_latency_ms_p50": pct(tail / 1000.0, 50),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--item", default="tee-breton-stripes")
    args = parser.parse_args()
    settings = get_settings()
    video = list(frames_of(settings.data_dir / DEFAULT_VIDEO))
    clip = (video * 10)[: int(args.fps * args.seconds)]
    embedded.up(settings)
    rows: dict[str, dict[str, object]] = {}
    try:
        for mode, supersede_after_s in MODES.items():
            restart_worker(settings, supersede_after_s)
            rows[mode] = {"supersede_after_s": float(supersede_after_s), **run(settings, clip, args.fps, args.item)}
            print(mode, json.dumps(rows[mode]))
    finally:
        embedded.down(settings)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"overload-{datetime.now(UTC).strftime('%Y-%m-%d')}.json"
    machine = f"{platform.machine()}, {os.cpu_count()} cpus, no GPU"
    report = {"machine": machine, "video": DEFAULT_VIDEO, "fps": args.fps, "seconds": args.seconds, "results": rows}
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
