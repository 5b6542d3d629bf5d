import math
from collections.abc import Sequence

import cv2
import numpy as np
import pytest

from streams.vision import hands as hd
from streams.vision import ssd
from streams.vision.geometry import Square

# ----------------------------------------------------------------------------------------------- ROI geometry


def _palm(
    box: tuple[float, float, float, float], wrist: tuple[float, float], mcp: tuple[float, float]
) -> ssd.Detection:
    keypoints = np.zeros((7, 2), np.float32)
    keypoints[0], keypoints[2] = wrist, mcp
    return ssd.Detection(0.9, np.array(box, np.float32), keypoints)


def test_palm_roi_of_a_hand_pointing_up_is_unrotated_scaled_and_shifted_towards_the_fingers() -> None:
    roi = hd.hand_roi_from_palm(_palm((80, 160, 120, 200), wrist=(100, 195), mcp=(100, 165)))
    assert roi.rotation == pytest.approx(0.0)
    assert roi.side == pytest.approx(2.6 * 40)
    assert (roi.cx, roi.cy) == pytest.approx((100.0, 180.0 - 0.5 * 40))


def test_palm_roi_of_a_hand_pointing_right_is_rotated_a_quarter_turn() -> None:
    roi = hd.hand_roi_from_palm(_palm((80, 160, 120, 200), wrist=(85, 180), mcp=(115, 180)))
    assert roi.rotation == pytest.approx(math.pi / 2)
    assert (roi.cx, roi.cy) == pytest.approx((100.0 + 0.5 * 40, 180.0))
    # the top of the crop (where the model expects the fingers) lies to the right of the palm
    top = roi.to_image(224) @ [112, 0, 1]
    assert top[0] > roi.cx + 0.4 * roi.side


def test_palm_roi_squares_on_the_long_side() -> None:
    roi = hd.hand_roi_from_palm(_palm((80, 160, 120, 220), wrist=(100, 215), mcp=(100, 165)))
    assert roi.side == pytest.approx(2.6 * 60)
    assert roi.cy == pytest.approx(190.0 - 0.5 * 60)


def _pose(
    side: str, wrist: tuple[float, float], index: tuple[float, float], pinky: tuple[float, float], vis: float = 0.9
) -> np.ndarray:
    kps = np.zeros((33, 4), np.float32)
    w, p, i = hd.POSE_HAND_POINTS[side]
    kps[w, :2], kps[i, :2], kps[p, :2] = wrist, index, pinky
    kps[[w, p, i], 2:] = vis
    return kps


def test_pose_roi_of_a_raised_hand_is_upright_around_the_estimated_middle_finger() -> None:
    kps = _pose("left", wrist=(100, 200), index=(95, 150), pinky=(110, 150))  # middle = (2 * index + pinky) / 3
    roi = hd.hand_roi_from_pose(kps, "left")
    assert roi is not None
    box = 2 * 50.0
    assert roi.rotation == pytest.approx(0.0)
    assert roi.side == pytest.approx(hd.POSE_ROI_SCALE * box)
    assert (roi.cx, roi.cy) == pytest.approx((100.0, 150.0 + hd.POSE_ROI_SHIFT_Y * box))
    assert hd.hand_roi_from_pose(kps, "right") is None  # the right hand's points are all zero, not visible


def test_pose_roi_of_a_hand_pointing_sideways_is_rotated() -> None:
    kps = _pose("right", wrist=(100, 200), index=(150, 195), pinky=(150, 210))
    roi = hd.hand_roi_from_pose(kps, "right")
    assert roi is not None
    assert roi.rotation == pytest.approx(math.pi / 2, abs=1e-6)
    assert roi.cx > 150.0  # shifted further along the hand, towards the fingers
    roi_left_pointing = hd.hand_roi_from_pose(_pose("right", (100, 200), (50, 205), (50, 190)), "right")
    assert roi_left_pointing is not None and roi_left_pointing.rotation == pytest.approx(-math.pi / 2, abs=1e-6)


def test_pose_roi_needs_a_visible_wrist() -> None:
    hidden = _pose("left", (100, 200), (95, 150), (110, 150), vis=0.05)
    hidden[:, 3] = 1.0  # present but not visible: still no ROI (MediaPipe thresholds the wrist's visibility)
    assert hd.hand_roi_from_pose(hidden, "left") is None
    assert hd.hand_roi_from_pose(_pose("left", (100, 200), (95, 150), (110, 150), vis=0.2), "left") is not None


