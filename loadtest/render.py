"""Rendering cost per category on CPU: milliseconds per frame for each catalogue item's renderer, side by side in
one run, on real frames with real perception (computed once by the Triton `tryon` model, then the renderers
are timed in-process, as they run inside Triton's render stage). Results go to loadtest/results/render-<date>.json.

    .venv/bin/python loadtest/render.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import tritonclient.grpc as grpc

from streams.inference import TryOnRequest, tryon_inputs, tryon_result
from streams.sender import frames_of
from streams.serving.state_codec import parse_perception, scene_from_perception
from streams.settings import get_settings
from streams.stack import triton
from streams.tryon.catalogue import Catalogue
from streams.tryon.render import render
from streams.tryon.scene import Scene

RESULTS = Path(__file__).with_name("results")
FRAMES = (  # (media, what it shows); every category is timed on each
    ("keypoints/mps_business_person_face/business-person.png", "upper body, face, hands"),
    ("people/images/fr_biden_full_body.jpg", "full body"),
    ("people/images/rembg_arms_up_sunglasses_cap.jpg", "raised arms, hands"),
    ("people/videos/mediapipe_full_body_dance.mp4", "a 600x600 video frame (the 46th), full body"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    settings = get_settings()
    catalogue = Catalogue(settings.catalogue_dir)
    scenes: list[tuple[str, Scene]] = []
    with triton.running(settings):
        client = grpc.InferenceServerClient(settings.triton_grpc_url)
        for path, _what in FRAMES:
            data = [image for image, *_ in frames_of(settings.data_dir / path)][45 if path.endswith(".mp4") else 0]
            request = TryOnRequest(data, render=False, face=True, hands=True, mask=True)
            perception = parse_perception(tryon_result(client.infer("tryon", tryon_inputs(request))).perception)
            bgr = np.asarray(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
            scenes.append((path, scene_from_perception(bgr, perception)))
        client.close()
    rows: dict[str, dict[str, object]] = {}
    for item in sorted(catalogue.items(), key=lambda i: (i.category, i.id)):
        if item.category in rows:
            continue  # one item per category
        per_frame = {}
        for path, scene in scenes:
            render(scene, item)  # warm caches
            started = time.perf_counter()
            for _ in range(args.repeat):
                rendered = render(scene, item)
            ms = (time.perf_counter() - started) / args.repeat * 1000
            per_frame[Path(path).name] = {
                "ms": round(ms, 2),
                "size": f"{scene.width}x{scene.height}",
                "covered": bool(rendered.alpha.max() > 0),
            }
        rows[item.category] = {"item": item.id, "frames": per_frame}
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, one thread, renderer only (no models, no JPEG)",
        "repeat": args.repeat,
        "categories": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"render-{datetime.now(UTC).date()}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    names = [Path(p).name for p, _ in FRAMES]
    print(
        "| category | item | "
        + " | ".join(f"{n} ({s.width}x{s.height}) ms" for n, (_, s) in zip(names, scenes, strict=True))
        + " |"
    )
    print("|---|---|" + "---|" * len(names))
    for category, row in rows.items():
        frames = row["frames"]
        cells = " | ".join(
            f"{frames[n]['ms']}" + ("" if frames[n]["covered"] else " (not placed)")  # type: ignore[index]
            for n in names
        )
        print(f"| {category} | {row['item']} | {cells} |")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
