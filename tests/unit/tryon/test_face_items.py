"""Glasses, hats, earrings and necklaces on real 478-point face meshes (MediaPipe's reference outputs for the
portrait and business-person photos), turned and tilted synthetically where a test needs a pose."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from streams.tryon import face_items
from streams.tryon.catalogue import Item
from streams.tryon.scene import Rendered, Scene
from tests.unit.tryon.meshes import MESHES, load_mesh

EYEBROWS = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46, 300, 293, 334, 296, 336, 285, 295, 282, 283, 276)


def _rgba(data_dir: Path, name: str) -> np.ndarray:
    image = cv2.imread(str(data_dir / "garments" / "rgba" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
    assert image is not None and image.shape[2] == 4
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA))


def _glasses(data_dir: Path, frame_width: float = 140.0, **params: object) -> Item:
    # anchors placed by eye on fluent_glasses.png (512x512): lens centres, the middle of the bridge bar, hinges
    anchors = {
        "left_lens": (372.0, 248.0),
        "right_lens": (142.0, 248.0),
        "bridge": (256.0, 197.0),
        "left_temple": (476.0, 182.0),
        "right_temple": (36.0, 182.0),
    }
    return Item(
        "glasses",
        "glasses",
        "glasses",
        _rgba(data_dir, "fluent_glasses"),
        anchors,
        {"frame_width": frame_width},
        {},
        dict(params),
    )


def _sunglasses(data_dir: Path) -> Item:
    anchors = {
        "left_lens": (184.0, 126.0),
        "right_lens": (71.0, 126.0),
        "bridge": (128.0, 95.0),
        "left_temple": (243.0, 99.0),
        "right_temple": (12.0, 99.0),
    }
    image = _rgba(data_dir, "mmpose_sunglasses_clipart_rgba")
    return Item("sunglasses", "glasses", "sunglasses", image, anchors, {"frame_width": 145.0})


def _hat(data_dir: Path, width_mm: float = 310.0) -> Item:
    anchors = {"left_brim": (474.0, 395.0), "right_brim": (38.0, 395.0), "crown": (256.0, 63.0)}
    return Item("hat", "hat", "top hat", _rgba(data_dir, "fluent_top-hat"), anchors, {"width": width_mm})


def _earrings(length_mm: float = 40.0) -> Item:
    image = np.zeros((120, 40, 4), np.uint8)
    cv2.line(image, (20, 2), (20, 60), (212, 175, 55, 255), 3)
    cv2.circle(image, (20, 90), 16, (30, 120, 200, 255), -1)
    return Item("earrings", "earrings", "drops", image, {"hook": (20.0, 2.0)}, {"length": length_mm})


def _necklace(length_mm: float = 450.0) -> Item:
    image = np.zeros((220, 400, 4), np.uint8)
    t = np.linspace(0.0, 1.0, 80)
    curve = np.stack([20 + 360 * t, 10 + 180 * (1 - (2 * t - 1) ** 2)], 1)
    cv2.polylines(image, [np.round(curve).astype(np.int32)], False, (220, 185, 70, 255), 4, cv2.LINE_AA)
    cv2.circle(image, (200, 200), 14, (200, 20, 60, 255), -1)
    anchors = {"left_end": (380.0, 10.0), "right_end": (20.0, 10.0), "centre": (200.0, 214.0)}
    return Item("necklace", "necklace", "pendant", image, anchors, {"length": length_mm})


def _turned(points: np.ndarray, yaw_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """The mesh turned about the vertical axis through its centre (yaw > 0: the nose moves to the image left, the
    wearer's left side comes towards the camera), then rotated on screen (roll > 0: clockwise)."""
    centre = points.mean(axis=0)
    p = points - centre
    a, b = math.radians(yaw_deg), math.radians(roll_deg)
    x = p[:, 0] * math.cos(a) + p[:, 2] * math.sin(a)
    z = -p[:, 0] * math.sin(a) + p[:, 2] * math.cos(a)
    x, y = x * math.cos(b) - p[:, 1] * math.sin(b), x * math.sin(b) + p[:, 1] * math.cos(b)
    return np.asarray(np.stack([x, y, z], 1) + centre)


def _scene(bgr: np.ndarray, face: np.ndarray | None, keypoints: np.ndarray | None = None) -> Scene:
    return Scene(bgr=bgr, face=None if face is None else face.astype(np.float32), keypoints=keypoints)


def _face_width(face: np.ndarray) -> float:
    return float(np.linalg.norm(face[234, :2] - face[454, :2]))


def _hull(face: np.ndarray, shape: tuple[int, ...], inset: int = 2) -> np.ndarray:
    """The face's convex hull, `inset` px inside its outline."""
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(face[:468, :2].astype(np.float32)).astype(np.int32), 1)
    if inset:
        mask = np.asarray(cv2.erode(mask, np.ones((2 * inset + 1, 2 * inset + 1), np.uint8)), np.uint8)
    return mask.astype(bool)