# A hand in "crop units": wrist at the bottom, fingers pointing up (-y), palm about 1 unit wide.
CANONICAL = np.array(
    [
        [0.0, 0.5],  # wrist
        [-0.35, 0.35], [-0.55, 0.1], [-0.7, -0.1], [-0.8, -0.3],  # thumb
        [-0.3, -0.1], [-0.32, -0.45], [-0.33, -0.7], [-0.34, -0.9],  # index
        [0.0, -0.15], [0.0, -0.55], [0.0, -0.8], [0.0, -1.0],  # middle
        [0.3, -0.1], [0.32, -0.45], [0.33, -0.7], [0.34, -0.9],  # ring
        [0.45, 0.0], [0.5, -0.3], [0.53, -0.5], [0.55, -0.65],  # pinky
    ]
)  # fmt: skip


def _hand(cx: float, cy: float, scale: float, rotation: float = 0.0) -> np.ndarray:
    c, s = math.cos(rotation), math.sin(rotation)
    xy = CANONICAL @ np.array([[c, s], [-s, c]]) * scale + [cx, cy]  # rotate each point by `rotation` (y down)
    return np.concatenate([xy, np.zeros((21, 1))], axis=1).astype(np.float32)


def test_landmark_roi_of_an_upright_hand() -> None:
    roi = hd.hand_roi_from_landmarks(_hand(300, 200, 40))
    assert roi.rotation == pytest.approx(0.0, abs=1e-6)
    partial = CANONICAL[list(hd.TRACK_ROI_POINTS)] * 40 + [300, 200]
    width, height = np.ptp(partial, axis=0)
    assert roi.side == pytest.approx(2.0 * max(width, height))
    assert roi.cx == pytest.approx(partial[:, 0].min() + width / 2)
    assert roi.cy == pytest.approx(partial[:, 1].min() + height / 2 - 0.1 * height)


@pytest.mark.parametrize("angle", [0.7, math.pi / 2, -2.5])
def test_landmark_roi_turns_with_the_hand_and_holds_it(angle: float) -> None:
    points = _hand(300, 200, 40, angle)
    roi = hd.hand_roi_from_landmarks(points)
    assert math.cos(roi.rotation - angle) == pytest.approx(1.0, abs=2e-3)  # wrist -> MCPs direction
    assert roi.side == pytest.approx(hd.hand_roi_from_landmarks(_hand(300, 200, 40)).side, rel=1e-6)
    crop = points[:, :2] @ roi.to_crop(224)[:, :2].T + roi.to_crop(224)[:, 2]
    assert crop.min() > 0 and crop.max() < 224
    assert crop[12, 1] < crop[0, 1]  # the fingertips are above the wrist in the crop


def test_landmark_roi_rotation_aims_at_the_mean_of_index_middle_and_ring_mcps() -> None:
    points = _hand(300, 200, 40)
    points[[5, 9, 13], :2] = [[290, 150], [310, 150], [310, 150]]  # index MCP left, middle and ring MCP right
    target = ((points[5, :2] + points[13, :2]) / 2 + points[9, :2]) / 2  # (305, 150)
    wrist = points[0, :2]
    expected = math.pi / 2 - math.atan2(-(target[1] - wrist[1]), target[0] - wrist[0])
    assert hd.hand_roi_from_landmarks(points).rotation == pytest.approx(expected, abs=1e-6)


def test_roi_iou_ignores_rotation_like_mediapipe() -> None:
    a = Square(100, 100, 50)
    assert hd.roi_iou(a, Square(100, 100, 50, 1.0)) == pytest.approx(1.0)
    assert hd.roi_iou(a, Square(125, 100, 50)) == pytest.approx(25 * 50 / (2 * 2500 - 25 * 50))
    assert hd.roi_iou(a, Square(200, 100, 50)) == 0.0


# ------------------------------------------------------------------------------------------------ model I/O


def test_hand_input_is_the_roi_in_unit_range() -> None:
    image = np.zeros((200, 300, 3), np.uint8)
    image[90:110, 190:210] = 255
    crop = hd.hand_input(image, Square(200, 100, 40))
    assert crop.shape == (224, 224, 3) and crop.dtype == np.float32
    assert crop[112, 112].tolist() == [1.0, 1.0, 1.0]
    assert crop[5, 5].tolist() == [0.0, 0.0, 0.0]


