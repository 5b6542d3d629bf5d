"""Lipstick on real 478-point face meshes (MediaPipe's reference outputs) and their photos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from streams.tryon import makeup
from streams.tryon.catalogue import Item
from streams.tryon.scene import Scene
from tests.unit.tryon.meshes import MESHES, load_mesh


def _lipstick(colour: str = "#B0102C", opacity: float = 0.8, finish: str = "matte") -> Item:
    params = {"colour": colour, "opacity": opacity, "finish": finish}
    return Item("lipstick", "lipstick", "red", np.zeros((1, 1, 4), np.uint8), {}, {}, {}, params)


def _polygon_mask(shape: tuple[int, ...], polygon: np.ndarray) -> np.ndarray:
    """Pixels whose centre is inside the polygon (the mesh's own straight-edged contour, independent of the
    renderer's smoothing)."""
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(polygon * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    return mask


@pytest.fixture(params=sorted(MESHES))
def person(request: pytest.FixtureRequest, data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    return load_mesh(data_dir, request.param)


def _regions(face: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(outside the lips by more than 2 px, inside the mouth opening by more than 2 px, the lips' body: 2 px inside
    the outer contour and 2 px outside the opening)."""
    outer = _polygon_mask(shape, face[list(makeup.LIPS_OUTER), :2])
    inner = _polygon_mask(shape, face[list(makeup.LIPS_INNER), :2])
    k = np.ones((5, 5), np.uint8)
    outside = cv2.dilate(outer, k) == 0
    mouth = cv2.erode(inner, k) > 0
    body = (cv2.erode(outer, k) > 0) & (cv2.dilate(inner, k) == 0)
    return outside, mouth, body


def test_lipstick_stays_on_the_lips(person: tuple[np.ndarray, np.ndarray]) -> None:
    face, bgr = person
    rendered = makeup.render_lipstick(Scene(bgr=bgr, face=face.astype(np.float32)), _lipstick(opacity=0.8))
    outside, mouth, body = _regions(face, bgr.shape)
    assert body.sum() > 100
    assert rendered.alpha[outside].max() == 0.0
    if mouth.any():  # an open mouth: the teeth and the opening keep their colour
        assert rendered.alpha[mouth].max() == 0.0
    assert rendered.alpha[body].min() > 0.5 * 0.8
    assert rendered.alpha.max() <= 0.8 + 1e-6
    changed = np.any(rendered.bgr != bgr, axis=2)
    assert not changed[rendered.alpha == 0].any()  # every changed pixel is a lipstick pixel
    assert changed[body].mean() > 0.9


def test_lipstick_takes_the_shade_and_keeps_the_texture(person: tuple[np.ndarray, np.ndarray]) -> None:
    face, bgr = person
    _, _, body = _regions(face, bgr.shape)
    shade = np.array([[[200, 40, 120]]], np.uint8)  # BGR of #7828C8, a violet no lips have
    item = _lipstick(colour="#7828C8", opacity=1.0)
    rendered = makeup.render_lipstick(Scene(bgr=bgr, face=face.astype(np.float32)), item)

    def lab(image: np.ndarray) -> np.ndarray:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2Lab), np.float32)

    target = lab(shade)[0, 0]
    before, after = lab(bgr)[body], lab(rendered.bgr)[body]
    # the hue (a*, b*) is the shade's, the lightness keeps the lips' own variation
    assert np.linalg.norm(after[:, 1:].mean(0) - target[1:]) < 0.3 * np.linalg.norm(before[:, 1:].mean(0) - target[1:])
    assert after[:, 0].std() > 0.4 * before[:, 0].std()
    assert after[:, 0].std() > 2.0


def test_gloss_shines_where_the_lips_already_shine(person: tuple[np.ndarray, np.ndarray]) -> None:
    face, bgr = person
    _, _, body = _regions(face, bgr.shape)
    scene = Scene(bgr=bgr, face=face.astype(np.float32))
    matte = makeup.render_lipstick(scene, _lipstick(finish="matte", opacity=1.0))
    gloss = makeup.render_lipstick(scene, _lipstick(finish="gloss", opacity=1.0))
    light_matte = cv2.cvtColor(matte.bgr, cv2.COLOR_BGR2GRAY)[body].astype(np.float32)
    light_gloss = cv2.cvtColor(gloss.bgr, cv2.COLOR_BGR2GRAY)[body].astype(np.float32)
    original = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)[body].astype(np.float32)
    assert np.percentile(light_gloss, 98) > np.percentile(light_matte, 98) + 10
    # the highlight is where the lips were brightest, not spread everywhere
    bright = original >= np.percentile(original, 90)
    gain = light_gloss - light_matte
    assert gain[bright].mean() > 3 * max(float(gain[~bright].mean()), 1.0)


def test_opacity_scales_the_coverage(data_dir: Path) -> None:
    face, bgr = load_mesh(data_dir, "portrait")
    scene = Scene(bgr=bgr, face=face.astype(np.float32))
    full = makeup.render_lipstick(scene, _lipstick(opacity=1.0)).alpha
    half = makeup.render_lipstick(scene, _lipstick(opacity=0.5)).alpha
    assert np.allclose(half, 0.5 * full, atol=1e-6)
    none = makeup.render_lipstick(scene, _lipstick(opacity=0.0))
    assert none.alpha.max() == 0.0 and np.array_equal(none.bgr, bgr)


@pytest.mark.parametrize("name", sorted(MESHES))
def test_feathered_border_is_about_a_pixel(name: str, data_dir: Path) -> None:
    face, bgr = load_mesh(data_dir, name)
    alpha = makeup.render_lipstick(Scene(bgr=bgr, face=face.astype(np.float32)), _lipstick(opacity=1.0)).alpha
    soft = (alpha > 0.02) & (alpha < 0.98)
    assert soft.any() and (alpha >= 0.98).sum() > soft.sum()
    # soft only at the border: every partly covered pixel is within 2 px of an uncovered one
    near_border = cv2.dilate((alpha == 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert not (soft & ~near_border).any()


def test_no_face_leaves_the_frame_unchanged() -> None:
    bgr = np.full((120, 160, 3), 128, np.uint8)
    for face in (None, np.full((478, 3), np.nan), np.zeros((20, 3))):
        rendered = makeup.render_lipstick(Scene(bgr=bgr, face=face), _lipstick())
        assert np.array_equal(rendered.bgr, bgr) and rendered.alpha.max() == 0.0


def test_lips_outside_the_frame_are_skipped(data_dir: Path) -> None:
    face, bgr = load_mesh(data_dir, "portrait")
    crop = bgr[: int(face[0, 1]) - 30]  # the frame ends above the mouth
    rendered = makeup.render_lipstick(Scene(bgr=crop, face=face.astype(np.float32)), _lipstick())
    assert np.array_equal(rendered.bgr, crop) and rendered.alpha.max() == 0.0
