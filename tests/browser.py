"""Debian's Chromium, headless, with a fake camera playing a real video: what the browser test and the browser
benchmark drive the try-on page with (Playwright drives the system browser: no browser download)."""

from __future__ import annotations

import base64
import math
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"


def chromium_path() -> str | None:
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")


def video_frames(video: Path, width: int, count: int, loop: bool = False) -> list[np.ndarray]:
    """Up to `count` frames of the video, `width` wide (an even height, as 4:2:0 needs); from the start again at its
    end when `loop`."""
    capture = cv2.VideoCapture(str(video))
    frames: list[np.ndarray] = []
    while len(frames) < count:
        ok, image = capture.read()
        if not ok:
            if not loop or not frames:
                break
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        height = round(image.shape[0] * width / image.shape[1] / 2) * 2
        frames.append(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))
    capture.release()
    if not frames:
        raise ValueError(f"no frames in {video}")
    return frames


def video_to_y4m(video: Path, out: Path, width: int = 640, fps: int = 15, seconds: float = 20.0) -> Path:
    """The video as a Y4M file (4:2:0), the format Chromium's fake camera plays (looping), `width` wide."""
    frames = video_frames(video, width, math.ceil(fps * seconds))
    height = frames[0].shape[0]
    with out.open("wb") as file:
        file.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for image in frames:
            file.write(b"FRAME\n")
            file.write(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420).tobytes())  # Y, then U, then V planes
    return out


@contextmanager
def browser(camera: Path | None) -> Iterator[Browser]:
    """Headless Chromium; its camera plays `camera` (Y4M), or with None it has no camera at all."""
    executable = chromium_path()
    if executable is None:
        raise FileNotFoundError("Debian's chromium is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--use-fake-ui-for-media-stream",  # camera permission granted without a prompt
                *(
                    ["--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={camera}"]
                    if camera is not None
                    else []
                ),
            ],
        )
        try:
            yield launched
        finally:
            launched.close()


def data_url_image(url: str) -> np.ndarray:
    """A `data:image/...;base64,` URL decoded to a BGR image."""
    data = base64.b64decode(url.split(",", 1)[1])
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not an image")
    return image


def shown_and_sent(page: Page) -> tuple[np.ndarray, np.ndarray]:
    """The frame the page shows now and the very camera frame (or photo) it sent for it, as images. Waits for a
    shown frame whose sent frame the page still holds (it keeps the last 90)."""
    for _ in range(50):
        shown = page.evaluate(
            "async () => { const s = vto.lastShown; "
            "return {rendered: vto.renderedDataURL(), captured: await vto.capturedFrameDataURL(s.seq)} }"
        )
        if shown["captured"]:
            break
        page.wait_for_timeout(100)
    assert shown["captured"], "the page no longer holds the camera frame of the frame it shows"
    rendered, sent = data_url_image(shown["rendered"]), data_url_image(shown["captured"])
    assert rendered.shape == sent.shape, (rendered.shape, sent.shape)
    return rendered, sent


def changed_fraction(rendered: np.ndarray, sent: np.ndarray) -> float:
    """The share of pixels the try-on changed (beyond JPEG noise): the item drawn on the frame."""
    return float((np.abs(rendered.astype(int) - sent.astype(int)).max(axis=2) > 60).mean())