def test_decode_landmarks_projects_crop_pixels_and_scales_z() -> None:
    raw = np.zeros((21, 3), np.float32)
    raw[0] = (112, 112, 10)  # crop centre
    raw[1] = (112, 0, 0)  # top centre of the crop
    roi = Square(100, 50, 112, rotation=math.pi / 2)
    pts = hd.decode_landmarks(raw.reshape(-1), roi)
    assert pts.shape == (21, 3) and pts.dtype == np.float32
    assert pts[0].tolist() == pytest.approx([100, 50, 10 * (112 / 224) / 0.4])
    assert pts[1, :2].tolist() == pytest.approx([100 + 56, 50])  # rotated: the crop's up is the image's +x


def test_handedness_label_is_left_for_high_scores() -> None:
    assert hd.handedness_label(0.9) == "Left"
    assert hd.handedness_label(0.1) == "Right"


def test_duplicate_needs_most_landmarks_close() -> None:
    a = _hand(300, 200, 40)
    assert hd.is_duplicate(a, a + 2)
    assert not hd.is_duplicate(a, a + np.array([60, 0, 0], np.float32))
    assert not hd.is_duplicate(a, _hand(300, 200, 40, math.pi))
    half = a.copy()
    half[9:, 0] += 30  # 9 of 21 landmarks coincide (MediaPipe needs 10) though the boxes overlap
    assert not hd.is_duplicate(a, half)
    assert hd.is_duplicate(a, np.concatenate([a[:10], half[10:]]))


# ------------------------------------------------------------------------------- tracking with fake models

W, H = 640, 480
RADIUS = 24


def _frame(*blobs: tuple[float, float]) -> np.ndarray:
    image = np.zeros((H, W, 3), np.uint8)
    for x, y in blobs:
        cv2.circle(image, (round(x), round(y)), RADIUS, (255, 255, 255), -1)
    return image


def _blobs(gray: np.ndarray) -> list[tuple[float, float, float]]:
    n, _, stats, centroids = cv2.connectedComponentsWithStats((gray > 0.5).astype(np.uint8))
    return [(*centroids[k], math.sqrt(stats[k, cv2.CC_STAT_AREA] / math.pi)) for k in range(1, n) if stats[k, 4] > 30]


class FakePalm:
    """Finds white discs in the letterboxed input and reports each as an upright palm at the nearest anchor."""

    def __init__(self) -> None:
        self.calls = 0
        self.anchors = ssd.anchors(hd.PALM_SIZE, ssd.PALM.strides) * hd.PALM_SIZE

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        assert batch.shape[1:] == (192, 192, 3) and batch.dtype == np.float32
        boxes = np.zeros((len(batch), 2016, 18), np.float32)
        scores = np.full((len(batch), 2016, 1), -20.0, np.float32)
        for b, image in enumerate(batch):
            for cx, cy, r in _blobs(image[..., 0]):
                a = int(np.argmin(np.linalg.norm(self.anchors - [cx, cy], axis=1)))
                ax, ay = self.anchors[a]
                boxes[b, a, :4] = (cx - ax, cy - ay, 2 * r, 2 * r)
                boxes[b, a, 4:] = np.tile([cx - ax, cy - ay], 7)
                boxes[b, a, 4:6] = (cx - ax, cy + r - ay)  # wrist below
                boxes[b, a, 8:10] = (cx - ax, cy - r - ay)  # middle MCP above
                scores[b, a] = 10.0
        return boxes, scores


class FakeLandmarks:
    """Puts an upright canonical hand on the white disc nearest the crop centre; no disc -> no hand."""

    def __init__(self, left: float = 0.9) -> None:
        self.calls = 0
        self.crops = 0
        self.left = left

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.calls += 1
        self.crops += len(batch)
        assert batch.shape[1:] == (224, 224, 3) and batch.dtype == np.float32
        m = len(batch)
        out = {
            "Identity": np.zeros((m, 63), np.float32),
            "Identity_1": np.zeros((m, 1), np.float32),
            "Identity_2": np.full((m, 1), self.left, np.float32),
            "Identity_3": np.zeros((m, 63), np.float32),
        }
        for j, crop in enumerate(batch):
            blobs = _blobs(crop[..., 0])
            if not blobs:
                continue
            cx, cy, r = min(blobs, key=lambda b: math.hypot(b[0] - 112, b[1] - 112))
            out["Identity"][j] = _hand(cx, cy, 2 * r).reshape(-1)  # the palm about as wide as the disc
            out["Identity_1"][j] = 0.95
        return out


