"""Where the try-on puts each item, measured against the body on real people: the geometric error figures the
try-on issue asks for, on real perception from the Triton `tryon` model and the real renderers.

Per person and category:
* tops: placed shoulder anchors vs the shoulder keypoints (% of shoulder width);
* glasses: placed bridge vs the mesh's nose bridge (point 168, % of face width);
* lipstick: share of the lipstick's pixels outside the lip polygon;
* hats: the brim line's height above the highest eyebrow point under it (% of face height, > 0 = above);
* shoes: heel anchor vs heel keypoint (% of foot length);
* rings: band centre's distance from the finger's MCP->PIP segment (% of that segment).
Written to loadtest/results/tryon-geometry-<date>.json.

    .venv/bin/python loadtest/tryon_geometry.py
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import tritonclient.grpc as grpc

from streams.inference import perception_flags, session_results
from streams.sender import frames_of
from streams.serving.state_codec import parse_perception, scene_from_perception
from streams.settings import get_settings
from streams.stack import triton
from streams.tryon.catalogue import Catalogue
from streams.tryon.makeup import lip_polygons
from streams.tryon.render import render
from streams.tryon.scene import Rendered, Scene

RESULTS = Path(__file__).with_name("results")
EYEBROWS = (70, 63, 105, 66, 107, 336, 296, 334, 293, 300)  # upper eyebrow contour of the 468 mesh
Metric = Callable[[Scene, Rendered], float | None]


def top(scene: Scene, out: Rendered) -> float | None:
    if scene.keypoints is None or "left_shoulder" not in out.placed:
        return None
    kp = scene.keypoints[:, :2]
    width = float(np.linalg.norm(kp[11] - kp[12]))
    errors = [np.linalg.norm(out.placed[f"{side}_shoulder"] - kp[i]) for side, i in (("left", 11), ("right", 12))]
    return round(100 * float(max(errors)) / width, 2)


def glasses(scene: Scene, out: Rendered) -> float | None:
    if scene.face is None or "bridge" not in out.placed:
        return None
    error = float(np.linalg.norm(out.placed["bridge"] - scene.face[168, :2]))
    return round(100 * error / float(np.ptp(scene.face[:, 0])), 2)


def lipstick(scene: Scene, out: Rendered) -> float | None:
    if scene.face is None or not (out.alpha > 0).any():
        return None
    outer, _inner = lip_polygons(scene.face)
    polygon = np.zeros(out.alpha.shape, np.uint8)
    cv2.fillPoly(polygon, [np.round(outer).astype(np.int32)], 1)
    inside = np.asarray(cv2.dilate(polygon, np.ones((3, 3), np.uint8)))  # centres on the contour count as inside
    painted = out.alpha > 0
    return round(100 * float((painted & (inside == 0)).sum()) / float(painted.sum()), 3)


def hat(scene: Scene, out: Rendered) -> float | None:
    if scene.face is None or "left_brim" not in out.placed:
        return None
    (x0, y0), (x1, y1) = out.placed["right_brim"], out.placed["left_brim"]
    brows = scene.face[list(EYEBROWS), :2]
    brim_y = y0 + (brows[:, 0] - x0) * (y1 - y0) / (
        x1 - x0 if abs(x1 - x0) > 1e-6 else 1e-6
    )  # the brim line above each
    return round(100 * float((brows[:, 1] - brim_y).min()) / float(np.ptp(scene.face[:, 1])), 2)


def shoes(scene: Scene, out: Rendered) -> float | None:
    if scene.keypoints is None:
        return None
    kp = scene.keypoints[:, :2]
    errors = [
        float(np.linalg.norm(out.placed[f"{side}_heel"] - kp[heel]) / np.linalg.norm(kp[toe] - kp[heel]))
        for side, heel, toe in (("left", 29, 31), ("right", 30, 32))
        if f"{side}_heel" in out.placed
    ]
    return round(100 * float(max(errors)), 2) if errors else None


def ring(scene: Scene, out: Rendered) -> float | None:
    if not scene.hands or "centre" not in out.placed:
        return None
    best = None
    for hand in scene.hands:  # the ring finger (13 -> 14) of whichever hand wears it
        a, b = hand.points[13, :2], hand.points[14, :2]
        t = float(np.clip((out.placed["centre"] - a) @ (b - a) / max(float((b - a) @ (b - a)), 1e-9), 0, 1))
        distance = float(np.linalg.norm(out.placed["centre"] - (a + t * (b - a)))) / float(np.linalg.norm(b - a))
        best = distance if best is None else min(best, distance)
    return None if best is None else round(100 * best, 2)


CHECKS: dict[str, tuple[str, str, Metric, tuple[str, ...]]] = {
    "top": ("tee-breton-stripes", "shoulder anchor error, % of shoulder width", top, ("mask",)),
    "glasses": ("sunglasses-blue-wayfarer", "bridge error, % of face width", glasses, ("face",)),
    "lipstick": ("lipstick-pink-gloss", "lipstick pixels outside the lips, %", lipstick, ("face",)),
    "hat": ("top-hat-black", "brim above the eyebrows, % of face height", hat, ("face",)),
    "shoes": ("sneaker-white-red", "heel anchor error, % of foot length", shoes, ()),
    "ring": ("ring-gold-band", "band centre off the finger's MCP-PIP segment, % of its length", ring, ("hands",)),
}
PEOPLE = {
    "top": (
        "keypoints/tfjs_pose_yoga/pose.jpg",
        "people/images/fr_biden_full_body.jpg",
        "keypoints/mps_business_person_face/business-person.png",
        "people/videos/mediapipe_full_body_dance.mp4",
    ),
    "glasses": (
        "keypoints/tfjs_portrait_face/portrait.jpg",
        "keypoints/mps_business_person_face/business-person.png",
        "people/images/mediapipe_face_closeup.png",
        "people/videos/mediapipe_selfie_upper_body.mp4",
    ),
    "shoes": (
        "keypoints/tfjs_pose_yoga/pose.jpg",
        "keypoints/mps_pose_sitting/test_image.jpg",
        "people/videos/mediapipe_full_body_dance.mp4",
    ),
    "ring": (
        "people/images/rembg_arms_up_sunglasses_cap.jpg",
        "keypoints/mps_business_person_face/business-person.png",
        "people/videos/mediapipe_selfie_upper_body.mp4",
    ),
}
PEOPLE["lipstick"] = PEOPLE["hat"] = PEOPLE["glasses"]


def main() -> int:
    settings = get_settings()
    catalogue = Catalogue(settings.catalogue_dir)
    report: dict[str, object] = {"date": datetime.now(UTC).isoformat(timespec="seconds")}
    with triton.running(settings):
        client = grpc.InferenceServerClient(settings.triton_grpc_url)
        for category, (item_id, what, metric, features) in CHECKS.items():
            item = catalogue.get(item_id)
            assert item is not None, item_id
            values: dict[str, float | None] = {}
            for path in PEOPLE[category]:
                clip = [data for data, *_ in frames_of(settings.data_dir / path)][:60]
                fps = 30.0 if len(clip) > 1 else None  # a video in tracking mode up to its 60th frame; a still once
                flags = perception_flags(features)
                result = list(session_results(client, "tryon", clip, fps, render=False, **flags))[-1]
                bgr = np.asarray(cv2.imdecode(np.frombuffer(clip[-1], np.uint8), cv2.IMREAD_COLOR))
                scene = scene_from_perception(bgr, parse_perception(result.perception))
                values[Path(path).name] = metric(scene, render(scene, item))
            report[category] = {"item": item_id, "measure": what, "per_person": values}
            print(f"{category:9s} {what}: {values}")
        client.close()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"tryon-geometry-{datetime.now(UTC).date()}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
