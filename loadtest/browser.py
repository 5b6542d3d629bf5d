"""The shopper's latency as a browser sees it, side by side with `vto send`, on one warm embedded stack.

1. `vto send`'s path: the video's frames (640 px wide JPEGs, 15 fps) sent as one session straight to Kafka; latency
   = capture -> rendered frame consumed from Kafka.
2. The browser's path: Debian's Chromium (headless) on the try-on page, its fake camera playing the same video at
   15 fps; latency = the page's capture of a camera frame -> that frame rendered and drawn on the page (the page's
   own clock, read from its test hook), through the gateway, Kafka, the worker and Triton and back.
The gateway's own cost per frame comes from its metrics (WebSocket message -> record handed to Kafka; rendered
frame written to the WebSocket). Writes loadtest/results/browser-<date>.json and the README's screenshot.

    .venv/bin/python -m loadtest.browser --seconds 20   (from the repository root)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import tempfile
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from streams.demo import collect, rendered_consumer
from streams.proto.vto.v1.common_pb2 import IMAGE_FORMAT_JPEG
from streams.proto.vto.v1.rendered_frame_pb2 import RenderedFrame
from streams.sender import EncodedFrame, send
from streams.settings import Settings, get_settings
from streams.stack import embedded
from tests.browser import browser, video_frames, video_to_y4m

ROOT = Path(__file__).resolve().parents[1]
VIDEO = "people/videos/mediapipe_selfie_upper_body.mp4"
ITEM = "tee-breton-stripes"
FPS = 15


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    return {f"p{q}": round(float(np.percentile(values, q)), 1) for q in (50, 95, 99)}


def clip(video: Path, seconds: float) -> list[EncodedFrame]:
    """The video as the page would send it: 640 px wide JPEGs at quality 80, looped to `seconds`."""
    encoded = []
    for image in video_frames(video, 640, math.ceil(FPS * seconds), loop=True):
        data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
        encoded.append((data, IMAGE_FORMAT_JPEG, image.shape[1], image.shape[0]))
    return encoded


def send_path(settings: Settings, frames: list[EncodedFrame]) -> dict[str, object]:
    consumer = rendered_consumer(settings)
    session = f"bench-send-{uuid.uuid4().hex[:8]}"
    got: list[tuple[RenderedFrame, int]] = []
    reader = threading.Thread(target=lambda: got.extend(collect(consumer, {session}, [len(frames)], 60)))
    reader.start()
    send(settings, frames, session, fps=FPS, item=ITEM)
    reader.join()
    consumer.close()
    latencies = [(consumed - f.capture_time_unix_us) / 1000 for f, consumed in got if f.image]
    return {"frames_sent": len(frames), "frames_rendered": len(latencies), "latency_ms": percentiles(latencies)}


def gateway_metric(gateway: embedded.Gateway, name: str) -> float:
    with urllib.request.urlopen(f"{gateway.url}metrics", timeout=5) as resp:
        text = resp.read().decode()
    found = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def browser_path(settings: Settings, camera: Path, seconds: float, screenshot: Path) -> dict[str, object]:
    gateway = embedded.Gateway(0, settings)
    names = ("frame_seconds_sum", "frame_seconds_count", "ws_send_seconds_sum", "ws_send_seconds_count")
    before = {n: gateway_metric(gateway, f"vto_gateway_{n}") for n in names}
    samples: dict[int, float] = {}
    with browser(camera) as chromium:
        page = chromium.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{gateway.url}?item={ITEM}&consent=1")
        page.wait_for_function("window.vto && window.vto.framesShown >= 5", timeout=120_000)
        started, sent0, shown0 = time.monotonic(), page.evaluate("vto.framesSent"), page.evaluate("vto.framesShown")
        while time.monotonic() - started < seconds:
            last = page.evaluate("vto.lastShown")
            if last and last["captureMs"]:
                samples[int(last["seq"])] = float(last["shownMs"]) - float(last["captureMs"])
            page.wait_for_timeout(30)
        elapsed = time.monotonic() - started
        sent = page.evaluate("vto.framesSent") - sent0
        shown = page.evaluate("vto.framesShown") - shown0
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot))
    after = {n: gateway_metric(gateway, f"vto_gateway_{n}") for n in names}

    def mean_ms(kind: str) -> float | None:
        count = after[f"{kind}_count"] - before[f"{kind}_count"]
        return round((after[f"{kind}_sum"] - before[f"{kind}_sum"]) / count * 1000, 2) if count else None

    return {
        "frames_sent": int(sent),
        "frames_shown": int(shown),
        "fps_sent": round(sent / elapsed, 1),
        "fps_shown": round(shown / elapsed, 1),
        "latency_samples": len(samples),
        "latency_ms": percentiles(list(samples.values())),
        "gateway_ms_per_frame_in": mean_ms("frame_seconds"),
        "gateway_ms_per_frame_out": mean_ms("ws_send_seconds"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--keep-up", action="store_true")
    args = parser.parse_args()
    settings = get_settings()
    video = settings.data_dir / VIDEO
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    screenshot = ROOT / "docs" / "images" / f"tryon-page-{stamp}.png"
    frames = clip(video, args.seconds)
    embedded.up(settings)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            camera = video_to_y4m(video, Path(tmp) / "camera.y4m", width=640, fps=FPS, seconds=args.seconds)
            send(settings, frames[:15], f"warm-{uuid.uuid4().hex[:6]}", fps=FPS, item=ITEM)  # warm Triton
            result = {
                "machine": f"{platform.machine()}, {os.cpu_count()} cpus, no GPU",
                "command": f"python -m loadtest.browser --seconds {args.seconds}",
                "video": VIDEO,
                "item": ITEM,
                "fps": FPS,
                "vto_send": send_path(settings, frames),
                "browser": browser_path(settings, camera, args.seconds, screenshot),
                "screenshot": str(screenshot.relative_to(ROOT)),
            }
    finally:
        if not args.keep_up:
            embedded.down(settings)
    out = ROOT / "loadtest" / "results" / f"browser-{stamp}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(out.read_text())
    print(f"written {out}")


if __name__ == "__main__":
    main()