def _run(
    images: Sequence[np.ndarray],
    tracks: Sequence[hd.HandTrack | None] | None = None,
    poses: Sequence[np.ndarray | None] | None = None,
    palm: FakePalm | None = None,
    marks: FakeLandmarks | None = None,
    **kwargs: object,
) -> tuple[list[list[hd.Hand]], list[hd.HandTrack], FakePalm, FakeLandmarks]:
    palm, marks = palm or FakePalm(), marks or FakeLandmarks()
    n = len(images)
    found, new = hd.track_hands(
        images,
        [0.0] * n,
        tracks if tracks is not None else [None] * n,
        poses if poses is not None else [None] * n,
        palm,
        marks,
        **kwargs,  # type: ignore[arg-type]
    )
    return found, new, palm, marks


def _near(hand: hd.Hand, x: float, y: float, tol: float = 6.0) -> bool:
    # the canonical hand's palm centre is about (0, 0.1) units from the disc centre
    return bool(np.linalg.norm(hand.points[[0, 5, 9, 13, 17], :2].mean(axis=0) - [x, y]) < tol + 0.2 * RADIUS)


def test_new_session_without_pose_finds_hands_by_palm_detection() -> None:
    found, tracks, palm, marks = _run([_frame((200, 300), (450, 250))])
    assert (palm.calls, marks.calls) == (1, 1)
    assert sorted(h.source for h in found[0]) == ["palm", "palm"]
    assert all(h.handedness == "Left" and h.points.shape == (21, 3) for h in found[0])
    assert any(_near(h, 200, 300) for h in found[0]) and any(_near(h, 450, 250) for h in found[0])
    assert len(tracks[0].rois) == 2 and len(tracks[0].filters) == 2


def test_tracking_uses_last_rois_and_skips_palm_detection() -> None:
    image = _frame((200, 300), (450, 250))
    _, first, _, _ = _run([image])
    found, again, palm, marks = _run([image], tracks=first)
    assert palm.calls == 0 and (marks.calls, marks.crops) == (1, 2)
    assert [h.source for h in found[0]] == ["track", "track"]
    assert [h.roi for h in found[0]] == first[0].rois
    assert len(again[0].rois) == 2


def test_a_single_tracked_hand_still_looks_for_the_second_without_duplicating_the_first() -> None:
    image = _frame((200, 300), (450, 250))
    _, first, _, _ = _run([image])
    one = hd.HandTrack(rois=first[0].rois[:1])
    found, _, palm, marks = _run([image], tracks=[one])
    assert palm.calls == 1  # fewer than max_hands tracked and no pose
    assert marks.crops == 2  # the palm found under the tracked ROI was associated with it, not looked at again
    assert sorted(h.source for h in found[0]) == ["palm", "track"]


def test_pose_gives_the_rois_and_skips_palm_detection() -> None:
    pose = _pose("left", wrist=(450, 290), index=(445, 250), pinky=(465, 250))
    pose[[16, 18, 20]] = _pose("right", wrist=(200, 340), index=(195, 300), pinky=(215, 300))[[16, 18, 20]]
    found, tracks, palm, marks = _run([_frame((200, 300), (450, 250))], poses=[pose])
    assert palm.calls == 0 and marks.calls == 1
    assert [h.source for h in found[0]] == ["pose", "pose"]
    assert _near(found[0][0], 450, 250) and _near(found[0][1], 200, 300)
    assert tracks[0].sides == ["left", "right"] and [h.side for h in found[0]] == ["left", "right"]


def test_a_lost_track_is_recovered_from_the_pose_in_the_same_batch() -> None:
    pose = _pose("left", wrist=(450, 290), index=(445, 250), pinky=(465, 250))
    stale = hd.HandTrack(rois=[Square(100, 100, 80)], sides=["left"], left=[0.9])  # the hand has moved away
    found, tracks, palm, marks = _run([_frame((450, 250))], tracks=[stale], poses=[pose])
    assert palm.calls == 0 and marks.calls == 2
    assert [h.source for h in found[0]] == ["pose"] and _near(found[0][0], 450, 250)
    assert tracks[0].sides == ["left"]


