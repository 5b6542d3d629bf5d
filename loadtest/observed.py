"""Shopper sessions through the embedded stack as an SRE sees them: a real Prometheus scrapes the workers and
Triton; afterwards the run's figures are read back from it (latency quantiles, outcomes, lag, worker CPU per frame,
Triton queue and compute time per request, batch sizes) and every panel of the Grafana dashboard is drawn from its
own queries over the run, as a picture for the docs.

    .venv/bin/python -m loadtest.observed --sessions 2 --fps 8 --seconds 60 --workers 2  (from the repository root)

Writes loadtest/results/observed-<date>.json and docs/images/dashboard-<date>.png. The picture is drawn here with
matplotlib from the dashboard JSON's queries and panel types (no Grafana on this machine): same queries, plainer
looks.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from streams.demo import DEFAULT_VIDEO
from streams.sender import frames_of, send
from streams.settings import Settings, get_settings
from streams.stack import embedded, prometheus
from tools.promql import grafana_to_promql

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "loadtest" / "results"
DASHBOARD = ROOT / "k8s" / "base" / "monitoring" / "dashboards" / "vto-stream.json"


def one(settings: Settings, expr: str) -> float | None:
    result = prometheus.query(settings, expr)
    if not result:
        return None
    number = float(result[0]["value"][1])
    return None if math.isnan(number) else round(number, 4)


def figures(settings: Settings, start: float, end: float, frames_sent: int) -> dict[str, Any]:
    """The run's figures, from Prometheus alone: counters' exact growth between two instants (`@`), not
    `increase()`, which extrapolates to the window's edges."""

    def grown(selector: str) -> str:
        return f"({selector} @ {end:.3f} - ({selector} @ {start:.3f} or {selector} @ {end:.3f} * 0))"

    def ms(v: float | None, scale: float = 1000.0) -> float | None:
        return None if v is None else round(v * scale, 2)

    bucket = "sum by (le) ({})".format(grown("vto_frame_latency_seconds_bucket"))
    outcomes = prometheus.query(settings, "sum by (outcome) {}".format(grown("vto_frames_total")))
    w = f"{math.ceil(end - start)}s"
    tryon = '{model="tryon"}'
    return {
        "frames_sent": frames_sent,
        "frames_by_outcome": {r["metric"]["outcome"]: round(float(r["value"][1])) for r in outcomes},
        "latency_ms": {f"p{q}": ms(one(settings, f"histogram_quantile({q / 100}, {bucket})")) for q in (50, 95, 99)},
        "within_100ms_ratio": one(
            settings,
            "sum "
            + grown('vto_frame_latency_seconds_bucket{le="0.1"}')
            + " / sum "
            + grown("vto_frame_latency_seconds_count"),
        ),
        # Both workers' whole CPU over the run (idle work included: timers, heartbeats, lag sampling) per frame.
        "worker_cpu_ms_per_frame": ms(
            one(
                settings,
                "sum " + grown('process_cpu_seconds_total{job="vto-worker"}') + " / sum " + grown("vto_frames_total"),
            )
        ),
        "worker_memory_mb_max": ms(
            one(settings, f'max(max_over_time(process_resident_memory_bytes{{job="vto-worker"}}[{w}] @ {end:.3f}))'),
            1 / 2**20,
        ),
        "triton_tryon_queue_ms_per_request": ms(
            one(
                settings,
                f"sum {grown('nv_inference_queue_duration_us' + tryon)}"
                f" / sum {grown('nv_inference_request_success' + tryon)}",
            ),
            1 / 1000,
        ),
        # Triton adds a batch's compute time to each of its requests: per request, it reads as per batch.
        "triton_tryon_compute_ms_per_batch": ms(
            one(
                settings,
                f"sum {grown('nv_inference_compute_infer_duration_us' + tryon)}"
                f" / sum {grown('nv_inference_request_success' + tryon)}",
            ),
            1 / 1000,
        ),
        "triton_tryon_batch_size": one(
            settings,
            f"sum {grown('nv_inference_count' + tryon)} / sum {grown('nv_inference_exec_count' + tryon)}",
        ),
        "consumer_lag_seconds_max": one(settings, f"max(max_over_time(vto_consumer_lag_seconds[{w}] @ {end:.3f}))"),
        "consumer_lag_messages_max": one(settings, f"max(max_over_time(vto_consumer_lag_messages[{w}] @ {end:.3f}))"),
        "active_sessions_max": one(settings, f"max_over_time(sum(vto_active_sessions)[{w}:2s] @ {end:.3f})"),
    }


