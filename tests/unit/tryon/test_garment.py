"""Tops and dresses: placement on real and synthetic keypoints, occlusion, clipping, shading, robustness.

The items are real cut-outs from the sample data with anchors placed by eye (the wearer's own left/right: on these
front views the wearer's left is on the image right). Scenes are drawn from keypoints (a frontal standing pose
computed from body proportions, MediaPipe's expected landmarks for the yoga photo and the sitting photo); the
person mask is drawn from the same keypoints unless the data has a real one.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from streams.tryon.catalogue import Item
from streams.tryon.garment import MASK_GROW, place_garment, render_garment
from streams.tryon.scene import Rendered, Scene

L_SH, R_SH, L_EL, R_EL, L_WR, R_WR, L_HIP, R_HIP = 11, 12, 13, 14, 15, 16, 23, 24
ANCHORS = {
    "t-shirt": (
        "top",
        "cc0_t-shirt_05d01bf9_cutout.png",
        {
            "collar": (175, 30),
            "left_shoulder": (276, 21),
            "right_shoulder": (84, 23),
            "left_sleeve": (333, 80),
            "right_sleeve": (22, 75),
            "left_hem": (320, 328),
            "right_hem": (80, 326),
        },
    ),
    "dress": (  # a strap dress: no sleeves, so its sleeve anchors sit on its shoulder anchors
        "dress",
        "fluent_dress.png",
        {
            "collar": (256, 104),
            "left_shoulder": (328, 36),
            "right_shoulder": (184, 36),
            "left_sleeve": (328, 36),
            "right_sleeve": (184, 36),
            "left_hem": (445, 470),
            "right_hem": (67, 470),
        },
    ),
}

# the synthetic frame: portrait 480x640, shoulder width 110 px
WIDTH, HEIGHT, SHOULDER, CX, SY = 480, 640, 110.0, 239.5, 170.0


def load_item(data_dir: Path, key: str) -> Item:
    category, name, anchors = ANCHORS[key]
    bgra = cv2.imread(str(data_dir / "garments" / "rgba" / name), cv2.IMREAD_UNCHANGED)
    assert bgra is not None and bgra.shape[2] == 4
    rgba = cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA)
    return Item(key, category, key, rgba, {k: (float(x), float(y)) for k, (x, y) in anchors.items()})


@pytest.fixture(scope="module")
def tshirt(data_dir: Path) -> Item:
    return load_item(data_dir, "t-shirt")


@pytest.fixture(scope="module")
def dress(data_dir: Path) -> Item:
    return load_item(data_dir, "dress")


def standing() -> np.ndarray:
    """A frontal standing adult (the subject's left on the image right), arms hanging, all visible."""
    w = SHOULDER
    kp = np.zeros((33, 4), np.float64)
    kp[:, 2:] = 1.0

    def both(left: int, dx: float, y: float) -> None:
        kp[left, :2] = (CX + dx * w, SY + y * w)
        kp[left + 1, :2] = (CX - dx * w, SY + y * w)

    kp[0, :2] = (CX, SY - 0.55 * w)  # nose
    for i, dx in ((1, 0.06), (2, 0.1), (3, 0.14)):  # eyes: left 1-3, right 4-6
        kp[i, :2] = (CX + dx * w, SY - 0.65 * w)
        kp[i + 3, :2] = (CX - dx * w, SY - 0.65 * w)
    both(7, 0.2, -0.6)  # ears
    both(9, 0.07, -0.45)  # mouth
    both(L_SH, 0.5, 0.0)
    both(L_EL, 0.56, 0.85)
    both(L_WR, 0.58, 1.6)
    both(17, 0.62, 1.78)  # pinky
    both(19, 0.56, 1.82)  # index
    both(21, 0.52, 1.7)  # thumb
    both(L_HIP, 0.3, 1.45)
    both(25, 0.32, 2.4)  # knees
    both(27, 0.33, 3.3)  # ankles
    both(29, 0.34, 3.4)  # heels
    both(31, 0.4, 3.45)  # feet
    return kp


def person_mask(kp: np.ndarray, shape: tuple[int, int] = (HEIGHT, WIDTH)) -> np.ndarray:
    """A plausible person mask drawn from the keypoints: torso, head, limbs as capsules."""
    w = float(np.linalg.norm(kp[L_SH, :2] - kp[R_SH, :2]))
    mask = np.zeros(shape, np.uint8)

    def limb(a: int, b: int, radius: float) -> None:
        pa, pb = tuple(int(v) for v in kp[a, :2]), tuple(int(v) for v in kp[b, :2])
        cv2.line(mask, pa, pb, 255, int(2 * radius))
        cv2.circle(mask, pa, int(radius), 255, -1)
        cv2.circle(mask, pb, int(radius), 255, -1)

    out = (kp[L_SH, :2] - kp[R_SH, :2]) / w
    torso = np.array(
        [
            kp[L_SH, :2] + 0.12 * w * out,
            kp[L_HIP, :2] + 0.22 * w * out,
            kp[R_HIP, :2] - 0.22 * w * out,
            kp[R_SH, :2] - 0.12 * w * out,
        ]
    )
    cv2.fillConvexPoly(mask, torso.astype(np.int32), 255)
    limb(L_SH, R_SH, 0.12 * w)
    cv2.circle(mask, tuple(int(v) for v in kp[0, :2]), int(0.32 * w), 255, -1)
    limb(0, L_SH, 0.15 * w)
    limb(0, R_SH, 0.15 * w)
    for a, b, c in ((L_SH, L_EL, L_WR), (R_SH, R_EL, R_WR)):
        limb(a, b, 0.14 * w)
        limb(b, c, 0.11 * w)
        limb(c, c + 4, 0.09 * w)  # to the index finger
    for a, b, c in ((L_HIP, 25, 27), (R_HIP, 26, 28)):
        limb(a, b, 0.2 * w)
        limb(b, c, 0.15 * w)
    return mask.astype(np.float32) / 255.0


def frame_for(mask: np.ndarray, person: float = 150.0, background: float = 90.0) -> np.ndarray:
    level = background + (person - background) * mask
    return np.repeat(np.clip(level, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


def scene_for(kp: np.ndarray, mask: np.ndarray | None = None, bgr: np.ndarray | None = None) -> Scene:
    mask = person_mask(kp) if mask is None else mask
    return Scene(bgr=frame_for(mask) if bgr is None else bgr, keypoints=kp, mask=mask)


def shoulder_width(kp: np.ndarray) -> float:
    return float(np.linalg.norm(kp[L_SH, :2] - kp[R_SH, :2]))


def distance_to_line(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(distance of p from the line a-b, position of its foot along a-b: 0 at a, 1 at b)."""
    d = b - a
    t = float((p - a) @ d / (d @ d))
    return float(np.linalg.norm(a + t * d - p)), t


def yoga(data_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    folder = data_dir / "keypoints" / "tfjs_pose_yoga"
    meta = json.loads((folder / "pose_blazepose33.json").read_text())
    marks = meta["mediapipe_expected_pose_landmarks_normalized"]["landmarks"]
    w, h = meta["width"], meta["height"]
    kp = np.array([[m["x"] * w, m["y"] * h, m["visibility"], m["presence"]] for m in marks], np.float64)
    bgr = cv2.imread(str(folder / "pose.jpg"), cv2.IMREAD_COLOR)
    palette = cv2.imread(str(folder / "pose_segmentation.png"))  # person blue, background red
    assert bgr is not None and palette is not None
    mask = ((palette[:, :, 0] > 127) & (palette[:, :, 2] < 128)).astype(np.float32)
    return kp, np.asarray(bgr, np.uint8), mask


def sitting(data_dir: Path) -> np.ndarray:
    meta = json.loads((data_dir / "keypoints" / "mps_pose_sitting" / "test_image_blazepose33.json").read_text())
    marks = meta["results"]["pose_landmarker_full"]
    return np.array([[m["x"] * meta["width"], m["y"] * meta["height"], 1.0, 1.0] for m in marks], np.float64)


# ---------------------------------------------------------------------------------------------------------------
# Placement


@pytest.mark.parametrize("key", ["t-shirt", "dress"])
@pytest.mark.parametrize("pose", ["standing", "yoga", "sitting"])
def test_placed_shoulders_are_on_the_shoulder_keypoints(data_dir: Path, key: str, pose: str) -> None:
    """The issue's acceptance check: within 5 % of the shoulder width (the anchors sit a little outside the joint
    centres, on the same side)."""
    kp = standing() if pose == "standing" else yoga(data_dir)[0] if pose == "yoga" else sitting(data_dir)
    placed = place_garment(kp, load_item(data_dir, key))
    w = shoulder_width(kp)
    for name, index in (("left_shoulder", L_SH), ("right_shoulder", R_SH)):
        assert np.linalg.norm(placed[name] - kp[index, :2]) < 0.05 * w, name
    # outward: the placed shoulders are further apart than the keypoints, not closer
    assert np.linalg.norm(placed["left_shoulder"] - placed["right_shoulder"]) > w


@pytest.mark.parametrize("pose", ["standing", "yoga"])
def test_collar_is_above_the_shoulder_line_and_the_hem_below_the_hips(data_dir: Path, tshirt: Item, pose: str) -> None:
    kp = standing() if pose == "standing" else yoga(data_dir)[0]
    placed = place_garment(kp, tshirt)
    w = shoulder_width(kp)
    shoulder_y = (kp[L_SH, 1] + kp[R_SH, 1]) / 2
    hip_y = max(kp[L_HIP, 1], kp[R_HIP, 1])
    assert placed["collar"][1] < shoulder_y - 0.05 * w  # at the neck, towards the nose
    assert abs(placed["collar"][0] - (kp[L_SH, 0] + kp[R_SH, 0]) / 2) < 0.15 * w
    for name in ("left_hem", "right_hem"):
        assert placed[name][1] > hip_y  # a bit below the hips ...
        assert placed[name][1] < hip_y + 0.5 * w  # ... not at the knees


def test_a_dress_reaches_further_down_than_a_top(tshirt: Item, dress: Item) -> None:
    kp = standing()
    top, long = place_garment(kp, tshirt), place_garment(kp, dress)
    hip_y = kp[L_HIP, 1]
    torso = hip_y - SY
    assert long["left_hem"][1] - hip_y > top["left_hem"][1] - hip_y + 0.5 * torso


def test_sleeves_follow_a_raised_arm_and_the_torso_does_not_move(tshirt: Item) -> None:
    down = standing()
    up = down.copy()
    w = SHOULDER
    direction = np.array([np.cos(np.radians(-55)), np.sin(np.radians(-55))])  # up and out, image right
    up[L_EL, :2] = up[L_SH, :2] + 0.85 * w * direction
    up[L_WR, :2] = up[L_EL, :2] + 0.75 * w * direction
    for finger in (17, 19, 21):
        up[finger, :2] = up[L_WR, :2] + 0.15 * w * direction
    placed_down, placed_up = place_garment(down, tshirt), place_garment(up, tshirt)

    for kp, placed in ((down, placed_down), (up, placed_up)):
        off, t = distance_to_line(placed["left_sleeve"], kp[L_SH, :2], kp[L_EL, :2])
        assert off < 0.05 * w
        assert 0.15 < t < 0.9  # a short sleeve: part-way down the upper arm
    assert np.linalg.norm(placed_up["left_sleeve"] - placed_down["left_sleeve"]) > 0.4 * w
    np.testing.assert_allclose(placed_up["right_sleeve"], placed_down["right_sleeve"])

    r_down, r_up = render_garment(scene_for(down), tshirt), render_garment(scene_for(up), tshirt)
    # the raised sleeve covers the upper arm between the shoulder and the sleeve's end
    on_sleeve = (0.4 * placed_up["left_shoulder"] + 0.6 * placed_up["left_sleeve"]).astype(int)
    assert r_up.alpha[on_sleeve[1], on_sleeve[0]] > 0.5
    assert r_down.alpha[on_sleeve[1], on_sleeve[0]] < 0.1
    # the torso is warped separately: its middle is the same, pixel for pixel
    x0, x1 = int(CX - 0.25 * w), int(CX + 0.25 * w)
    y0, y1 = int(SY + 0.3 * w), int(down[L_HIP, 1])
    assert r_down.alpha[y0:y1, x0:x1].min() > 0.99
    diff = np.abs(r_up.bgr[y0:y1, x0:x1].astype(int) - r_down.bgr[y0:y1, x0:x1].astype(int))
    assert diff.max() <= 1


# ---------------------------------------------------------------------------------------------------------------
# Occlusion, clipping, shading


def test_a_forearm_across_the_torso_hides_the_garment_there(tshirt: Item) -> None:
    down = standing()
    crossed = down.copy()
    w = SHOULDER
    crossed[L_EL, :2] = (CX + 0.62 * w, SY + 0.9 * w)
    crossed[L_WR, :2] = (CX - 0.3 * w, SY + 0.95 * w)
    for finger, dy in ((17, 0.08), (19, -0.02), (21, -0.1)):
        crossed[finger, :2] = (CX - 0.45 * w, SY + (0.95 + dy) * w)
    on_forearm = ((crossed[L_EL, :2] + crossed[L_WR, :2]) / 2).astype(int)

    r_down = render_garment(scene_for(down), tshirt)
    r_crossed = render_garment(scene_for(crossed), tshirt)
    assert r_down.alpha[on_forearm[1], on_forearm[0]] > 0.95
    assert r_crossed.alpha[on_forearm[1], on_forearm[0]] < 0.05
    # the frame's own pixels (the arm) show there
    assert np.array_equal(
        r_crossed.bgr[on_forearm[1], on_forearm[0]], scene_for(crossed).bgr[on_forearm[1], on_forearm[0]]
    )
    # an arm behind the back (wrist not visible) hides nothing
    behind = crossed.copy()
    behind[[L_WR, 17, 19, 21], 2] = 0.1
    r_behind = render_garment(scene_for(behind, mask=person_mask(down)), tshirt)
    assert r_behind.alpha[on_forearm[1], on_forearm[0]] > 0.95


@pytest.mark.parametrize("key", ["t-shirt", "dress"])
def test_alpha_stays_inside_the_person_mask(data_dir: Path, key: str) -> None:
    item = load_item(data_dir, key)
    for kp, bgr, given in ((standing(), None, None), yoga(data_dir)):
        mask = person_mask(kp) if given is None else given
        result = render_garment(scene_for(kp, mask, bgr), item)
        w = shoulder_width(kp)
        hip_y = max(kp[L_HIP, 1], kp[R_HIP, 1])
        grow = max(2, round(MASK_GROW * w)) + 2
        allowed = cv2.dilate((mask > 0.5).astype(np.uint8), np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)) > 0
        outside = (result.alpha > 0.02) & ~allowed
        if key == "dress":  # the skirt hangs free below the hips
            outside[int(hip_y + 0.05 * w) :] = False
        assert not outside.any(), f"{int(outside.sum())} px of garment off the person"
        # and it is there: the chest is covered
        left, right = sorted((int(kp[L_SH, 0]), int(kp[R_SH, 0])))
        chest = result.alpha[int(kp[L_SH, 1] + 0.7 * w), left + 5 : right - 5]
        assert (chest > 0.5).mean() > 0.8


def test_a_dress_skirt_is_not_clipped_to_the_legs(tshirt: Item, dress: Item) -> None:
    kp = standing()
    scene = scene_for(kp)
    placed = place_garment(kp, dress)
    x = int(CX + 0.6 * SHOULDER)  # beside the legs, where the mask is empty
    y = int(placed["left_hem"][1] - 0.3 * SHOULDER)
    assert scene.mask is not None and scene.mask[y, x] == 0
    assert render_garment(scene, dress).alpha[y, x] > 0.9
    assert render_garment(scene, tshirt).alpha[y, x] == 0


def test_shading_follows_the_frame_luminance(tshirt: Item) -> None:
    kp = standing()
    mask = person_mask(kp)
    flat = frame_for(mask)
    band = flat.copy()
    y0, y1 = int(SY + 0.6 * SHOULDER), int(SY + 1.0 * SHOULDER)
    band[y0:y1] = frame_for(mask, person=60.0)[y0:y1]  # a shadow across the chest
    r_flat = render_garment(Scene(flat, keypoints=kp, mask=mask), tshirt)
    r_band = render_garment(Scene(band, keypoints=kp, mask=mask), tshirt)
    inside = np.zeros(mask.shape, bool)
    inside[y0 + 8 : y1 - 8] = True
    inside &= (r_flat.alpha > 0.99) & (r_band.alpha > 0.99)
    assert inside.sum() > 500
    darker = r_flat.bgr[inside].astype(float).mean() - r_band.bgr[inside].astype(float).mean()
    assert darker > 10
    # outside the shadow the light is the same (within the blur's reach of the band's edges)
    above = np.zeros(mask.shape, bool)
    above[int(SY + 0.15 * SHOULDER) : y0 - 20] = True
    above &= r_flat.alpha > 0.99
    assert above.sum() > 500
    lift = r_band.bgr[above].astype(float).mean() - r_flat.bgr[above].astype(float).mean()
    assert abs(lift) < 0.5 * darker


# ---------------------------------------------------------------------------------------------------------------
# Stability and robustness


def test_a_one_pixel_keypoint_step_moves_the_anchors_by_about_one_pixel(tshirt: Item, dress: Item) -> None:
    kp = standing()
    for item in (tshirt, dress):
        base = place_garment(kp, item)
        shifted = kp.copy()
        shifted[:, 0] += 1.0
        moved = place_garment(shifted, item)
        for name in base:  # the whole body moves 1 px: every anchor moves exactly 1 px
            np.testing.assert_allclose(moved[name] - base[name], [1.0, 0.0], atol=1e-9)
        worst: dict[str, float] = dict.fromkeys(base, 0.0)
        for index in (0, L_SH, R_SH, L_EL, R_EL, L_HIP, R_HIP):
            for step in ((1.0, 0.0), (0.0, 1.0), (-0.7, 0.7)):
                nudged = kp.copy()
                nudged[index, :2] += step
                after = place_garment(nudged, item)
                for name in base:
                    worst[name] = max(worst[name], float(np.linalg.norm(after[name] - base[name])))
        assert 0.9 < worst["left_shoulder"] < 1.1 and 0.9 < worst["right_shoulder"] < 1.1
        if item.category == "top":
            assert max(worst.values()) < 1.2  # no amplification
        else:  # a knee-length hem is two torso lengths down the torso's axis: a lever, still under 2 px
            assert max(v for n, v in worst.items() if not n.endswith("hem")) < 1.2
            assert max(worst["left_hem"], worst["right_hem"]) < 1.8


def test_a_one_pixel_shift_of_the_scene_shifts_the_garment_by_one_pixel(tshirt: Item) -> None:
    kp = standing()
    mask = person_mask(kp)
    shifted_kp = kp.copy()
    shifted_kp[:, 0] += 1.0
    shifted_mask = np.zeros_like(mask)
    shifted_mask[:, 1:] = mask[:, :-1]
    a = render_garment(scene_for(kp, mask), tshirt).alpha
    b = render_garment(scene_for(shifted_kp, shifted_mask), tshirt).alpha
    assert a.sum() > 1000
    assert np.abs(b[:, 1:] - a[:, :-1]).max() < 0.05


def test_rendering_is_deterministic(data_dir: Path, tshirt: Item) -> None:
    scene = scene_for(standing())
    first, second = render_garment(scene, tshirt), render_garment(scene, tshirt)
    fresh = render_garment(scene, load_item(data_dir, "t-shirt"))  # a new Item: analysed again, not cached
    for other in (second, fresh):
        assert np.array_equal(first.bgr, other.bgr) and np.array_equal(first.alpha, other.alpha)
        assert all(np.array_equal(first.placed[k], other.placed[k]) for k in first.placed)
    assert first.alpha.max() == pytest.approx(1.0)


def unchanged(scene: Scene, result: Rendered) -> bool:
    return bool(
        np.array_equal(result.bgr, scene.bgr) and not result.alpha.any() and result.alpha.shape == scene.bgr.shape[:2]
    )


@pytest.mark.parametrize(
    "change",
    ["left shoulder hidden", "right shoulder hidden", "shoulder nan", "no keypoints", "too few"],
)
def test_the_frame_is_unchanged_when_there_is_no_body_to_wear_it(tshirt: Item, change: str) -> None:
    kp = standing()
    keypoints: np.ndarray | None = kp
    if change == "left shoulder hidden":
        kp[L_SH, 2] = 0.3
    elif change == "right shoulder hidden":
        kp[R_SH, 2] = 0.49
    elif change == "hip hidden":
        kp[R_HIP, 2] = 0.2
    elif change == "shoulder nan":
        kp[L_SH, 0] = np.nan
    elif change == "no keypoints":
        keypoints = None
    else:
        keypoints = kp[:10]
    scene = Scene(bgr=frame_for(person_mask(standing())), keypoints=keypoints, mask=person_mask(standing()))
    result = render_garment(scene, tshirt)
    assert unchanged(scene, result)
    assert place_garment(keypoints, tshirt) == {}


def test_a_visible_body_is_not_left_unchanged(tshirt: Item) -> None:
    """The control for the test above: the same scene with everything visible gets the garment."""
    scene = scene_for(standing())
    assert not unchanged(scene, render_garment(scene, tshirt))


def test_items_it_cannot_wear_leave_the_frame_unchanged(tshirt: Item) -> None:
    scene = scene_for(standing())
    hat = Item("hat", "hat", "hat", tshirt.image, dict(tshirt.anchors))
    no_anchors = Item("bad", "top", "bad", tshirt.image, {"collar": (1.0, 2.0)})
    flat = Item("flat", "top", "flat", tshirt.image, {k: (10.0, 10.0) for k in tshirt.anchors})
    for item in (hat, no_anchors, flat):
        assert unchanged(scene, render_garment(scene, item))


def test_no_mask_and_odd_keypoints_do_not_raise(tshirt: Item) -> None:
    kp = standing()
    kp[[L_EL, L_WR, 17, 19, 21]] = np.nan  # a lost arm
    kp[0] = np.nan  # and no nose
    kp[R_HIP, :2] = kp[L_HIP, :2] + 1e-3  # hips on top of each other
    scene = Scene(bgr=frame_for(person_mask(standing())), keypoints=kp, mask=None)
    result = render_garment(scene, tshirt)
    assert result.alpha.max() > 0.9  # still placed: shoulders and hips are there
    far = kp.copy()
    far[:, :2] += 5000.0  # a body entirely off the frame
    assert unchanged(Scene(bgr=scene.bgr, keypoints=far), render_garment(Scene(bgr=scene.bgr, keypoints=far), tshirt))


def test_a_back_view_is_placed_mirrored(tshirt: Item) -> None:
    """Seen from behind the subject's left shoulder is on the image left: each anchor still goes to its own side
    (so the garment comes out mirrored), and the picture is the front view's mirror image."""
    front = standing()
    back = front.copy()
    back[:, 0] = (WIDTH - 1) - front[:, 0]  # same labels, mirrored positions
    assert back[L_SH, 0] < back[R_SH, 0]
    placed_front, placed_back = place_garment(front, tshirt), place_garment(back, tshirt)
    w = SHOULDER
    for name, index in (("left_shoulder", L_SH), ("right_shoulder", R_SH)):
        assert np.linalg.norm(placed_back[name] - back[index, :2]) < 0.05 * w
    for name in placed_front:
        np.testing.assert_allclose(placed_back[name], [(WIDTH - 1) - placed_front[name][0], placed_front[name][1]])
    mask = person_mask(front)
    r_front = render_garment(scene_for(front, mask), tshirt)
    r_back = render_garment(scene_for(back, np.ascontiguousarray(mask[:, ::-1])), tshirt)
    assert r_back.alpha.sum() == pytest.approx(r_front.alpha.sum(), rel=0.02)
    difference = np.abs(r_back.alpha - r_front.alpha[:, ::-1])
    assert difference.mean() < 1e-3 and (difference > 0.5).sum() < 20  # sleeves flipped too: ~900 px


def test_an_upper_body_shot_without_hips_still_wears_the_top(tshirt: Item) -> None:
    """A webcam at a desk: hips out of view. Predicted hips far off (or none) -> hips estimated below the shoulders."""
    kp = standing()
    shoulder_width = float(np.hypot(*(kp[L_SH, :2] - kp[R_SH, :2])))
    kp[[L_HIP, R_HIP], 2] = 0.05  # out of view
    kp[[L_HIP, R_HIP], 1] += 5 * shoulder_width  # and predicted implausibly far down
    result = render_garment(scene_for(kp), tshirt)
    assert result.alpha.sum() > 1000
    assert np.linalg.norm(result.placed["left_shoulder"] - kp[L_SH, :2]) < 0.05 * shoulder_width
    hem_y = (result.placed["left_hem"][1] + result.placed["right_hem"][1]) / 2
    shoulder_y = (kp[L_SH, 1] + kp[R_SH, 1]) / 2
    assert 1.0 * shoulder_width < hem_y - shoulder_y < 2.2 * shoulder_width  # a torso's length, not 5 widths
