"""The Triton load test: shopper sessions straight to a running Triton's `tryon` model (async gRPC, no Kafka, no
worker), each session's frames in order with the tracking state the last one left, open loop at F fps per session.
What one Triton (one CPU machine, or one GPU) serves, and how many sessions at 15 fps it holds within the budget.

    .venv/bin/python -m loadtest.triton_load --url 127.0.0.1:8001 --sessions 1 2 4 8 --fps 15 --seconds 10

Per number of sessions: frames/s answered, latency (request sent -> answer) p50/p95/p99/max, frames that could not
be sent on time (a session's previous frame still out: the frame is skipped, as a worker's latest-frame-wins would),
errors. Writes loadtest/results/triton-load-<date>[-<label>].json and prints one line per configuration and the
largest session count whose p99 stayed within --budget-ms with at most 1% of the frames skipped. The same script
measures a GPU host's Triton (docs/performance.md, "GPU").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc.aio as grpc_aio

from streams.inference import TryOnRequest, perception_flags, tryon_inputs, tryon_result

ROOT = Path(__file__).resolve().parents[1]


async def session(
    client: Any, model: str, frames: list[bytes], fps: float, seconds: float, item: str, out: dict[str, list[Any]]
) -> None:
    """One shopper: a frame every 1/fps s; a frame whose predecessor is still out is skipped (counted)."""
    state, busy = b"", asyncio.Event()
    busy.set()
    pending: set[asyncio.Task[None]] = set()

    async def one(index: int, data: bytes) -> None:
        nonlocal state
        busy.clear()
        request = TryOnRequest(
            data,
            capture_time_us=int(1e6 + index * 1e6 / fps),
            state=state,
            item_id=item,
            **perception_flags({"face", "mask"}),
        )
        started = time.perf_counter()
        try:
            result = tryon_result(await client.infer(model, tryon_inputs(request)))
            state = result.state
            out["latency_ms"].append((time.perf_counter() - started) * 1000)
            out["answered_at"].append(time.perf_counter())
        except Exception as exc:  # overload refusals, deadlines: counted, the session goes on
            out["errors"].append(type(exc).__name__)
        finally:
            busy.set()

    begin = time.perf_counter()
    for index in range(int(fps * seconds)):
        await asyncio.sleep(max(0.0, begin + index / fps - time.perf_counter()))
        if not busy.is_set():
            out["skipped"].append(index)
            continue
        task = asyncio.create_task(one(index, frames[index % len(frames)]))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)


async def configuration(
    url: str, model: str, clips: list[list[bytes]], sessions: int, fps: float, seconds: float, item: str
) -> dict[str, Any]:
    client = grpc_aio.InferenceServerClient(url)
    out: dict[str, list[Any]] = {"latency_ms": [], "answered_at": [], "errors": [], "skipped": []}
    try:
        started = time.perf_counter()
        await asyncio.gather(
            *(session(client, model, clips[i % len(clips)], fps, seconds, item, out) for i in range(sessions))
        )
        elapsed = time.perf_counter() - started
    finally:
        await client.close()
    lat = np.array(out["latency_ms"]) if out["latency_ms"] else np.array([np.nan])
    offered = sessions * int(fps * seconds)
    return {
        "sessions": sessions,
        "fps_per_session": fps,
        "frames_offered": offered,
        "frames_answered": len(out["latency_ms"]),
        "frames_skipped": len(out["skipped"]),
        "errors": len(out["errors"]),
        "answered_per_s": round(len(out["latency_ms"]) / elapsed, 2),
        "latency_ms": {
            "p50": round(float(np.nanpercentile(lat, 50)), 1),
            "p95": round(float(np.nanpercentile(lat, 95)), 1),
            "p99": round(float(np.nanpercentile(lat, 99)), 1),
            "max": round(float(np.nanmax(lat)), 1),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("VTO_TRITON_GRPC_URL", "127.0.0.1:8001"))
    parser.add_argument("--model", default="tryon")
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--item", default="tee-breton-stripes")
    parser.add_argument("--budget-ms", type=float, default=100.0)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument(
        "--frames", type=Path, help="JPEG files <clip>/<nnnn>.jpg to send instead of the videos (tools/gpu_bundle.py)"
    )
    parser.add_argument("--label", default="", help="added to the result file's name (cpu, h200, ...)")
    parser.add_argument("--results", type=Path, default=ROOT / "loadtest" / "results", help="where the JSON goes")
    args = parser.parse_args(argv)
    if args.frames:
        clips = [[f.read_bytes() for f in sorted(d.glob("*.jpg"))] for d in sorted(args.frames.iterdir()) if d.is_dir()]
        videos = [str(args.frames)]
    else:
        from streams.sender import SAMPLE_VIDEOS, sample_clips  # the app's venv (a GPU host's Python sends --frames)

        clips = [[data for data, *_ in clip] for clip in sample_clips(args.data)]
        videos = list(SAMPLE_VIDEOS)
    rows = []
    for n in args.sessions:
        row = asyncio.run(configuration(args.url, args.model, clips, n, args.fps, args.seconds, args.item))
        rows.append(row)
        lat = row["latency_ms"]
        print(
            f"{n:>4} sessions x {args.fps:g} fps: {row['answered_per_s']} frames/s answered, "
            f"{row['frames_skipped']} skipped, {row['errors']} errors, "
            f"p50/p99/max {lat['p50']}/{lat['p99']}/{lat['max']} ms"
        )
    within = [
        r["sessions"]
        for r in rows
        if r["latency_ms"]["p99"] <= args.budget_ms and r["frames_skipped"] <= 0.01 * r["frames_offered"]
    ]
    held = max(within, default=0)
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    name = f"triton-load-{date}{'-' + args.label if args.label else ''}.json"
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / name
    result = {
        "date": date,
        "url": args.url,
        "machine": f"{os.cpu_count()} CPUs",
        "item": args.item,
        "videos": videos,
        "seconds": args.seconds,
        "budget_ms": args.budget_ms,
        "configurations": rows,
        "sessions_within_budget": held,
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"sessions at {args.fps:g} fps within p99 <= {args.budget_ms:g} ms, at most 1% skipped: {held}")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