def draw(settings: Settings, start: float, end: float, out: Path) -> list[str]:
    """Every panel of the dashboard, from its own queries over [start, end]; returns the titles drawn."""
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p.get("type") != "row" and p.get("targets")]
    columns = 3
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6 * columns, 2.8 * rows), squeeze=False)
    step = max((end - start) / 120, 2.0)
    drawn = []
    for ax, panel in zip(axes.flat, panels, strict=False):
        ax.set_title(panel["title"], fontsize=9)
        ax.tick_params(labelsize=7)
        series = []
        for target in panel["targets"]:
            expr = grafana_to_promql(target["expr"], step_s=step, scrape_interval_s=2.0)
            for result in prometheus.query_range(settings, expr, start, end, step):
                legend = target.get("legendFormat", "") or ""
                legend = "" if legend.startswith("__auto") else legend
                for name, label in result["metric"].items():
                    legend = legend.replace("{{" + name + "}}", label)
                times = [float(t) - start for t, _ in result["values"]]
                values = [float(v) for _, v in result["values"]]
                series.append((legend, times, values, result["metric"]))
        if panel.get("type") == "heatmap" and series:
            buckets = sorted(series, key=lambda s: float(s[3].get("le", "inf")))
            grid = [s[2] for s in buckets if len(s[2]) == len(buckets[0][2])]
            ax.imshow(grid, aspect="auto", origin="lower", cmap="viridis")
            ax.set_yticks(range(len(grid)), [s[3].get("le", "") for s in buckets][: len(grid)], fontsize=6)
            ax.set_xlabel("samples over the run", fontsize=7)
        elif panel.get("type") == "stat" and series:
            ax.axis("off")
            text = "\n".join(
                f"{legend}: {values[-1]:.3g}" if legend else f"{values[-1]:.3g}"
                for legend, _, values, _ in series[:4]
                if values
            )
            ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=11)
        else:
            for legend, times, values, _ in series[:12]:
                ax.plot(times, values, label=legend[:30] or "value")
            if series:
                ax.legend(fontsize=6, loc="upper left")
            else:
                ax.text(0.5, 0.5, "no data in this run", ha="center", va="center", fontsize=9, color="grey")
            ax.set_xlabel("s since the run started", fontsize=7)
        drawn.append(panel["title"])
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(f"{dashboard['title']} over a {end - start:.0f} s run (drawn from the dashboard's queries)")
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return drawn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=2)
    parser.add_argument("--fps", type=float, default=8.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--item", default="tee-breton-stripes")
    parser.add_argument("--keep-up", action="store_true")
    args = parser.parse_args()
    settings = get_settings()
    clip = list(frames_of(settings.data_dir / DEFAULT_VIDEO))
    frames = [clip[i % len(clip)] for i in range(int(args.fps * args.seconds))]  # the clip looped
    embedded.up(settings, args.workers, with_prometheus=True)
    try:
        time.sleep(6.0)  # a few scrapes before the run: rates start from a baseline
        start = time.time()
        ids = [f"observed-{uuid.uuid4().hex[:8]}" for _ in range(args.sessions)]
        senders = [threading.Thread(target=send, args=(settings, frames, sid, args.fps, args.item)) for sid in ids]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        time.sleep(8.0)  # the last frames, and the scrapes and rule evaluations after them
        end = time.time()
        stamp = datetime.now(UTC).strftime("%Y-%m-%d")
        picture = ROOT / "docs" / "images" / f"dashboard-{stamp}.png"
        result = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cpus, no GPU",
            "command": f"python -m loadtest.observed --sessions {args.sessions} --fps {args.fps} "
            f"--seconds {args.seconds} --workers {args.workers}",
            "video": DEFAULT_VIDEO,
            "item": args.item,
            "workers": args.workers,
            **figures(settings, start, end, len(frames) * args.sessions),
            "firing_alerts": sorted(
                {a["metric"]["alertname"] for a in prometheus.query(settings, 'ALERTS{alertstate="firing"}')}
            ),
            "dashboard_picture": str(picture.relative_to(ROOT)),
            "dashboard_panels": draw(settings, start, end, picture),
        }
    finally:
        if not args.keep_up:
            embedded.down(settings)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"observed-{stamp}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "dashboard_panels"}, indent=2))
    print(f"written {out} and {picture}")


if __name__ == "__main__":
    main()