@pytest.fixture(params=sorted(MESHES))
def person(request: pytest.FixtureRequest, data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    return load_mesh(data_dir, request.param)


# --- glasses ------------------------------------------------------------------------------------------------------


def test_glasses_bridge_sits_on_the_nose_bridge(person: tuple[np.ndarray, np.ndarray], data_dir: Path) -> None:
    face, bgr = person
    for item in (_glasses(data_dir), _sunglasses(data_dir)):
        placed = face_items.render_glasses(_scene(bgr, face), item).placed
        assert np.linalg.norm(placed["bridge"] - face[168, :2]) < 0.03 * _face_width(face)


def test_glasses_lenses_are_at_the_eyes(person: tuple[np.ndarray, np.ndarray], data_dir: Path) -> None:
    face, bgr = person
    width = _face_width(face)
    rendered = face_items.render_glasses(_scene(bgr, face), _glasses(data_dir))
    # the wearer's left lens is in front of the wearer's left eye (image right: iris 473..477)
    for lens, iris in (("left_lens", 473), ("right_lens", 468)):
        dx, dy = rendered.placed[lens] - face[iris, :2]
        assert abs(dx) < 0.08 * width
        # this clip-art's lens centres are 1.6 cm (0.106 canonical face widths) below its bridge bar, which rests on
        # the nose bridge at about the pupils' height: the lenses sit at most that much lower than the pupils
        assert -0.03 * width < dy < (0.106 + 0.03) * width
        assert rendered.alpha[round(face[iris, 1]), round(face[iris, 0])] > 0.9  # the eye is behind the lens
    assert rendered.placed["left_lens"][0] > rendered.placed["bridge"][0] > rendered.placed["right_lens"][0]
    # nothing far below the nose
    assert rendered.alpha[round(face[152, 1]), round(face[152, 0])] == 0.0
    assert rendered.alpha[round(face[13, 1]), round(face[13, 0])] == 0.0


def test_glasses_have_their_real_size(person: tuple[np.ndarray, np.ndarray], data_dir: Path) -> None:
    """A 140 mm frame on a face whose mesh width (234-454) is 153 mm in the canonical model."""
    face, bgr = person
    placed = face_items.render_glasses(_scene(bgr, face), _glasses(data_dir, 140.0)).placed
    ratio = np.linalg.norm(placed["left_temple"] - placed["right_temple"]) / _face_width(face)
    assert ratio == pytest.approx(140.0 / 153.3, rel=0.12)


def test_glasses_grow_with_the_frame_width(person: tuple[np.ndarray, np.ndarray], data_dir: Path) -> None:
    face, bgr = person
    spans = []
    for width in (120.0, 150.0):
        placed = face_items.render_glasses(_scene(bgr, face), _glasses(data_dir, width)).placed
        spans.append(float(np.linalg.norm(placed["left_temple"] - placed["right_temple"])))
    assert spans[1] / spans[0] == pytest.approx(150.0 / 120.0, rel=0.03)


def test_glasses_tilt_with_the_head(data_dir: Path) -> None:
    face, bgr = load_mesh(data_dir, "business")
    for roll in (-20.0, 15.0):
        placed = face_items.render_glasses(_scene(bgr, _turned(face, roll_deg=roll)), _glasses(data_dir)).placed
        d = placed["left_lens"] - placed["right_lens"]
        base = _turned(face, roll_deg=0.0)
        b = face_items.render_glasses(_scene(bgr, base), _glasses(data_dir)).placed
        d0 = b["left_lens"] - b["right_lens"]
        turned = math.degrees(math.atan2(d[1], d[0]) - math.atan2(d0[1], d0[0]))
        assert turned == pytest.approx(roll, abs=2.0)


def test_a_turned_head_hides_the_far_temple(data_dir: Path) -> None:
    face, bgr = load_mesh(data_dir, "business")
    turned = _turned(face, yaw_deg=35.0)  # the wearer's left side towards the camera
    scene = _scene(bgr, turned)
    # see-through lenses and hinges at mid-lens height: the far temple runs behind the far lens, where it would show
    base = _glasses(data_dir, lens_opacity=0.0)
    anchors = {**base.anchors, "left_temple": (476.0, 230.0), "right_temple": (36.0, 230.0)}
    item = Item(base.id, base.category, base.name, base.image, anchors, base.size_mm, {}, base.params)
    placement = face_items.place_glasses(scene, item)
    assert placement is not None
    assert {t.side: t.near for t in placement.temples} == {"left": True, "right": False}
    without_temples = Item(
        item.id, item.category, item.name, item.image, anchors, item.size_mm, {}, {**item.params, "temples": False}
    )
    rendered = face_items.render_glasses(scene, item)
    temples = (rendered.alpha - face_items.render_glasses(scene, without_temples).alpha) > 0.05
    hull = _hull(turned, bgr.shape)
    for temple in placement.temples:
        strip = np.zeros(bgr.shape[:2], np.uint8)
        cv2.fillConvexPoly(strip, np.round(temple.quad).astype(np.int32), 1)
        on_face = (strip > 0) & hull
        assert on_face.sum() > 50  # both temples cross the face in the image ...
        if temple.near:
            assert temples[on_face].mean() > 0.5  # ... the near one is drawn over it
        else:
            assert not temples[on_face].any()  # ... the far one is behind it, even through the clear lens


def test_lens_opacity_lets_the_eyes_show(data_dir: Path) -> None:
    face, bgr = load_mesh(data_dir, "portrait")
    scene = _scene(bgr, face)
    opaque = face_items.render_glasses(scene, _glasses(data_dir))
    clear = face_items.render_glasses(scene, _glasses(data_dir, lens_opacity=0.2))
    x, y = np.round(face[473, :2]).astype(int)
    assert opaque.alpha[y, x] > 0.95
    assert clear.alpha[y, x] == pytest.approx(0.2, abs=0.08)
    frame = opaque.placed["left_temple"].round().astype(int)  # the frame itself stays opaque
    assert clear.alpha[frame[1] + 2, frame[0] - 6] > 0.9


def test_the_scene_head_pose_is_used_when_given(data_dir: Path) -> None:
    face, bgr = load_mesh(data_dir, "business")
    item = _glasses(data_dir)
    pose = face_items.head_pose(_scene(bgr, face), face)
    assert pose is not None
    solved = face_items.render_glasses(_scene(bgr, face), item).placed
    rotation, translation = pose
    given = Scene(bgr=bgr, face=face.astype(np.float32), head_rotation=rotation, head_translation=translation)
    assert np.allclose(face_items.render_glasses(given, item).placed["left_lens"], solved["left_lens"], atol=0.5)
    # a pose 20 cm further away: the same glasses drawn smaller (the pose, not the mesh, sets the depth)
    far = Scene(bgr=bgr, face=face.astype(np.float32), head_rotation=rotation, head_translation=translation * 1.5)
    placed = face_items.render_glasses(far, item).placed
    span = np.linalg.norm(placed["left_temple"] - placed["right_temple"])
    assert span < 0.8 * np.linalg.norm(solved["left_temple"] - solved["right_temple"])
    # a NaN pose (no canonical model upstream) is solved here again
    nan = Scene(
        bgr=bgr, face=face.astype(np.float32), head_rotation=np.full((3, 3), np.nan), head_translation=translation
    )
    assert np.allclose(face_items.render_glasses(nan, item).placed["bridge"], solved["bridge"], atol=0.5)


# --- hats ---------------------------------------------------------------------------------------------------------


def test_hat_sits_above_the_eyebrows_and_is_wider_than_the_face(
    person: tuple[np.ndarray, np.ndarray], data_dir: Path
) -> None:
    face, bgr = person
    rendered = face_items.render_hat(_scene(bgr, face), _hat(data_dir))
    brows_top = face[list(EYEBROWS), 1].min()
    assert rendered.placed["left_brim"][1] < brows_top
    assert rendered.placed["right_brim"][1] < brows_top
    assert rendered.placed["crown"][1] < rendered.placed["left_brim"][1]
    assert rendered.placed["left_brim"][0] > face[454, 0] and rendered.placed["right_brim"][0] < face[234, 0]
    # nothing of the hat on the eyebrows or the eyes
    for i in (*EYEBROWS, 468, 473, 159, 386):
        assert rendered.alpha[round(face[i, 1]), round(face[i, 0])] == 0.0
    assert rendered.alpha[: int(brows_top)].max() > 0.9


def test_hat_width_follows_the_item_size(data_dir: Path) -> None:
    face, bgr = load_mesh(data_dir, "portrait")
    spans = []
    for width in (260.0, 390.0):
        placed = face_items.render_hat(_scene(bgr, face), _hat(data_dir, width)).placed
        spans.append(float(np.linalg.norm(placed["left_brim"] - placed["right_brim"])))
    assert spans[1] / spans[0] == pytest.approx(1.5, rel=0.02)
    assert spans[0] / _face_width(face) == pytest.approx(260.0 / 153.3, rel=0.15)


def test_hat_turns_with_the_head_roll(data_dir: Path) -> None:
    face, bgr = load_mesh(data_dir, "business")
    angles = []
    for roll in (0.0, 20.0):
        placed = face_items.render_hat(_scene(bgr, _turned(face, roll_deg=roll)), _hat(data_dir)).placed
        d = placed["left_brim"] - placed["right_brim"]
        angles.append(math.degrees(math.atan2(d[1], d[0])))
    assert angles[1] - angles[0] == pytest.approx(20.0, abs=3.0)


# --- earrings -----------------------------------------------------------------------------------------------------


def test_earrings_hang_from_the_ear_lobes(person: tuple[np.ndarray, np.ndarray]) -> None:
    face, bgr = person
    rendered = face_items.render_earrings(_scene(bgr, face), _earrings())
    width = _face_width(face)
    # the wearer's left lobe is on the image right, beside the face oval at the lobe's height (323), and vice versa
    for hook, oval, outward in (("left_hook", 323, 1.0), ("right_hook", 93, -1.0)):
        lobe = rendered.placed[hook]
        assert np.linalg.norm(lobe - face[oval, :2]) < 0.1 * width
        assert (lobe[0] - face[oval, 0]) * outward > -0.02 * width  # not inside the cheek
        assert face[468, 1] + 0.1 * width < lobe[1] < face[152, 1] - 0.1 * width  # between the eyes and the chin
        # hanging down from the hook
        x, y = np.round(lobe).astype(int)
        below = rendered.alpha[y + 2 : y + int(0.2 * width), x - int(0.05 * width) : x + int(0.05 * width)]
        above = rendered.alpha[y - int(0.2 * width) : y - 2, x - int(0.05 * width) : x + int(0.05 * width)]
        assert below.max() > 0.5 and above.max() < 0.2


def test_a_turned_head_hides_the_far_earring(data_dir: Path) -> None:
    face, bgr = load_mesh(data_dir, "business")
    straight = face_items.render_earrings(_scene(bgr, face), _earrings())
    assert set(straight.placed) == {"left_hook", "right_hook"}
    turned = _turned(face, yaw_deg=40.0)  # the wearer's right ear turns away
    rendered = face_items.render_earrings(_scene(bgr, turned), _earrings())
    assert set(rendered.placed) == {"left_hook"}
    assert rendered.alpha[:, : int(turned[1, 0])].max() == 0.0  # nothing on the image left of the nose tip
    assert rendered.alpha.max() > 0.5


# --- necklaces ----------------------------------------------------------------------------------------------------


def _shoulders(face: np.ndarray) -> np.ndarray:
    """Pose keypoints with the shoulders one face height below the chin, 2.6 face widths apart."""
    width = _face_width(face)
    chin = face[152, :2]
    kp = np.zeros((33, 4))
    kp[:, 2:] = 1.0
    kp[11, :2] = chin + np.array([1.3, 0.75]) * width  # the subject's left shoulder: image right
    kp[12, :2] = chin + np.array([-1.3, 0.75]) * width
    return kp


def test_necklace_hangs_below_the_chin_between_the_shoulders(
    person: tuple[np.ndarray, np.ndarray], data_dir: Path
) -> None:
    face, bgr = person
    kp = _shoulders(face)
    rendered = face_items.render_necklace(_scene(bgr, face, kp), _necklace())
    p = rendered.placed
    chin = face[152, :2]
    for end in ("left_end", "right_end"):
        assert chin[1] < p[end][1] < kp[11, 1]
    assert p["left_end"][0] > chin[0] > p["right_end"][0]
    assert p["centre"][1] > max(p["left_end"][1], p["right_end"][1])
    assert abs(p["centre"][0] - chin[0]) < 0.15 * _face_width(face)
    assert rendered.alpha.max() > 0.5
    assert not (rendered.alpha[_hull(face, bgr.shape)] > 0).any()  # the face is in front of it
    longer = face_items.render_necklace(_scene(bgr, face, kp), _necklace(600.0)).placed
    assert longer["centre"][1] > p["centre"][1] + 0.3 * _face_width(face)


def test_a_lowered_chin_hides_the_necklace_behind_it(data_dir: Path) -> None:
    face, bgr = load_mesh(data_dir, "portrait")
    width = _face_width(face)
    kp = _shoulders(face)
    kp[[11, 12], 1] = face[152, 1] - 0.35 * width  # chin on the chest: the shoulder line above the chin
    rendered = face_items.render_necklace(_scene(bgr, face, kp), _necklace(600.0))
    hull = _hull(face, bgr.shape)
    strip = np.zeros(bgr.shape[:2], np.uint8)  # where the necklace's image lands
    cv2.fillConvexPoly(
        strip, np.round(np.stack([rendered.placed[k] for k in ("left_end", "centre", "right_end")])).astype(np.int32), 1
    )
    assert (strip.astype(bool) & hull).sum() > 100  # it crosses the face ...
    assert rendered.alpha[hull].max() == 0.0  # ... and only shows below it
    assert rendered.alpha.max() > 0.5


def test_necklace_is_hidden_when_the_shoulders_are_seen_from_behind(data_dir: Path) -> None:
    face, bgr = load_mesh(data_dir, "portrait")
    kp = _shoulders(face)
    kp[[11, 12]] = kp[[12, 11]]
    rendered = face_items.render_necklace(_scene(bgr, face, kp), _necklace())
    assert rendered.alpha.max() == 0.0
    assert rendered.bgr is bgr or np.array_equal(rendered.bgr, bgr)


def test_necklace_from_the_shoulders_alone(data_dir: Path) -> None:
    face, bgr = load_mesh(data_dir, "portrait")
    kp = _shoulders(face)
    rendered = face_items.render_necklace(_scene(bgr, None, kp), _necklace())
    assert rendered.alpha.max() > 0.5
    mid = (kp[11, :2] + kp[12, :2]) / 2
    assert rendered.placed["left_end"][1] < mid[1] and abs(rendered.placed["centre"][0] - mid[0]) < 5.0


# --- no perception ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["glasses", "hat", "earrings", "necklace"])
def test_no_face_leaves_the_frame_unchanged(kind: str, data_dir: Path) -> None:
    items: dict[str, tuple[Callable[[Scene, Item], Rendered], Item]] = {
        "glasses": (face_items.render_glasses, _glasses(data_dir)),
        "hat": (face_items.render_hat, _hat(data_dir)),
        "earrings": (face_items.render_earrings, _earrings()),
        "necklace": (face_items.render_necklace, _necklace()),
    }
    render, item = items[kind]
    bgr = np.full((240, 320, 3), 90, np.uint8)
    broken = np.full((478, 3), np.nan)
    for face in (None, broken, np.zeros((10, 3))):
        scene = Scene(bgr=bgr, face=face)
        rendered = render(scene, item)
        assert np.array_equal(rendered.bgr, bgr)
        assert rendered.alpha.shape == (240, 320) and rendered.alpha.max() == 0.0
        assert rendered.placed == {}