def test_each_model_runs_at_most_twice_for_a_mixed_batch() -> None:
    pose_left = _pose("left", wrist=(450, 290), index=(445, 250), pinky=(465, 250))
    empty_pose = _pose("left", wrist=(300, 400), index=(295, 360), pinky=(315, 360))
    image = _frame((200, 300), (450, 250))
    _, first, _, _ = _run([image])
    batch = [image, _frame((450, 250)), _frame((320, 120)), image, image]
    tracks = [None, hd.HandTrack([Square(100, 100, 80)], ["left"]), None, first[0], None]
    poses = [None, pose_left, empty_pose, None, pose_left]
    found, _, palm, marks = _run(batch, tracks=tracks, poses=poses, palm_fallback=True)
    assert palm.calls == 2 and marks.calls == 2  # round 2: pose backup for session 1, palm fallback for session 2
    assert [len(f) for f in found] == [2, 1, 1, 2, 1]
    assert [h.source for h in found[2]] == ["palm"]


def test_overlapping_rois_on_one_hand_give_one_hand() -> None:
    tracks = [hd.HandTrack(rois=[Square(200, 290, 110), Square(208, 296, 90)])]
    found, new, palm, marks = _run([_frame((200, 300))], tracks=tracks)
    assert marks.crops == 2 and palm.calls == 0
    assert len(found[0]) == 1 and len(new[0].rois) == 1


def test_no_more_than_max_hands() -> None:
    found, tracks, _, _ = _run([_frame((100, 300), (320, 300), (540, 300))], max_hands=2)
    assert len(found[0]) == 2 and len(tracks[0].rois) == 2
    found, _, _, _ = _run([_frame((100, 300), (320, 300), (540, 300))], max_hands=1)
    assert len(found[0]) == 1


def test_pose_rois_beyond_max_hands_are_dropped_by_priority() -> None:
    pose = _pose("left", wrist=(450, 290), index=(445, 250), pinky=(465, 250))
    pose[[16, 18, 20]] = _pose("right", wrist=(200, 340), index=(195, 300), pinky=(215, 300))[[16, 18, 20]]
    found, tracks, _, marks = _run([_frame((200, 300), (450, 250))], poses=[pose], max_hands=1)
    assert marks.crops == 2  # both pose ROIs were looked at
    assert len(found[0]) == 1 and _near(found[0][0], 450, 250) and tracks[0].sides == ["left"]


def test_a_palm_found_hand_takes_its_side_from_the_nearest_pose_wrist() -> None:
    pose = _pose("right", wrist=(200, 320), index=(0, 0), pinky=(0, 0))  # the wrist alone is visible enough
    pose[[17, 19], :2] = pose[[18, 20], :2] = (200, 320)  # no usable ROI from it: all three points coincide
    found, tracks, palm, _ = _run([_frame((200, 300))], poses=[pose])
    assert palm.calls == 1
    assert [h.source for h in found[0]] == ["palm"] and found[0][0].side == "right" and tracks[0].sides == ["right"]
    far = _pose("right", wrist=(500, 100), index=(500, 100), pinky=(500, 100))
    assert _run([_frame((200, 300))], poses=[far])[0][0][0].side == ""


def test_no_hands_gives_an_empty_track() -> None:
    found, tracks, palm, marks = _run([_frame()])
    assert found == [[]] and tracks[0].rois == [] and palm.calls == 1 and marks.calls == 0


def test_smoothing_follows_a_track_and_can_be_turned_off() -> None:
    before, first, _, _ = _run([_frame((200, 300))])
    moved = [_frame((206, 300))]
    raw = hd.track_hands(moved, [1 / 30], first, [None], FakePalm(), FakeLandmarks(), smooth=False)[0][0][0]
    smoothed = hd.track_hands(moved, [1 / 30], first, [None], FakePalm(), FakeLandmarks())[0][0][0]
    x0 = before[0][0].points[0, 0]
    assert raw.points[0, 0] == pytest.approx(x0 + 6, abs=1.0)
    assert x0 < smoothed.points[0, 0] < raw.points[0, 0] - 0.2


def test_handedness_is_low_passed_along_a_track() -> None:
    _, first, _, _ = _run([_frame((200, 300))], marks=FakeLandmarks(left=0.9))
    flipped = FakeLandmarks(left=0.2)
    found, tracks, _, _ = _run([_frame((200, 300))], tracks=first, marks=flipped)
    assert found[0][0].handedness == "Left" and tracks[0].left[0] == pytest.approx(0.1 * 0.2 + 0.9 * 0.9)
    found, _, _, _ = _run([_frame((200, 300))], tracks=first, marks=flipped, smooth=False)
    assert found[0][0].handedness == "Right"


def test_inputs_must_line_up() -> None:
    with pytest.raises(ValueError):
        hd.track_hands([_frame()], [0.0, 1.0], [None], [None], FakePalm(), FakeLandmarks())
