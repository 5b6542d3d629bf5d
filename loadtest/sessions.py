"""Concurrent shopper sessions through the real embedded stack; prints throughput, drops and latency.

Each configuration (sessions x fps) runs side by side in one invocation on the same warm stack, so the
figures compare. Every session sends the same pre-encoded clip, paced at its fps, and a consumer measures
capture -> rendered-frame-consumed latency. Results go to loadtest/results/sessions-<date>.json.

    .venv/bin/python loadtest/sessions.py --configs 1x15 2x10 4x5 --seconds 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from streams.demo import DEFAULT_VIDEO, collect, rendered_consumer
from streams.proto.vto.v1.rendered_frame_pb2 import RenderedFrame
from streams.sender import EncodedFrame, frames_of, send
from streams.settings import get_settings
from streams.stack import embedded

RESULTS = Path(__file__).with_name("results")


def run_config(
    sessions: int, fps: float, seconds: float, clip: list[EncodedFrame], item: str = ""
) -> dict[str, object]:
    settings = get_settings()
    frames = clip[: int(fps * seconds)]
    consumer = rendered_consumer(settings)
    ids = [f"load-{uuid.uuid4().hex[:8]}" for _ in range(sessions)]
    offered = sessions * len(frames)
    got: list[tuple[RenderedFrame, int]] = []
    reader = threading.Thread(target=lambda: got.extend(collect(consumer, set(ids), [offered], seconds + 30)))
    reader.start()
    start_us = time.time_ns() // 1000
    senders = [threading.Thread(target=send, args=(settings, frames, sid, fps, item)) for sid in ids]
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    reader.join()
    consumer.close()
    # Latency = consumed - captured per rendered frame; fps runs to the last frame, not the collector's timeout.
    latencies = np.array([consumed - f.capture_time_unix_us for f, consumed in got]) / 1000.0
    elapsed = max((max((c for _, c in got), default=start_us) - start_us) / 1e6, 1e-9)
    return {
        "sessions": sessions,
        "fps_per_session": fps,
        "frames_offered": offered,
        "frames_rendered": int(latencies.size),
        "frames_missing": offered - int(latencies.size),
        "rendered_fps": round(latencies.size / elapsed, 1),
        "latency_ms_p50": round(float(np.percentile(latencies, 50)), 1) if latencies.size else None,
        "latency_ms_p95": round(float(np.percentile(latencies, 95)), 1) if latencies.size else None,
        "latency_ms_p99": round(float(np.percentile(latencies, 99)), 1) if latencies.size else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["1x15", "2x10", "4x5", "2x15"], help="SESSIONSxFPS")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--item", default="tee-breton-stripes", help="catalogue item every session tries on")
    parser.add_argument("--keep-up", action="store_true")
    args = parser.parse_args()
    settings = get_settings()
    clip = list(frames_of(settings.data_dir / DEFAULT_VIDEO))
    embedded.up(settings)
    try:
        rows = [
            run_config(int(s), float(f), args.seconds, clip, args.item) for s, f in (c.split("x") for c in args.configs)
        ]
    finally:
        if not args.keep_up:
            embedded.down(settings)
    columns = ("sessions", "fps/sess", "offered", "rendered", "fps", "p50 ms", "p95 ms", "p99 ms")
    print(" ".join(f"{c:>8}" for c in columns))
    keys = (
        "sessions",
        "fps_per_session",
        "frames_offered",
        "frames_rendered",
        "rendered_fps",
        "latency_ms_p50",
        "latency_ms_p95",
        "latency_ms_p99",
    )
    for r in rows:
        print(" ".join(f"{r[k]!s:>8}" for k in keys))
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    out = RESULTS / f"sessions-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {os.cpu_count()} cpus, no GPU",
                "video": DEFAULT_VIDEO,
                "seconds": args.seconds,
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written {out}")


if __name__ == "__main__":
    main()
