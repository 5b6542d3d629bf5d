"""What perception costs, side by side in one run on the real Triton: detection on every frame vs tracking mode,
and face, hands and mask on top of tracking.

One session's video goes frame by frame through the `tryon` model (render off, so only perception is timed),
once per mode, on the same warm server. Per mode: mean and p50/p95 per-frame latency of the Triton call,
frames/s, detector runs per 100 frames, and the server's own per-stage time. Results go to
loadtest/results/perception-<date>.json and a Markdown table is printed.

    .venv/bin/python loadtest/perception.py [--video PATH] [--frames 100]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpc

from streams.inference import session_results
from streams.proto.vto.v1.perception_pb2 import POSE_SOURCE_DETECTOR
from streams.sender import frames_of
from streams.serving.state_codec import parse_perception
from streams.settings import get_settings
from streams.stack import triton

RESULTS = Path(__file__).with_name("results")
DEFAULT_VIDEO = "people/videos/mediapipe_selfie_upper_body.mp4"
MODES: dict[str, dict[str, bool]] = {
    "detect every frame": {"track": False},
    "tracking": {"track": True},
    "tracking + face": {"track": True, "face": True},
    "tracking + hands": {"track": True, "hands": True},
    "tracking + mask": {"track": True, "mask": True},
    "tracking + face + hands + mask": {"track": True, "face": True, "hands": True, "mask": True},
}


def run_mode(
    client: grpc.InferenceServerClient, clip: list[bytes], fps: float, mode: dict[str, bool]
) -> dict[str, object]:
    latencies: list[float] = []
    stages: dict[str, float] = {}
    detector_runs = 0
    started = time.perf_counter()
    # Without a capture time the model treats each frame as a still: detector on every frame.
    flags = {name: mode.get(name, False) for name in ("face", "hands", "mask")}
    results = session_results(client, "tryon", clip, fps if mode.get("track") else None, render=False, **flags)
    t = time.perf_counter()
    for result in results:
        latencies.append(time.perf_counter() - t)
        detector_runs += parse_perception(result.perception).pose_source == POSE_SOURCE_DETECTOR
        for stage, seconds in result.stage_seconds.items():
            stages[stage] = stages.get(stage, 0.0) + seconds
        t = time.perf_counter()
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "frames": len(clip),
        "ms_mean": round(float(ms.mean()), 2),
        "ms_p50": round(float(np.percentile(ms, 50)), 2),
        "ms_p95": round(float(np.percentile(ms, 95)), 2),
        "fps": round(len(clip) / wall, 1),
        "detector_runs_per_100_frames": round(100 * detector_runs / len(clip), 1),
        "server_stage_ms_mean": {k: round(1000 * v / len(clip), 2) for k, v in stages.items() if v > 0},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--fps", type=float, default=30.0, help="capture rate the timestamps pretend")
    args = parser.parse_args()
    settings = get_settings()
    video = args.video or settings.data_dir / DEFAULT_VIDEO
    clip = [data for data, *_ in frames_of(video)][: args.frames]
    with triton.running(settings):
        client = grpc.InferenceServerClient(settings.triton_grpc_url)
        run_mode(client, clip[:10], args.fps, MODES["tracking + face + hands + mask"])  # warm every model
        results = {name: run_mode(client, clip, args.fps, mode) for name, mode in MODES.items()}
        client.close()
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Triton on CPU (onnxruntime, 1 thread per model)",
        "video": str(video.relative_to(settings.data_dir) if video.is_relative_to(settings.data_dir) else video),
        "modes": results,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"perception-{datetime.now(UTC).date()}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print("| mode | ms/frame mean | p50 | p95 | frames/s | detector runs /100 frames | server stages (ms/frame) |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        stages = ", ".join(f"{k} {v}" for k, v in r["server_stage_ms_mean"].items())  # type: ignore[attr-defined]
        print(
            f"| {name} | {r['ms_mean']} | {r['ms_p50']} | {r['ms_p95']} | {r['fps']} | "
            f"{r['detector_runs_per_100_frames']} | {stages} |"
        )
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
