"""Every catalogue category tried on by real people (stills and video frames), through the real Triton `tryon`
pipeline, written as one contact sheet per category to docs/images/tryon_<category>.jpg for docs/tryon.md.

    .venv/bin/python tools/tryon_contact_sheet.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import tritonclient.grpc as grpc

from streams.demo import contact_sheet
from streams.inference import perception_flags, session_results
from streams.sender import frames_of
from streams.settings import get_settings
from streams.stack import triton
from streams.tryon.catalogue import Catalogue
from streams.tryon.categories import FEATURES

ROOT = Path(__file__).resolve().parents[1]
# (media, frame index for videos): who tries on which kind of item.
BODY = (
    ("people/images/rembg_upper_body_three_quarter.jpg", 0),
    ("keypoints/mps_business_person_face/business-person.png", 0),
    ("people/images/fr_biden_full_body.jpg", 0),
    ("people/videos/mediapipe_full_body_dance.mp4", 45),
)
FACE = (
    ("keypoints/tfjs_portrait_face/portrait.jpg", 0),
    ("keypoints/mps_business_person_face/business-person.png", 0),
    ("people/images/mediapipe_face_closeup.png", 0),
    ("people/videos/mediapipe_selfie_upper_body.mp4", 60),
)
FEET = (
    ("people/images/fr_biden_full_body.jpg", 0),
    ("keypoints/tfjs_pose_yoga/pose.jpg", 0),
    ("keypoints/mps_pose_sitting/test_image.jpg", 0),
    ("people/videos/mediapipe_full_body_dance.mp4", 45),
)
HANDS = (
    ("people/images/rembg_arms_up_sunglasses_cap.jpg", 0),
    ("keypoints/mps_business_person_face/business-person.png", 0),
    ("people/videos/mediapipe_selfie_upper_body.mp4", 30),
)
PEOPLE = {
    "top": BODY,
    "dress": BODY,
    "necklace": FACE[:2] + BODY[:1] + FACE[3:],
    "glasses": FACE,
    "hat": FACE,
    "earrings": FACE,
    "lipstick": FACE,
    "shoes": FEET,
    "ring": HANDS,
    "watch": HANDS,
}


# The two items shown per category (photo-based where the catalogue has them); others: the first two by id.
PICKS = {
    "top": ("tee-breton-stripes", "tee-navy"),
    "hat": ("top-hat-black", "bucket-hat-straw"),
}


def try_on(client: grpc.InferenceServerClient, images: list[bytes], item_id: str, category: str) -> np.ndarray:
    """A still, or a video up to its last frame in tracking mode; the last frame rendered with the item."""
    fps = 30.0 if len(images) > 1 else None
    flags = perception_flags(FEATURES[category])
    result = list(session_results(client, "tryon", images, fps, item_id=item_id, **flags))[-1]  # the last frame
    rendered = np.asarray(cv2.imdecode(np.frombuffer(result.rendered, np.uint8), cv2.IMREAD_COLOR))
    original = np.asarray(cv2.imdecode(np.frombuffer(images[-1], np.uint8), cv2.IMREAD_COLOR))
    return zoom(rendered, original)


def zoom(rendered: np.ndarray, original: np.ndarray, tile: int = 300) -> np.ndarray:
    """A square tile around what the item changed (small items such as rings stay visible), letterboxed."""
    changed = np.abs(rendered.astype(int) - original.astype(int)).max(axis=2) > 40
    h, w = rendered.shape[:2]
    if changed.sum() > 20:
        ys, xs = np.nonzero(changed)
        cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
        side = max(xs.max() - xs.min(), ys.max() - ys.min()) * 1.6 + 40
        side = min(max(side, 0.25 * max(w, h)), max(w, h))
    else:  # nothing placed: the whole frame
        cx, cy, side = w / 2, h / 2, max(w, h)
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    crop = cv2.copyMakeBorder(
        rendered, max(0, -y0), max(0, y0 + int(side) - h), max(0, -x0), max(0, x0 + int(side) - w), cv2.BORDER_CONSTANT
    )
    crop = crop[max(0, y0) : max(0, y0) + int(side), max(0, x0) : max(0, x0) + int(side)]
    return np.asarray(cv2.resize(crop, (tile, tile), interpolation=cv2.INTER_AREA))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    settings = get_settings()
    catalogue = Catalogue(settings.catalogue_dir)
    media: dict[tuple[str, int], list[bytes]] = {}
    for people in PEOPLE.values():
        for path, frame in people:
            if (path, frame) not in media:
                frames = [data for data, *_ in frames_of(settings.data_dir / path)]
                media[(path, frame)] = frames[: frame + 1]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with triton.running(settings):
        client = grpc.InferenceServerClient(settings.triton_grpc_url)
        for category, people in PEOPLE.items():
            found = sorted((i for i in catalogue.items() if i.category == category), key=lambda i: i.id)
            picks = PICKS.get(category)
            items = [i for i in found if i.id in picks] if picks else found[:2]
            tiles = [try_on(client, media[person], item.id, category) for item in items for person in people]
            out = args.out_dir / f"tryon_{category}.jpg"
            cv2.imwrite(str(out), contact_sheet(tiles, columns=len(people), tile=300), [cv2.IMWRITE_JPEG_QUALITY, 80])
            print(f"{category}: {', '.join(i.id for i in items)} -> {out}")
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
