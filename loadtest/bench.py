"""`make bench`: the CPU benchmark. The pipeline (sender -> Kafka -> worker -> Triton -> Kafka -> client) under an
open-loop load, side by side in one run with the same models, pre/post-processing and rendering called in-process
(streams/serving/inprocess.py: no Kafka, no Triton, no worker) on the same frames.

1. Frames: the sample videos of several sizes (VTO_DATA_DIR/people/videos), encoded once as a client would; session
   i sends video i mod 3, trying on one item.
2. In-process, the stack down: one session (the per-frame time: the latency floor) and, for throughput, as many
   sessions as the pipeline's largest configuration, one frame of each per batch.
3. The embedded stack up (Kafka, Triton, one worker), a warm-up session (2 s, not measured); then each
   configuration SESSIONSxFPS, open loop: sessions
   start over the ramp, each sends its frames at its fps whatever comes back, for the hold; a client consumes the
   rendered frames. Per configuration: latency (capture -> rendered frame consumed) p50/p95/p99/max, rendered
   frames/s, outcomes from the outcomes topic (rendered / dropped by reason / dead-lettered), the workers' consumer
   lag (max), CPU and memory per process.
4. Written to loadtest/results/bench/<UTC time>/: bench.json, report.md, latency.png (latency over time and its CDF
   per configuration). The last line compares the two (scripts parse it):

    pipeline/in-process: throughput ratio 0.93, added latency p50 8.1 ms, p99 21.4 ms

Throughput ratio: the most frames/s the pipeline rendered in any configuration over the in-process frames/s with as
many sessions. Added latency: the first configuration's latency (keep it below saturation: 1x5 by default) minus the
in-process per-frame time, at p50 and p99.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from streams.accounting import account_when_settled
from streams.demo import collect, rendered_consumer
from streams.sender import SAMPLE_VIDEOS, EncodedFrame, sample_clips, send
from streams.settings import Settings, get_settings
from streams.stack import embedded, kafka, procs, triton, tritonserver
from streams.tryon.catalogue import Catalogue
from streams.tryon.categories import FEATURES, FIT_FEATURES

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "loadtest" / "results" / "bench"


def percentiles(values_ms: list[float]) -> dict[str, float | None]:
    if not values_ms:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    a = np.array(values_ms)
    return {
        "p50": round(float(np.percentile(a, 50)), 1),
        "p95": round(float(np.percentile(a, 95)), 1),
        "p99": round(float(np.percentile(a, 99)), 1),
        "max": round(float(a.max()), 1),
    }


def in_process(
    settings: Settings, videos: list[list[EncodedFrame]], sessions: int, frames: int, item: str
) -> dict[str, Any]:
    """streams/serving/inprocess.py in the models' venv on the sessions' frames."""
    features: set[str] = set(settings.perception)
    category = Catalogue(settings.catalogue_dir).get(item)
    if category is not None:
        features |= FEATURES.get(category.category, frozenset())
        if category.size_chart:
            features |= FIT_FEATURES.get(category.category, frozenset())
    with tempfile.TemporaryDirectory() as tmp:
        for s in range(sessions):
            folder = Path(tmp) / f"s{s}"
            folder.mkdir()
            for i, (data, *_) in enumerate(videos[s % len(videos)][:frames]):
                (folder / f"{i:04d}.jpg").write_bytes(data)
        python = settings.cache_dir / "venv-models" / "bin" / "python"
        out = subprocess.run(
            [str(python), "-m", "streams.serving.inprocess", tmp, "--item", item, "--features", ",".join(features)],
            capture_output=True,
            text=True,
            env={
                **os.environ,
                **tritonserver.SINGLE_THREADED_BLAS,  # as the embedded Triton runs it
                "PYTHONPATH": str(ROOT),
                "VTO_CATALOGUE_DIR": str(settings.catalogue_dir),
            },
            check=True,
        )
    found = json.loads(out.stdout)
    per_frame_ms = [t["seconds"] * 1000 for t in found["frames_timed"]]
    return {"sessions": sessions, "frames": found["frames"], "fps": round(found["fps"], 2)} | {
        f"frame_ms_{k}": v for k, v in percentiles(per_frame_ms).items()
    }


class Sampler:
    """Once a second while a configuration runs: the worker's consumer lag, and CPU and memory of each process of the
    stack (with its children: Triton's models run in python-backend stub processes)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pids = {"kafka": kafka.service(settings).pid(), "triton": triton.service(settings).pid()}
        self.pids |= {w.service.name: w.service.pid() for w in embedded.running_workers(settings)}
        self.pids |= {a.service.name: a.service.pid() for a in embedded.running_analytics(settings)}
        self.pids |= {g.service.name: g.service.pid() for g in embedded.running_gateways(settings)}
        self.lag: list[float] = []
        self.rss: dict[str, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        port = self.settings.worker_web_port
        while not self.stop.wait(1.0):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                    text = resp.read().decode()
                self.lag.append(
                    sum(
                        float(x.rsplit(" ", 1)[1])
                        for x in text.splitlines()
                        if x.startswith("vto_consumer_lag_messages{")
                    )
                )
            except OSError:
                pass
            for name, pid in self.pids.items():
                if pid:
                    self.rss[name] = max(self.rss.get(name, 0), procs.rss_bytes(pid))

    def __enter__(self) -> Sampler:
        self.cpu0 = {n: procs.cpu_seconds(p) for n, p in self.pids.items() if p}
        self.t0 = time.monotonic()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        wall = time.monotonic() - self.t0
        self.processes = {
            n: {
                "cpu_cores": round((procs.cpu_seconds(p) - self.cpu0[n]) / wall, 2),
                "rss_mb": round(self.rss.get(n, 0) / 2**20),
            }
            for n, p in self.pids.items()
            if p
        }


def pipeline(
    settings: Settings,
    videos: list[list[EncodedFrame]],
    sessions: int,
    fps: float,
    hold_s: float,
    ramp_s: float,
    item: str,
) -> dict[str, Any]:
    """One open-loop configuration through the running stack."""
    ids = [f"bench-{uuid.uuid4().hex[:8]}" for _ in range(sessions)]
    frames = {sid: videos[i % len(videos)][: int(fps * hold_s)] for i, sid in enumerate(ids)}
    offered = sum(len(f) for f in frames.values())
    consumer = rendered_consumer(settings)
    got: list[Any] = []
    expected = [offered]
    reader = threading.Thread(target=lambda: got.extend(collect(consumer, set(ids), expected, hold_s + ramp_s + 60)))
    reader.start()
    sent: dict[str, int] = {}

    def shopper(i: int, sid: str) -> None:
        time.sleep(ramp_s * i / max(sessions, 1))  # the ramp: sessions join one after another
        sent[sid] = len(send(settings, frames[sid], sid, fps, item))

    with Sampler(settings) as sampler:
        start = time.time_ns() // 1000
        senders = [threading.Thread(target=shopper, args=(i, sid)) for i, sid in enumerate(ids)]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        outcomes = [account_when_settled(settings, sid, sent[sid]) for sid in ids]
        expected[0] = sum(int(o["rendered"]) for o in outcomes)  # type: ignore[call-overload]  # dropped: will not come
        reader.join()
    consumer.close()
    latencies = [(consumed - f.capture_time_unix_us) / 1000 for f, consumed in got]
    # Where each frame's time went, from the rendered frame's own stamps (one machine, one clock): before the worker
    # called Triton (client -> Kafka -> worker, micro-batch, validation; and the worker's work after the call),
    # the Triton call (gRPC, Triton's queue, the tryon model), the tryon model's own stages, and back (the worker's
    # producer -> Kafka -> the client's consumer).
    infer = [f.stage_seconds["infer"] * 1000 for f, _ in got]
    breakdown = {
        "to_worker": [
            (f.rendered_time_unix_us - f.capture_time_unix_us) / 1000 - i for (f, _), i in zip(got, infer, strict=True)
        ],
        "triton_call": infer,
        "tryon_stages": [sum(v for k, v in f.stage_seconds.items() if k != "infer") * 1000 for f, _ in got],
        "back": [(consumed - f.rendered_time_unix_us) / 1000 for f, consumed in got],
    }
    times_s = [(consumed - start) / 1e6 for _, consumed in got]
    span_s = (
        max(max(times_s, default=0.0) - min((f.capture_time_unix_us - start) / 1e6 for f, _ in got), 1e-9)
        if got
        else 1.0
    )
    dropped: dict[str, int] = {}
    dead: dict[str, int] = {}
    for o in outcomes:
        for why, n in o["dropped"].items():  # type: ignore[attr-defined]
            dropped[why] = dropped.get(why, 0) + n
        for why, n in o["dead_lettered"].items():  # type: ignore[attr-defined]
            dead[why] = dead.get(why, 0) + n
    return {
        "config": f"{sessions}x{fps:g}",
        "sessions": sessions,
        "fps_per_session": fps,
        "frames_offered": offered,
        "frames_rendered": len(got),
        "rendered_fps": round(len(got) / span_s, 2),
        "dropped": dropped,
        "dead_lettered": dead,
        "unaccounted": sum(int(o["unaccounted"]) for o in outcomes),  # type: ignore[call-overload]
        "drop_ratio": round(1 - len(got) / offered, 3) if offered else 0.0,
        "latency_ms": percentiles(latencies),
        "breakdown_ms": {part: percentiles(values) for part, values in breakdown.items()},
        "consumer_lag_max": max(sampler.lag, default=0.0),
        "processes": sampler.processes,
        "series": {"t_s": [round(t, 3) for t in times_s], "latency_ms": [round(x, 1) for x in latencies]},
    }


def report(result: dict[str, Any], out: Path) -> None:
    """report.md and latency.png next to bench.json."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (over_time, cdf) = plt.subplots(1, 2, figsize=(13, 4.5))
    for run in result["pipeline"]:
        series = run["series"]
        over_time.scatter(series["t_s"], series["latency_ms"], s=6, label=run["config"])
        ordered = np.sort(series["latency_ms"])
        cdf.plot(ordered, np.arange(1, len(ordered) + 1) / max(len(ordered), 1), label=run["config"])
    for axis in (over_time, cdf):
        axis.legend(title="sessions x fps")
    over_time.axhline(100, color="grey", linestyle="--", linewidth=1)
    over_time.set(xlabel="s since the configuration started", ylabel="latency ms", title="latency over time")
    cdf.axvline(100, color="grey", linestyle="--", linewidth=1)
    cdf.set(xlabel="latency ms (capture -> rendered frame consumed)", ylabel="share of frames", title="CDF")
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=90)
    plt.close(fig)
    lines = [
        f"# Bench {result['started']}",
        "",
        f"{result['machine']}. In-process: {result['in_process']['latency']['frames']} frames of one session, "
        f"{result['in_process']['throughput']['frames']} frames of {result['in_process']['throughput']['sessions']} "
        "sessions.",
        "",
        "| | frames/s | p50 ms | p99 ms |",
        "|---|---|---|---|",
        f"| in-process, 1 session (per frame) | {result['in_process']['latency']['fps']} | "
        f"{result['in_process']['latency']['frame_ms_p50']} | {result['in_process']['latency']['frame_ms_p99']} |",
        f"| in-process, {result['in_process']['throughput']['sessions']} sessions | "
        f"{result['in_process']['throughput']['fps']} | | |",
        "",
        "| sessions x fps | offered | rendered | rendered/s | drop ratio | dropped | p50 | p95 | p99 | max | lag max | "
        "CPU cores (kafka/triton/worker/analytics/gateway) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in result["pipeline"]:
        lat, procs = run["latency_ms"], run["processes"]
        names = ("kafka", "triton", "worker-0", "analytics-0", "gateway-0")
        cpu = "/".join(str(procs.get(n, {}).get("cpu_cores", "")) for n in names)
        lines.append(
            f"| {run['config']} | {run['frames_offered']} | {run['frames_rendered']} | {run['rendered_fps']} | "
            f"{run['drop_ratio']} | {run['dropped'] or ''} | {lat['p50']} | {lat['p95']} | {lat['p99']} | "
            f"{lat['max']} | {run['consumer_lag_max']:.0f} | {cpu} |"
        )
    lines += [
        "",
        "Where the time went, p50 / p99 ms (to the worker's Triton call; the call; the tryon model's stages inside it;"
        " back to the client):",
        "",
        "| sessions x fps | to worker | Triton call | tryon stages | back |",
        "|---|---|---|---|---|",
    ]
    for run in result["pipeline"]:
        parts = [run["breakdown_ms"][k] for k in ("to_worker", "triton_call", "tryon_stages", "back")]
        lines.append(f"| {run['config']} | " + " | ".join(f"{p['p50']} / {p['p99']}" for p in parts) + " |")
    lines += ["", "![latency](latency.png)", "", result["summary"], ""]
    (out / "report.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["1x5", "1x15", "2x15", "3x15"], help="SESSIONSxFPS")
    parser.add_argument("--hold", type=float, default=8.0, help="seconds each session sends")
    parser.add_argument("--ramp", type=float, default=2.0, help="seconds over which the sessions join")
    parser.add_argument("--item", default="tee-breton-stripes")
    args = parser.parse_args(argv)
    settings = get_settings()
    configs = [(int(s), float(f)) for s, f in (c.split("x") for c in args.configs)]
    videos = sample_clips(settings.data_dir)
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ")
    most = max(s for s, _ in configs)
    frames = int(max(f for _, f in configs) * args.hold)
    if embedded.status(settings)["kafka"]["pid"] or embedded.status(settings)["triton"]["pid"]:
        raise SystemExit("bench: stop the running stack first (`make down`): the in-process run needs the cores")
    baseline = {
        "latency": in_process(settings, videos, 1, frames, args.item),
        "throughput": in_process(settings, videos, most, frames, args.item),
    }
    embedded.up(settings)
    try:
        # Warm-up, not measured (the in-process run warms its models up too): the first frames after a start pay
        # for Python's first calls, connections and caches.
        send(settings, videos[0][:30], f"bench-warmup-{uuid.uuid4().hex[:8]}", 15.0, args.item)
        time.sleep(3.0)
        runs = [pipeline(settings, videos, s, f, args.hold, args.ramp, args.item) for s, f in configs]
    finally:
        embedded.down(settings)
    best = max(r["rendered_fps"] for r in runs)
    ratio = best / baseline["throughput"]["fps"]
    first = runs[0]["latency_ms"]
    added50 = (first["p50"] or 0) - (baseline["latency"]["frame_ms_p50"] or 0)
    added99 = (first["p99"] or 0) - (baseline["latency"]["frame_ms_p99"] or 0)
    summary = (
        f"pipeline/in-process: throughput ratio {ratio:.2f}, added latency p50 {added50:.1f} ms, p99 {added99:.1f} ms"
    )
    within = [r["sessions"] for r in runs if r["fps_per_session"] == 15 and (r["latency_ms"]["p99"] or 1e9) <= 100]
    result = {
        "started": started,
        "machine": f"{os.cpu_count()} CPUs, no GPU",
        "item": args.item,
        "videos": list(SAMPLE_VIDEOS),
        "hold_s": args.hold,
        "ramp_s": args.ramp,
        # what the run ran with: the knobs the runs in docs/performance.md changed
        "config": {
            "worker_batch_window_s": settings.worker_batch_window_s,
            "worker_batches_in_flight": settings.worker_batches_in_flight,
            "tryon_models": settings.tryon_models or "as triton_repo/tryon/config.pbtxt says",
            "tryon_config": [
                line.strip()
                for line in (settings.triton_repo / "tryon" / "config.pbtxt").read_text().splitlines()
                if line.strip().startswith(("instance_group", "max_queue_delay", "preferred_batch", "parameters"))
            ],
            "blas_threads": tritonserver.SINGLE_THREADED_BLAS,
        },
        "in_process": baseline,
        "pipeline": runs,
        "throughput_ratio": round(ratio, 3),
        "added_latency_ms": {"p50": round(added50, 1), "p99": round(added99, 1)},
        "sessions_at_15fps_within_100ms_p99": max(within, default=0),
        "summary": summary,
    }
    out = RESULTS / started
    out.mkdir(parents=True)
    (out / "bench.json").write_text(json.dumps(result, indent=1) + "\n")
    report(result, out)
    for run in runs:
        lat = run["latency_ms"]
        print(
            f"{run['config']:>6}: {run['frames_rendered']}/{run['frames_offered']} rendered, {run['rendered_fps']} "
            f"frames/s, drop ratio {run['drop_ratio']}, p50/p99/max {lat['p50']}/{lat['p99']}/{lat['max']} ms"
        )
    print(
        f"in-process: {baseline['latency']['frame_ms_p50']} ms per frame p50, {baseline['throughput']['fps']} frames/s"
    )
    print(f"written {out}")
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
