"""Draw what perception sees (person mask, skeleton, face mesh with irises, hands) on real people and write the
contact sheet to docs/images/perception_overlays.jpg. Uses the real Triton `tryon` model (started if needed).

    .venv/bin/python tools/perception_overlays.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import tritonclient.grpc as grpc

from streams.demo import contact_sheet
from streams.inference import session_results
from streams.sender import frames_of
from streams.serving.state_codec import face_points, hand_points, parse_perception
from streams.settings import get_settings
from streams.stack import triton
from streams.vision.render import draw_skeleton
from streams.vision.segmentation import rle_decode

ROOT = Path(__file__).resolve().parents[1]
STILLS = (
    "people/images/rembg_arms_up_sunglasses_cap.jpg",
    "people/images/mediapipe_face_closeup.png",
    "people/images/fr_two_people_upper_body.jpg",
    "people/images/rembg_upper_body_three_quarter.jpg",
    "keypoints/mps_business_person_face/business-person.png",
)
VIDEO_FRAMES = (
    ("people/videos/mediapipe_selfie_upper_body.mp4", 120),
    ("people/videos/mediapipe_full_body_dance.mp4", 60),
)
HAND_BONES: tuple[tuple[int, int], ...] = (
    *((0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (5, 9), (9, 10), (10, 11), (11, 12)),
    *((9, 13), (13, 14), (14, 15), (15, 16), (13, 17), (0, 17), (17, 18), (18, 19), (19, 20)),
)


def overlay(client: grpc.InferenceServerClient, images: list[bytes]) -> np.ndarray:
    """Run a clip (or one still) through perception with tracking; draw the last frame's results."""
    fps = 15.0 if len(images) > 1 else None
    flags = {"face": True, "hands": True, "mask": True, "max_people": 2}
    result = list(session_results(client, "tryon", images, fps, render=False, **flags))[-1]
    perception = parse_perception(result.perception)
    bgr = np.asarray(cv2.imdecode(np.frombuffer(images[-1], np.uint8), cv2.IMREAD_COLOR))
    scale = max(1, round(max(bgr.shape[:2]) / 500))
    if perception.HasField("mask"):
        mask = rle_decode(list(perception.mask.rle), perception.mask.height, perception.mask.width)
        tint = bgr.copy()
        tint[mask] = (0.5 * tint[mask] + 0.5 * np.array([255, 120, 0])).astype(np.uint8)
        bgr = tint
    for person in perception.people:
        draw_skeleton(bgr, np.array([[k.x, k.y, k.visibility, k.presence] for k in person.keypoints]))
    if perception.HasField("face"):
        points = face_points(perception.face)
        for x, y, _ in points[:468]:
            cv2.circle(bgr, (int(x), int(y)), scale, (80, 255, 80), -1)
        for x, y, _ in points[468:]:
            cv2.circle(bgr, (int(x), int(y)), scale + 1, (255, 255, 0), -1)
    for hand in perception.hands:
        pts = hand_points(hand)[:, :2].astype(int)
        for a, b in HAND_BONES:
            cv2.line(bgr, tuple(pts[a]), tuple(pts[b]), (0, 220, 255), 2 * scale, cv2.LINE_AA)
        cv2.putText(
            bgr, hand.handedness, tuple(pts[0] + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, (0, 220, 255), scale
        )
    return bgr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "perception_overlays.jpg")
    args = parser.parse_args()
    settings = get_settings()
    with triton.running(settings):
        client = grpc.InferenceServerClient(settings.triton_grpc_url)
        tiles = [overlay(client, [(settings.data_dir / still).read_bytes()]) for still in STILLS]
        for video, count in VIDEO_FRAMES:
            clip = [data for data, *_ in frames_of(settings.data_dir / video)][:count]
            tiles.append(overlay(client, clip))
        client.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), contact_sheet(tiles, columns=4, tile=360), [cv2.IMWRITE_JPEG_QUALITY, 80])
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
