"""Shoes, rings and watches (streams/tryon/extremities.py) on synthetic keypoints and hands built here, on the
yoga photo's reference BlazePose keypoints, with product images drawn here with OpenCV."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from streams.tryon import extremities as ex
from streams.tryon.catalogue import Item
from streams.tryon.scene import HandView, Rendered, Scene

# ---------------------------------------------------------------------------------------------- test products


def sneaker_item() -> Item:
    """A sneaker side view, toe to the image right (420 x 220); heel / toe at the back and front of the sole."""
    img = np.zeros((220, 420, 4), np.uint8)
    upper = [(22, 168), (18, 120), (22, 60), (40, 52), (70, 56), (110, 74), (145, 62), (160, 40), (182, 44)]
    upper += [(196, 70), (250, 100), (320, 122), (372, 134), (398, 146), (408, 160), (408, 170)]
    cv2.fillPoly(img, [np.array(upper, np.int32)], (30, 50, 130, 255), cv2.LINE_AA)
    heel_panel = np.array([(22, 168), (18, 120), (24, 80), (70, 110), (80, 168)], np.int32)
    toe_cap = np.array([(340, 128), (372, 134), (398, 146), (408, 160), (408, 170), (330, 170)], np.int32)
    cv2.fillPoly(img, [heel_panel, toe_cap], (22, 36, 100, 255), cv2.LINE_AA)
    collar = np.array([(22, 60), (40, 52), (70, 56), (110, 74), (145, 62)], np.int32)
    cv2.polylines(img, [collar], False, (200, 60, 40, 255), 5, cv2.LINE_AA)
    cv2.ellipse(img, (230, 150), (120, 45), -8, 190, 330, (235, 235, 240, 255), 9, cv2.LINE_AA)
    for i in range(5):
        x, y = 170 + 18 * i, 56 + 11 * i
        cv2.line(img, (x - 10, y + 12), (x + 12, y - 6), (245, 245, 245, 255), 4, cv2.LINE_AA)
    sole = np.array([(12, 166), (412, 164), (418, 176), (408, 192), (30, 194), (14, 186)], np.int32)
    cv2.fillPoly(img, [sole], (238, 236, 228, 255), cv2.LINE_AA)
    cv2.line(img, (16, 182), (412, 180), (180, 176, 168, 255), 3, cv2.LINE_AA)
    anchors = {"heel": (13.0, 178.0), "toe": (417.0, 175.0)}
    return Item("test-sneaker", "shoes", "Test sneaker", img, anchors, size_mm={"length": 290.0})


def boot_item() -> Item:
    """A tall plain boot (a solid shape reaching far above any ankle), toe to the image right."""
    img = np.zeros((400, 300, 4), np.uint8)
    cv2.fillPoly(
        img,
        [np.array([(10, 390), (10, 10), (110, 10), (120, 300), (290, 330), (290, 390)], np.int32)],
        (90, 60, 30, 255),
    )
    return Item("test-boot", "shoes", "Test boot", img, {"heel": (10.0, 370.0), "toe": (290.0, 370.0)})


def ring_item(**params: object) -> Item:
    """A gold band seen from above on a finger (worn top view, 120 x 60; band 22 px = 4 mm) with a white stone."""
    img = np.zeros((60, 120, 4), np.uint8)
    for y in range(19, 41):
        light = 1.0 - 0.55 * ((y - 30) / 11.0) ** 2
        cv2.line(img, (10, y), (110, y), (int(250 * light), int(200 * light), int(70 * light), 255), 1)
    cv2.circle(img, (60, 30), 12, (200, 170, 60, 255), -1, cv2.LINE_AA)
    cv2.circle(img, (60, 30), 9, (235, 245, 255, 255), -1, cv2.LINE_AA)
    anchors = {"band_left": (10.0, 30.0), "band_right": (110.0, 30.0)}
    return Item("test-ring", "ring", "Test ring", img, anchors, size_mm={"band_width": 4.0}, params=dict(params))


def watch_item(**params: object) -> Item:
    """A watch with its leather strap laid flat (480 x 120, 2 px per mm: strap 20 mm, case 42 mm), white dial."""
    img = np.zeros((120, 480, 4), np.uint8)
    cv2.rectangle(img, (10, 40), (470, 80), (120, 70, 35, 255), -1)
    for x in range(340, 460, 18):
        cv2.circle(img, (x, 60), 3, (50, 30, 15, 255), -1, cv2.LINE_AA)
    cv2.rectangle(img, (30, 36), (48, 84), (200, 200, 205, 255), 3)  # buckle
    cv2.circle(img, (240, 60), 42, (190, 190, 195, 255), -1, cv2.LINE_AA)  # case
    cv2.circle(img, (240, 60), 35, (250, 250, 248, 255), -1, cv2.LINE_AA)  # dial
    for k in range(12):
        a = k * math.pi / 6
        p1 = (round(240 + 30 * math.sin(a)), round(60 - 30 * math.cos(a)))
        p2 = (round(240 + 25 * math.sin(a)), round(60 - 25 * math.cos(a)))
        cv2.line(img, p1, p2, (30, 30, 30, 255), 2, cv2.LINE_AA)
    cv2.line(img, (240, 60), (240, 36), (20, 20, 20, 255), 3, cv2.LINE_AA)
    cv2.line(img, (240, 60), (258, 68), (20, 20, 20, 255), 3, cv2.LINE_AA)
    cv2.circle(img, (240, 33), 4, (255, 0, 0, 255), -1)  # a red mark at the image's top of the dial
    anchors = {"band_left": (10.0, 60.0), "band_right": (470.0, 60.0)}
    size = {"case_width": 42.0, "band_width": 20.0}
    return Item("test-watch", "watch", "Test watch", img, anchors, size_mm=size, params=dict(params))


# ------------------------------------------------------------------------------------------ synthetic people


def frame(width: int = 400, height: int = 400) -> np.ndarray:
    return np.full((height, width, 3), 120, np.uint8)


def standing_keypoints(toes: str = "right", foot: float = 60.0) -> np.ndarray:
    """A person seen from the side, feet on the ground at y = 340, both pointing to the image `toes` side."""
    kps = np.zeros((33, 4), np.float32)
    kps[:, 2:] = 0.99
    d = 1.0 if toes == "right" else -1.0
    for ankle, heel, index, knee, x in ((27, 29, 31, 25, 140.0), (28, 30, 32, 26, 250.0)):
        kps[knee, :2] = (x + 0.1 * foot * d, 340 - 3.2 * foot)
        kps[ankle, :2] = (x + 0.2 * foot * d, 340 - 0.45 * foot)
        kps[heel, :2] = (x, 340 - 0.1 * foot)
        kps[index, :2] = (x + foot * d, 340 - 0.05 * foot)
    return kps


PALM = 100.0  # wrist -> middle MCP, px
# A right hand, palm to the camera, fingers up, in palm lengths from the wrist (x right, y down): the index is on
# the image right of the pinky. Each finger: MCP, PIP, DIP, tip.
_RIGHT_PALM_UP = {
    0: (0.0, 0.0),
    1: (0.25, -0.15),
    2: (0.45, -0.3),
    3: (0.6, -0.45),
    4: (0.72, -0.6),
}
for _mcp, _x in ((5, 0.3), (9, 0.1), (13, -0.1), (17, -0.28)):
    for _k, _y in enumerate((-0.95, -1.4, -1.68, -1.9)):
        _RIGHT_PALM_UP[_mcp + _k] = (_x * (1 + 0.1 * _k), _y + (0.1 if _mcp == 17 else 0.0))


def hand_points(
    handedness: str = "Right", facing: str = "back", wrist: tuple[float, float] = (200.0, 330.0)
) -> np.ndarray:
    """(21, 3) points of a flat hand with fingers up, its palm or its back to the camera (z = 0)."""
    mirror = (handedness == "Right") == (facing == "back")  # a right hand's back looks like a left hand's palm
    pts = np.zeros((21, 3), np.float64)
    for i, (x, y) in _RIGHT_PALM_UP.items():
        pts[i] = (wrist[0] + (-x if mirror else x) * PALM, wrist[1] + y * PALM, 0.0)
    return pts


def hand_scene(points: np.ndarray, handedness: str = "Right", keypoints: np.ndarray | None = None) -> Scene:
    return Scene(frame(), keypoints=keypoints, hands=[HandView(handedness, points.astype(np.float32))])


def distance_to_segment(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    t = float(np.clip((p - a) @ (b - a) / ((b - a) @ (b - a)), 0.0, 1.0))
    return float(np.linalg.norm(p - (a + t * (b - a))))


def at(r: Rendered, p: np.ndarray) -> float:
    return float(r.alpha[round(float(p[1])), round(float(p[0]))])


# --------------------------------------------------------------------------------------------------- shoes


@pytest.mark.parametrize("foot", [60.0, 25.0])
def test_each_shoe_goes_from_behind_the_heel_to_beyond_the_foot_index_and_holds_the_ankle(foot: float) -> None:
    kps = standing_keypoints("right", foot)
    r = ex.render_shoes(Scene(frame(), keypoints=kps), sneaker_item())
    assert set(r.placed) == {"left_toe", "left_heel", "right_toe", "right_heel"}
    for side, (ankle, heel, index, _) in ex.FEET.items():
        u = kps[index, :2] - kps[heel, :2]
        e = u / np.linalg.norm(u)
        placed_heel, placed_toe = r.placed[f"{side}_heel"], r.placed[f"{side}_toe"]
        # the heel anchor: SHOE_HEEL_BEHIND behind the heel keypoint, dropped towards the ground (documented)
        assert np.linalg.norm(placed_heel - kps[heel, :2]) < 0.3 * foot
        assert (placed_heel - kps[heel, :2]) @ e == pytest.approx(-ex.SHOE_HEEL_BEHIND * foot, abs=0.03 * foot)
        beyond = (placed_toe - kps[index, :2]) @ e
        assert 0.15 * foot < beyond < 0.45 * foot  # the toe beyond the foot index, along heel -> toe
        assert at(r, kps[ankle, :2]) > 0.5  # the ankle inside the upper
        assert at(r, kps[heel, :2]) > 0.9 and at(r, kps[index, :2]) > 0.9  # the foot covered
    assert r.bgr.dtype == np.uint8 and r.alpha.dtype == np.float32 and r.alpha.shape == (400, 400)


def test_a_foot_pointing_the_other_way_gets_the_mirrored_shoe() -> None:
    item = sneaker_item()
    right = ex.render_shoes(Scene(frame(), keypoints=standing_keypoints("right")), item)
    mirrored = standing_keypoints("right")
    mirrored[:, 0] = 399.0 - mirrored[:, 0]  # the same person seen in a mirror: feet pointing left
    left = ex.render_shoes(Scene(frame(), keypoints=mirrored), item)
    assert left.placed["left_toe"][0] < left.placed["left_heel"][0]
    assert np.abs(left.alpha - right.alpha[:, ::-1]).mean() < 0.01  # the mirror image of the other rendering
    for r in (right, left):  # the low toe box at the toe, the tall heel counter at the heel, in both
        heel, toe = round(r.placed["left_heel"][0]), round(r.placed["left_toe"][0])
        fifth = (toe - heel) // 5
        assert (
            r.alpha[:, heel : heel + fifth : np.sign(fifth)].sum()
            > 1.5 * r.alpha[:, toe - fifth : toe : np.sign(fifth)].sum()
        )


def test_a_hidden_foot_gets_no_shoe() -> None:
    kps = standing_keypoints()
    kps[30, 2] = 0.3  # right heel not visible
    r = ex.render_shoes(Scene(frame(), keypoints=kps), sneaker_item())
    assert set(r.placed) == {"left_toe", "left_heel"}
    assert r.alpha[:, 230:].max() == 0.0
    assert r.alpha[:, :230].max() > 0.9


def test_nothing_of_a_tall_shoe_is_drawn_above_the_ankle_line() -> None:
    kps = standing_keypoints(foot=60.0)
    r = ex.render_shoes(Scene(frame(), keypoints=kps), boot_item())
    for ankle, knee in ((27, 25), (28, 26)):
        leg = kps[knee, :2] - kps[ankle, :2]
        leg /= np.linalg.norm(leg)
        line = kps[ankle, :2] + (ex.SHOE_CLIP_ABOVE_ANKLE * 60.0 + 1.5) * leg
        assert at(r, line - 3 * leg) > 0.5  # just below the line: boot
        assert at(r, line + 3 * leg) == 0.0  # above it: the trousers stay
    assert r.alpha[: round(340 - 0.45 * 60 - 0.15 * 60 - 3)].max() == 0.0


def test_shoes_on_the_reference_yoga_keypoints(data_dir: Path) -> None:
    folder = data_dir / "keypoints" / "tfjs_pose_yoga"
    ref = json.loads((folder / "pose_blazepose33.json").read_text())
    w, h = ref["width"], ref["height"]
    marks = ref["mediapipe_expected_pose_landmarks_normalized"]["landmarks"]
    kps = np.array([(m["x"] * w, m["y"] * h, m["visibility"], m["presence"]) for m in marks], np.float32)
    image = cv2.imread(str(folder / "pose.jpg"), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[:2] == (h, w)
    r = ex.render_shoes(Scene(image, keypoints=kps), sneaker_item())
    assert set(r.placed) == {"left_toe", "left_heel", "right_toe", "right_heel"}
    for side, (ankle, heel, index, knee) in ex.FEET.items():
        u = kps[index, :2] - kps[heel, :2]
        foot = float(np.linalg.norm(u))
        e = u / foot
        size = max(foot, ex.FOOT_PER_SHIN * float(np.linalg.norm(kps[knee, :2] - kps[ankle, :2])))  # foreshortening
        assert np.linalg.norm(r.placed[f"{side}_heel"] - kps[heel, :2]) < 0.3 * size
        assert (r.placed[f"{side}_toe"] - kps[index, :2]) @ e > 0.15 * foot
        assert at(r, kps[heel, :2]) > 0.9 and at(r, kps[index, :2]) > 0.9
    # the left foot points to the image right, the right one to the left: toes on opposite sides of the heels
    assert r.placed["left_toe"][0] > r.placed["left_heel"][0]
    assert r.placed["right_toe"][0] < r.placed["right_heel"][0]
    assert r.alpha[: int(kps[25:27, 1].max())].max() == 0.0  # nothing at the knees or above
    changed = np.any(r.bgr != image, axis=2)
    assert changed.any() and not changed[r.alpha == 0].any()


# ---------------------------------------------------------------------------------------------------- rings


def _axis_and_lateral(pts: np.ndarray, mcp: int, pip: int) -> tuple[np.ndarray, np.ndarray]:
    axis = (pts[pip, :2] - pts[mcp, :2]) / np.linalg.norm(pts[pip, :2] - pts[mcp, :2])
    return axis, np.array([-axis[1], axis[0]])


@pytest.mark.parametrize(("finger", "joints"), [("ring", (13, 14)), ("index", (5, 6)), ("little", (17, 18))])
def test_the_ring_sits_across_the_chosen_finger_between_mcp_and_pip(finger: str, joints: tuple[int, int]) -> None:
    pts = hand_points("Right", "back")
    r = ex.render_ring(hand_scene(pts), ring_item(finger=finger))
    mcp, pip = pts[joints[0], :2], pts[joints[1], :2]
    centre = r.placed["centre"]
    assert distance_to_segment(centre, mcp, pip) < 0.5
    assert np.linalg.norm(centre - mcp) == pytest.approx(ex.RING_POSITION * np.linalg.norm(pip - mcp), abs=1.0)
    across = r.placed["band_right"] - r.placed["band_left"]
    axis, lateral = _axis_and_lateral(pts, *joints)
    assert abs(across @ axis) < 0.02 * np.linalg.norm(across)  # perpendicular to the finger
    finger_width = 0.17 * PALM * ex.FINGER_WIDTH[finger] / ex.FINGER_WIDTH["index"]
    assert 0.85 * finger_width < np.linalg.norm(across) < 1.25 * finger_width
    # drawn on the finger, only within its width: nothing beyond the band's ends, nothing at the PIP
    assert at(r, centre) > 0.9
    half = np.linalg.norm(across) / 2
    assert at(r, centre + (half + 2) * lateral) == 0.0 and at(r, centre - (half + 2) * lateral) == 0.0
    assert at(r, pip) == 0.0
    assert r.alpha[r.alpha > 0].size < 3 * np.linalg.norm(across) * 8  # a band, not a blob


def test_the_ring_goes_on_the_hand_asked_for() -> None:
    left = hand_points("Left", "back", wrist=(100.0, 330.0))
    right = hand_points("Right", "back", wrist=(300.0, 330.0))
    hands = [HandView("Left", left.astype(np.float32)), HandView("Right", right.astype(np.float32))]
    scene = Scene(frame(), hands=hands)
    on_right = ex.render_ring(scene, ring_item(hand="Right"))
    assert distance_to_segment(on_right.placed["centre"], right[13, :2], right[14, :2]) < 0.5
    on_any = ex.render_ring(scene, ring_item())
    assert distance_to_segment(on_any.placed["centre"], left[13, :2], left[14, :2]) < 0.5
    only_left = Scene(frame(), hands=hands[:1])
    assert ex.render_ring(only_left, ring_item(hand="Right")).placed == {}


def test_a_finger_in_front_hides_the_ring_and_one_behind_does_not() -> None:
    rendered = {}
    for z in (-40.0, 40.0):
        pts = hand_points("Right", "back")
        ring_at = pts[13] + ex.RING_POSITION * (pts[14] - pts[13])
        # the middle finger bent across the ring finger at the ring, in front of it (z < 0) or behind it
        pts[10] = pts[9] + (0.0, 0.25 * PALM, 0.0)
        pts[10, :2] = ring_at[:2] + np.array([-0.2 * PALM, 0.0])
        pts[11, :2] = ring_at[:2] + np.array([0.25 * PALM, 0.0])
        pts[12, :2] = ring_at[:2] + np.array([0.45 * PALM, 0.0])
        pts[10:13, 2] = z
        rendered[z] = (ex.render_ring(hand_scene(pts), ring_item()), ring_at[:2])
    (front, p), (behind, _) = rendered[-40.0], rendered[40.0]
    assert at(behind, p) > 0.9
    assert at(front, p) == 0.0
    assert front.alpha.sum() < 0.3 * behind.alpha.sum()


@pytest.mark.parametrize("tilt", [1.0, -1.0])
def test_only_the_front_arc_of_the_band_is_drawn(tilt: float) -> None:
    """A finger leaning away from the camera (z growing towards the tip) shows the band's front arc bulging towards
    the fingertip; leaning towards the camera, towards the wrist."""
    pts = hand_points("Right", "back")
    pts[14:17, 2] = tilt * np.array([60.0, 90.0, 110.0])
    r = ex.render_ring(hand_scene(pts), ring_item())
    axis, _ = _axis_and_lateral(pts, 13, 14)
    ys, xs = np.nonzero(r.alpha > 0.05)
    w = r.alpha[ys, xs]
    centroid = np.array([(xs * w).sum(), (ys * w).sum()]) / w.sum()
    shift = (centroid - r.placed["centre"]) @ axis
    assert tilt * shift > 1.0
    flat = ex.render_ring(hand_scene(hand_points("Right", "back")), ring_item())
    assert abs(flat.alpha.sum() - r.alpha.sum()) < 0.6 * flat.alpha.sum()


@pytest.mark.parametrize("handedness", ["Right", "Left"])
def test_the_stone_shows_on_the_back_of_the_hand_and_the_plain_band_on_the_palm_side(handedness: str) -> None:
    whites = {}
    for facing in ("back", "palm"):
        r = ex.render_ring(hand_scene(hand_points(handedness, facing), handedness), ring_item())
        assert at(r, r.placed["centre"]) > 0.9
        solid = r.alpha > 0.95
        whites[facing] = int((r.bgr[solid][:, 0] > 170).sum())  # the stone is white; gold has little blue
    assert whites["back"] > 5
    assert whites["palm"] == 0


# -------------------------------------------------------------------------------------------------- watches


def _arm_keypoints(pts: np.ndarray, side: str, elbow_offset: tuple[float, float] = (0.0, 250.0)) -> np.ndarray:
    kps = np.zeros((33, 4), np.float32)
    wrist, elbow, index, pinky = ex.POSE_ARMS[side]
    kps[wrist] = (*pts[0, :2], 0.99, 0.99)
    kps[elbow] = (pts[0, 0] + elbow_offset[0], pts[0, 1] + elbow_offset[1], 0.99, 0.99)
    kps[index] = (*pts[5, :2], 0.99, 0.99)
    kps[pinky] = (*pts[17, :2], 0.99, 0.99)
    return kps


@pytest.mark.parametrize("handedness", ["Left", "Right"])
def test_the_watch_sits_across_the_forearm_just_above_the_wrist(handedness: str) -> None:
    pts = hand_points(handedness, "back", wrist=(200.0, 200.0))
    kps = _arm_keypoints(pts, handedness, elbow_offset=(60.0, 240.0))  # forearm going down and a bit right
    r = ex.render_watch(hand_scene(pts, handedness, kps), watch_item())
    forearm = np.array([60.0, 240.0]) / math.hypot(60.0, 240.0)
    centre = r.placed["centre"]
    from_wrist = centre - pts[0, :2]
    wrist_width = 0.5 * PALM
    assert 0.15 * wrist_width < from_wrist @ forearm < 0.6 * wrist_width  # towards the elbow, close to the wrist
    assert abs(from_wrist @ np.array([-forearm[1], forearm[0]])) < 1.0  # on the forearm's axis
    across = r.placed["band_right"] - r.placed["band_left"]
    assert abs(across @ forearm) < 0.02 * np.linalg.norm(across)  # across the forearm
    assert 0.8 * wrist_width < np.linalg.norm(across) < 1.3 * wrist_width
    assert at(r, centre) > 0.9
    assert at(r, pts[0, :2] - 0.3 * wrist_width * forearm) == 0.0  # not on the hand
    assert at(r, centre + 1.2 * wrist_width * forearm) == 0.0  # nor up the forearm
    # the image's up points to the hand on the left wrist (a watch's 3 o'clock for a strap drawn vertically)
    # and to the elbow on the right wrist: the watch is seen from above, not mirrored
    red = (r.bgr[:, :, 2] > 180) & (r.bgr[:, :, 1] < 90) & (r.bgr[:, :, 0] < 90)
    ys, xs = np.nonzero(red)
    assert len(xs) > 3
    towards_elbow = (np.array([xs.mean(), ys.mean()]) - centre) @ forearm
    assert towards_elbow < -2 if handedness == "Left" else towards_elbow > 2


def test_the_face_shows_on_the_back_of_the_wrist_and_the_strap_on_the_palm_side() -> None:
    dial = {}
    for facing in ("back", "palm"):
        pts = hand_points("Left", facing, wrist=(200.0, 200.0))
        r = ex.render_watch(hand_scene(pts, "Left"), watch_item())
        assert at(r, r.placed["centre"]) > 0.9
        solid = r.alpha > 0.95
        dial[facing] = int((r.bgr[solid].min(axis=1) > 225).sum())  # the dial is white, strap and buckle are not
    assert dial["back"] > 20
    assert dial["palm"] == 0


def test_the_watch_follows_the_hand_axis_without_a_pose_and_the_pose_without_hands() -> None:
    pts = hand_points("Left", "back", wrist=(200.0, 200.0))
    r = ex.render_watch(hand_scene(pts, "Left"), watch_item())
    assert r.placed["centre"][1] > pts[0, 1] + 5  # below the wrist: the hand points up, the forearm down
    kps = _arm_keypoints(pts, "Left", elbow_offset=(240.0, 0.0))  # forearm to the right, no hand landmarks
    r = ex.render_watch(Scene(frame(), keypoints=kps), watch_item())
    assert r.placed["centre"][0] > pts[0, 0] + 5 and abs(r.placed["centre"][1] - pts[0, 1]) < 1.0
    across = r.placed["band_right"] - r.placed["band_left"]
    assert abs(across[0]) < 0.02 * np.linalg.norm(across)


# ---------------------------------------------------------------------------------------------- no perception


def _unchanged(r: Rendered, scene: Scene) -> None:
    assert np.array_equal(r.bgr, scene.bgr)
    assert r.alpha.shape == scene.bgr.shape[:2] and r.alpha.max() == 0.0
    assert r.placed == {}


def test_without_feet_or_hands_the_frame_is_unchanged() -> None:
    empty = Scene(frame())
    for render, item in (
        (ex.render_shoes, sneaker_item()),
        (ex.render_ring, ring_item()),
        (ex.render_watch, watch_item()),
    ):
        _unchanged(render(empty, item), empty)
    hidden = standing_keypoints()
    hidden[27:33, 2] = 0.1
    _unchanged(ex.render_shoes(Scene(frame(), keypoints=hidden), sneaker_item()), Scene(frame()))
    no_arms = Scene(frame(), keypoints=hidden)
    _unchanged(ex.render_watch(no_arms, watch_item()), no_arms)


@pytest.mark.parametrize(
    "scene",
    [
        Scene(frame(), keypoints=np.full((33, 4), np.nan, np.float32)),
        Scene(frame(), keypoints=np.zeros((5, 2), np.float32)),
        Scene(frame(), hands=[HandView("Left", np.full((21, 3), np.nan, np.float32))]),
        Scene(frame(), hands=[HandView("Right", np.zeros((4, 3), np.float32))]),
        Scene(frame(), hands=[HandView("Right", np.zeros((21, 3), np.float32))]),  # every point at one spot
    ],
)
def test_broken_perception_leaves_the_frame_unchanged(scene: Scene) -> None:
    for render, item in (
        (ex.render_shoes, sneaker_item()),
        (ex.render_ring, ring_item()),
        (ex.render_watch, watch_item()),
    ):
        _unchanged(render(scene, item), scene)


def test_a_broken_item_leaves_the_frame_unchanged() -> None:
    scene = Scene(frame(), keypoints=standing_keypoints(), hands=[HandView("Right", hand_points().astype(np.float32))])
    good = ring_item()
    broken = [
        Item("x", "ring", "x", good.image, {}),
        Item("x", "ring", "x", good.image[:, :, :3], good.anchors),
        Item("x", "ring", "x", np.zeros((60, 120, 4), np.uint8), good.anchors),
        Item("x", "ring", "x", good.image, {"band_left": (5.0, 5.0), "band_right": (5.0, 5.0)}),
    ]
    for item in broken:
        for render in (ex.render_shoes, ex.render_ring, ex.render_watch):
            _unchanged(render(scene, item), scene)
