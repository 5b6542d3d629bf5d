"""Golden images: glasses, lipstick and a top rendered on real perception results, compared with committed images
under a perceptual tolerance (a rendering change a person would notice fails; JPEG-level noise does not).

Regenerate after an intended change with `VTO_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/tryon/test_golden.py`
and look at the new images before committing them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from streams.tryon.catalogue import Catalogue
from streams.tryon.render import render
from streams.tryon.scene import Scene
from tests.unit.tryon.meshes import load_mesh

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = ROOT / "tests" / "golden"
CATALOGUE = Catalogue(ROOT / "catalogue")


def pose_scene(data_dir: Path) -> Scene:
    """The yoga photo with MediaPipe's golden keypoints and a person mask from the reference segmentation."""
    folder = data_dir / "keypoints" / "tfjs_pose_yoga"
    ref = json.loads((folder / "pose_blazepose33.json").read_text())
    marks = ref["mediapipe_expected_pose_landmarks_normalized"]["landmarks"]
    keypoints = np.array([[p["x"] * ref["width"], p["y"] * ref["height"], 0.99, 0.99] for p in marks], np.float32)
    palette = cv2.imread(str(folder / "pose_segmentation.png"))
    mask = ((palette[:, :, 0] > 127) & (palette[:, :, 2] < 128)).astype(np.float32)
    return Scene(bgr=cv2.imread(str(folder / "pose.jpg")), keypoints=keypoints, mask=mask)


def face_scene(data_dir: Path) -> Scene:
    face, bgr = load_mesh(data_dir, "business")
    return Scene(bgr=bgr, face=face.astype(np.float32))


CASES = {
    "glasses_business": (face_scene, "sunglasses-blue-wayfarer"),
    "lipstick_business": (face_scene, "lipstick-pink-gloss"),
    "top_yoga": (pose_scene, "tee-breton-stripes"),
}


def crop(scene: Scene, bgr: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The region the item covers (with a margin), at most 256 px: what the golden image keeps."""
    ys, xs = np.nonzero(alpha > 0.05)
    assert len(xs), "the item was not placed"
    margin = 0.2 * max(np.ptp(xs), np.ptp(ys)) + 8
    x0, x1 = int(max(0, xs.min() - margin)), int(min(scene.width, xs.max() + margin))
    y0, y1 = int(max(0, ys.min() - margin)), int(min(scene.height, ys.max() + margin))
    region = bgr[y0:y1, x0:x1]
    scale = min(1.0, 256 / max(region.shape[:2]))
    return np.asarray(cv2.resize(region, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendering_matches_the_golden_image(case: str, data_dir: Path) -> None:
    make_scene, item_id = CASES[case]
    scene = make_scene(data_dir)
    item = CATALOGUE.get(item_id)
    assert item is not None
    rendered = render(scene, item)
    image = crop(scene, rendered.bgr, rendered.alpha)
    path = GOLDEN / f"{case}.png"
    if os.environ.get("VTO_UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        cv2.imwrite(str(path), image)
    golden = cv2.imread(str(path))
    assert golden is not None, f"{path} is missing: run with VTO_UPDATE_GOLDEN=1 and review it"
    assert golden.shape == image.shape, "the item moved or changed size"
    # Perceptual tolerance: compare blurred images (small, sub-pixel shifts do not count) by mean and 99th
    # percentile of the per-pixel difference, and the structure by the correlation of the gradients.
    a, b = (cv2.GaussianBlur(x.astype(np.float32), (5, 5), 1.5) for x in (image, golden))
    diff = np.abs(a - b).max(axis=2)
    assert diff.mean() < 2.0 and np.percentile(diff, 99) < 25, (diff.mean(), np.percentile(diff, 99))
    ga, gb = (cv2.Laplacian(cv2.cvtColor(x, cv2.COLOR_BGR2GRAY), cv2.CV_32F).ravel() for x in (a, b))
    assert np.corrcoef(ga, gb)[0, 1] > 0.95


def test_a_failing_renderer_costs_the_item_not_the_frame(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """render() is what Triton calls: a renderer's bug returns the frame as captured, never an exception."""
    from streams.tryon import render as render_module

    def broken(scene: Scene, item: object) -> object:
        raise ValueError("a renderer bug")

    monkeypatch.setitem(render_module.RENDERERS, "glasses", broken)
    scene = face_scene(data_dir)
    item = CATALOGUE.get("sunglasses-blue-wayfarer")
    rendered = render(scene, item)
    assert rendered.bgr is scene.bgr and not rendered.alpha.any()
