import math
from dataclasses import astuple

import cv2
import numpy as np
import pytest

from streams.vision import blazepose as bp
from streams.vision import ssd
from streams.vision.geometry import Square, letterbox

# -- geometry ---------------------------------------------------------------------------------------------------


def test_square_maps_crop_corners_to_image() -> None:
    m = Square(100.0, 50.0, 40.0).to_image(256)
    assert m @ [0, 0, 1] == pytest.approx([80, 30])
    assert m @ [256, 256, 1] == pytest.approx([120, 70])


def test_rotated_square_turns_crop_up_towards_rotation() -> None:
    m = Square(0.0, 0.0, 256.0, rotation=math.pi / 2).to_image(256)
    up_in_crop = m @ [128, 0, 1]  # top centre of the crop
    assert up_in_crop == pytest.approx([128, 0], abs=1e-9)  # points to image +x: the body lies to the right


def test_crop_samples_the_requested_region() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    image[40:60, 150:170] = 255
    crop = Square(160.0, 50.0, 20.0).crop(image, 32, border=0)
    assert crop[16, 16].tolist() == [255, 255, 255]
    assert Square(40.0, 50.0, 20.0).crop(image, 32, border=0).max() == 0


def _detection(kps: list[list[float]]) -> bp.Detection:
    return bp.Detection(0.9, np.zeros(4, np.float32), np.asarray(kps, np.float32))


def test_roi_of_an_upright_person_is_unrotated_and_scaled() -> None:
    roi = bp.roi_from_detection(_detection([[100.0, 200.0], [100.0, 100.0], [100, 120], [100, 90]]))
    assert (roi.cx, roi.cy) == (100.0, 200.0)
    assert roi.rotation == pytest.approx(0.0)
    assert roi.side == pytest.approx(2 * 100 * 1.25)


def test_roi_rotation_follows_the_body_axis() -> None:
    roi = bp.roi_from_detection(_detection([[100.0, 100.0], [180.0, 100.0], [0, 0], [0, 0]]))
    assert roi.rotation == pytest.approx(math.pi / 2)


def test_roi_from_aux_uses_points_33_and_34_like_the_detector_roi() -> None:
    points = np.zeros((39, 5), np.float32)
    points[33, :2] = [300.0, 400.0]  # centre
    points[34, :2] = [300.0 - 60.0, 400.0 - 80.0]  # 100 px away, up and to the left
    roi = bp.roi_from_aux(points)
    assert (roi.cx, roi.cy) == (300.0, 400.0)
    assert roi.side == pytest.approx(2 * 100 * 1.25)
    assert roi.rotation == pytest.approx(-math.atan2(60, 80))  # turned so that 33 -> 34 points straight up
    assert bp.roi_from_aux(points[33:35, :3]) == roi  # the aux points alone give the same ROI
    same = bp.roi_from_detection(_detection([[300, 400], [240, 320], [0, 0], [0, 0]]))
    assert astuple(roi) == pytest.approx(astuple(same))


# -- detector decoding ---------------------------------------------------------------------------------------------


def _raw_detection(anchor: int, logit: float, kp_offsets_px: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.zeros((2254, 12), np.float32)
    scores = np.full((2254, 1), -10.0, np.float32)
    boxes[anchor, 2:4] = 20.0  # box w, h in detector pixels
    boxes[anchor, 4:12] = np.tile(kp_offsets_px, 4)
    scores[anchor] = logit
    return boxes, scores


def test_decode_detections_undoes_the_letterbox() -> None:
    region = letterbox(400, 200)  # a 400x400 square centred on the image: 100 px of padding above
    boxes, scores = _raw_detection(0, 5.0, (22.4, 0.0))  # +0.1 of the detector width
    (det,) = bp.decode_detections(boxes, scores, region)
    ax, ay = ssd.anchors(224, ssd.POSE.strides)[0]
    assert ax == pytest.approx(0.5 / 28)
    assert det.keypoints[0] == pytest.approx([(ax + 0.1) * 400, ay * 400 - 100], abs=1e-3)
    assert det.score == pytest.approx(1 / (1 + math.exp(-5.0)))


def test_decode_detections_finds_nobody_below_threshold() -> None:
    boxes, scores = _raw_detection(0, -1.0, (0.0, 0.0))
    assert bp.decode_detections(boxes, scores, letterbox(100, 100)) == []


# -- landmark decoding and heatmap refinement ------------------------------------------------------------------------


def test_decode_landmarks_projects_to_image_scales_z_and_applies_sigmoid() -> None:
    raw = np.zeros((39, 5), np.float32)
    raw[:, :2] = 128.0  # crop centre
    raw[0, :2] = [192.0, 64.0]  # right of and above the centre
    raw[0, 2] = -25.6  # z in crop px
    raw[0, 3] = 100.0  # visibility logit
    pts = bp.decode_landmarks(raw.reshape(-1), Square(300.0, 200.0, 100.0))
    assert pts.shape == (39, 5) and pts.dtype == np.float32
    assert pts[1, :2] == pytest.approx([300, 200])
    assert pts[0, :2] == pytest.approx([325, 175])
    assert pts[0, 2] == pytest.approx(-10.0)  # same scale as x: 100 / 256 px per crop px
    assert pts[0, 3] == pytest.approx(1.0)
    assert pts[1, 3:] == pytest.approx([0.5, 0.5])


def test_decode_landmarks_follows_the_roi_rotation() -> None:
    raw = np.zeros((39, 5), np.float32)
    raw[:, :2] = [128.0, 0.0]  # top centre of the crop
    pts = bp.decode_landmarks(raw.reshape(-1), Square(0.0, 0.0, 256.0, rotation=math.pi / 2))
    assert pts[0, :2] == pytest.approx([128.0, 0.0], abs=1e-4)


def _heatmap(peaks: dict[tuple[int, int, int], float] | None = None, base: float = -20.0) -> np.ndarray:
    hm = np.full((64, 64, 39), base, np.float32)
    for (row, col, channel), logit in (peaks or {}).items():
        hm[row, col, channel] = logit
    return hm


def test_heatmap_refinement_moves_a_point_to_the_peak_of_its_window() -> None:
    norm = np.full((39, 2), 0.5, np.float32)  # cell (32, 32)
    hm = _heatmap({(34, 30, 0): 20.0, (34, 31, 0): 20.0})  # inside the 7x7 window of point 0
    out = bp.refine_from_heatmap(norm, hm)
    # MediaPipe: weighted mean cell index / 64, no half-cell offset.
    assert out[0] == pytest.approx([30.5 / 64, 34 / 64], abs=1e-6)
    assert out[1:] == pytest.approx(norm[1:])  # the other channels have no confident cell: unchanged


def test_heatmap_refinement_ignores_a_peak_outside_the_window_and_low_confidence() -> None:
    norm = np.full((39, 2), 0.5, np.float32)
    far = bp.refine_from_heatmap(norm, _heatmap({(40, 32, 0): 20.0}))  # 8 rows away: outside the 7x7 window
    assert far[0] == pytest.approx(norm[0])
    weak = bp.refine_from_heatmap(norm, _heatmap({(33, 33, 0): -0.1}, base=-1.0))  # max sigmoid 0.475 < 0.5
    assert weak[0] == pytest.approx(norm[0])
    sure = bp.refine_from_heatmap(norm, _heatmap({(33, 33, 0): 0.1}, base=-1.0))  # max sigmoid 0.525 >= 0.5
    assert sure[0] != pytest.approx(norm[0])


def test_heatmap_refinement_clips_the_window_at_the_edge_and_keeps_points_outside() -> None:
    norm = np.full((39, 2), 0.5, np.float32)
    norm[0] = [0.0, 0.0]  # cell (0, 0): window rows/cols 0..3 only
    norm[1] = [-0.2, 0.5]  # left of the heatmap: kept as is
    hm = _heatmap({(0, 0, 0): 20.0, (3, 3, 0): 20.0, (32, 32, 1): 20.0})
    out = bp.refine_from_heatmap(norm, hm)
    assert out[0] == pytest.approx([1.5 / 64, 1.5 / 64], abs=1e-6)
    assert out[1] == pytest.approx(norm[1])


def test_decode_landmarks_refines_with_the_heatmap() -> None:
    raw = np.zeros((39, 5), np.float32)
    raw[:, :2] = 128.0
    hm = _heatmap({(35, 34, 5): 20.0})
    pts = bp.decode_landmarks(raw.reshape(-1), Square(128.0, 128.0, 256.0), hm)
    assert pts[5, :2] == pytest.approx([34 * 4, 35 * 4], abs=1e-3)  # cell / 64 of a 256 px crop
    assert pts[4, :2] == pytest.approx([128, 128])


# -- tracking with fake models -------------------------------------------------------------------------------------
# A "person" is a white rectangle. The fake detector finds each one in its letterboxed input and reports the
# rectangle's mid-height as the hips and its top as the alignment point; the fake landmark model says a person is
# present when the crop's centre is white and returns points at fixed crop positions, whose aux points give back
# the same ROI (a fixed point of tracking).

AUX_TOP = 128.0 - 256.0 / (2 * 1.25)  # aux point 34 in crop px for an ROI that reproduces itself


def _frame(*people: tuple[int, int, int, int], size: tuple[int, int] = (320, 240)) -> np.ndarray:
    image = np.zeros((size[1], size[0], 3), np.uint8)
    for x0, y0, x1, y1 in people:
        image[y0:y1, x0:x1] = 255
    return image


class FakeModels:
    def __init__(self, noise: float = 0.0, seed: int = 0) -> None:
        self.detect_batches: list[int] = []
        self.landmark_batches: list[int] = []
        self.landmark_names: list[list[str]] = []
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        self.visibility_logit = 5.0  # presence stays at 5.0: tests can tell the two apart

    def detect(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.detect_batches.append(len(batch))
        anchors = ssd.anchors(224, ssd.POSE.strides)
        boxes = np.zeros((len(batch), 2254, 12), np.float32)
        scores = np.full((len(batch), 2254, 1), -10.0, np.float32)
        for b, image in enumerate(batch):
            count, _, stats, _ = cv2.connectedComponentsWithStats((image[..., 0] > 0).astype(np.uint8))
            for k in range(1, count):
                x, y, w, h = (float(v) for v in stats[k, :4])
                anchor = 100 * k
                ax, ay = anchors[anchor] * 224
                cx = x + w / 2
                head = [cx - ax, y + 0.1 * h - ay, 0.2 * h, 0.2 * h]  # head box: top fifth of the person
                hips, top = [cx - ax, y + 0.5 * h - ay], [cx - ax, y - ay]
                boxes[b, anchor] = [*head, *hips, *top, *hips, *top]
                scores[b, anchor] = 5.0
        return boxes, scores

    def landmarks(self, batch: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        self.landmark_batches.append(len(batch))
        self.landmark_names.append(list(names))
        m = len(batch)
        raw = np.zeros((m, 39, 5), np.float32)
        raw[:, :, :2] = 128.0
        raw[:, :11, :2] = [128.0, 40.0]  # face near the top of the crop
        raw[:, 11:33, 0] = np.linspace(60, 196, 22)
        raw[:, 11:33, 1] = 160.0
        raw[:, :33, :2] += self.rng.normal(0.0, self.noise, (m, 33, 2)).astype(np.float32)
        raw[:, 34, :2] = [128.0, AUX_TOP]
        raw[:, :, 3] = self.visibility_logit
        raw[:, :, 4] = 5.0
        flag = np.array([[0.9 if crop[120:136, 120:136].mean() > 0.5 else 0.05] for crop in batch], np.float32)
        out = {
            "Identity": raw.reshape(m, 195),
            "Identity_1": flag,
            "Identity_3": np.full((m, 64, 64, 39), -20.0, np.float32),
            "Identity_4": np.zeros((m, 117), np.float32),
        }
        if "Identity_2" in names:
            out["Identity_2"] = np.full((m, 256, 256, 1), 3.0, np.float32)
        return {k: v for k, v in out.items() if k in names}


PERSON = (140, 40, 180, 200)  # hips at (160, 120), top at y=40: ROI side 2 * 80 * 1.25 = 200, centred on the hips


def test_single_image_mode_detects_and_returns_a_track_to_follow() -> None:
    fake = FakeModels()
    people, tracks = bp.track([_frame(PERSON)], [0.0], [None], fake.detect, fake.landmarks)
    (pose,) = people[0]
    assert pose.found and pose.detector_ran and pose.score == pytest.approx(0.9)
    assert pose.keypoints.shape == (33, 4)
    assert astuple(pose.roi) == pytest.approx((160.0, 120.0, 200.0, 0.0), abs=1.5)
    assert tracks[0].roi is not None  # aux points at their fixed point: the same ROI next frame
    assert astuple(tracks[0].roi) == pytest.approx(astuple(pose.roi), abs=1e-3)
    assert pose.world is not None and pose.world.shape == (33, 3)
    assert pose.segmentation is None
    assert (fake.detect_batches, fake.landmark_batches) == ([1], [1])


def test_tracking_skips_the_detector_until_the_person_is_lost() -> None:
    fake = FakeModels()
    track: bp.PoseTrack | None = None
    sources = []
    for frame in range(5):
        image = _frame(PERSON) if frame < 3 else _frame((20, 40, 60, 200))  # frame 3: the person jumped away
        people, (track,) = bp.track([image], [frame / 15], [track], fake.detect, fake.landmarks)
        sources.append(people[0][0].detector_ran)
    assert sources == [True, False, False, True, False]
    # the lost frame: landmarks on the stale ROI, then detector, then landmarks on the new ROI
    assert fake.detect_batches == [1, 1]
    assert fake.landmark_batches == [1, 1, 1, 1, 1, 1]
    assert track is not None and track.roi is not None and track.roi.cx == pytest.approx(40.0, abs=1.5)


def test_a_lost_track_restarts_the_filters() -> None:
    fake = FakeModels()
    _, (track,) = bp.track([_frame(PERSON)], [0.0], [None], fake.detect, fake.landmarks)
    _, (track,) = bp.track([_frame(PERSON)], [0.1], [track], fake.detect, fake.landmarks)
    assert track.landmarks is not None
    people, (lost,) = bp.track([_frame((20, 40, 60, 200))], [0.2], [track], fake.detect, fake.landmarks)
    assert people[0][0].detector_ran
    assert lost.landmarks is not None and lost.aux is not None
    assert np.all(lost.landmarks.derivative == 0) and np.array_equal(lost.landmarks.filtered, lost.landmarks.raw)
    assert people[0][0].keypoints[:, :2] == pytest.approx(lost.landmarks.raw[:, :2], abs=1e-3)  # not blended


def test_nobody_gives_no_people_and_an_empty_track() -> None:
    fake = FakeModels()
    people, tracks = bp.track([_frame()], [0.0], [bp.PoseTrack()], fake.detect, fake.landmarks)
    assert people == [[]]
    assert tracks[0] == bp.PoseTrack()
    assert fake.landmark_batches == []


def test_each_model_runs_at_most_twice_for_a_mixed_batch() -> None:
    fake = FakeModels()
    _, tracks = bp.track([_frame(PERSON)] * 2, [0.0, 0.0], [None, None], fake.detect, fake.landmarks)
    fake.detect_batches.clear()
    fake.landmark_batches.clear()
    images = [_frame(PERSON), _frame((20, 40, 60, 200)), _frame(PERSON), _frame()]  # tracked, lost, new, nobody
    people, out = bp.track(images, [0.1] * 4, [tracks[0], tracks[1], None, None], fake.detect, fake.landmarks)
    assert fake.detect_batches == [3]  # lost, new and nobody in one detector batch
    assert fake.landmark_batches == [2, 2]  # the two tracked ROIs, then the two new ones
    assert [p[0].detector_ran if p else None for p in people] == [False, True, True, None]
    assert out[3] == bp.PoseTrack()


def _jitter(keep_track: bool) -> tuple[float, float, int]:
    """Mean frame-to-frame keypoint motion of the output and of the raw landmarks for a still, noisy person."""
    fake = FakeModels(noise=0.5)
    track: bp.PoseTrack | None = None
    outs, raws = [], []
    for frame in range(60):
        people, (new,) = bp.track([_frame(PERSON)], [frame / 15], [track], fake.detect, fake.landmarks)
        assert new.landmarks is not None
        outs.append(people[0][0].keypoints[:, :2])
        raws.append(new.landmarks.raw[:, :2])
        track = new if keep_track else None
    motion = [float(np.abs(np.diff(np.asarray(x)[10:], axis=0)).mean()) for x in (outs, raws)]
    return motion[0], motion[1], len(fake.detect_batches)


def test_tracking_smooths_the_shoppers_keypoints() -> None:
    out, raw, detector_calls = _jitter(keep_track=True)
    assert out < 0.5 * raw
    assert detector_calls == 1
    out, raw, detector_calls = _jitter(keep_track=False)  # single-image mode: no history, no smoothing
    assert out == pytest.approx(raw, rel=1e-3)
    assert detector_calls == 60


def test_replayed_frame_passes_through_without_touching_the_filters() -> None:
    fake = FakeModels(noise=2.0)
    seen: list[dict[str, np.ndarray]] = []

    def landmarks(batch: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        seen.append(fake.landmarks(batch, names))
        return seen[-1]

    _, (t1,) = bp.track([_frame(PERSON)], [1.0], [None], fake.detect, landmarks)
    _, (t2,) = bp.track([_frame(PERSON)], [1.5], [t1], fake.detect, landmarks)
    people, (t3,) = bp.track([_frame(PERSON)], [1.5], [t2], fake.detect, landmarks)  # the same frame again
    assert t3.landmarks is t2.landmarks and t3.aux is t2.aux  # One-Euro state unchanged
    pose = people[0][0]
    raw = bp.decode_landmarks(seen[-1]["Identity"][0], pose.roi, seen[-1]["Identity_3"][0])
    assert pose.keypoints[:, :2] == pytest.approx(raw[:33, :2], abs=1e-4)  # this frame's values, unfiltered
    assert not np.allclose(raw[:33, :2], t2.landmarks.filtered[:, :2], atol=0.1)


def test_segmentation_is_asked_only_when_wanted() -> None:
    fake = FakeModels()
    people, _ = bp.track([_frame(PERSON)], [0.0], [None], fake.detect, fake.landmarks, segmentation=True)
    assert all("Identity_2" in names for names in fake.landmark_names)
    mask = people[0][0].segmentation
    assert mask is not None and mask.shape == (256, 256)
    assert mask == pytest.approx(1 / (1 + math.exp(-3.0)))  # probabilities, not logits
    fake.landmark_names.clear()
    bp.track([_frame(PERSON)], [0.0], [None], fake.detect, fake.landmarks)
    assert fake.landmark_names and all("Identity_2" not in names for names in fake.landmark_names)


def test_the_shopper_is_the_larger_person_nearer_the_centre() -> None:
    fake = FakeModels()
    image = _frame((20, 100, 40, 180), (150, 40, 190, 200), size=(320, 240))  # small at the edge, big in the middle
    people, tracks = bp.track([image], [0.0], [None], fake.detect, fake.landmarks, max_people=2)
    assert len(people[0]) == 2
    assert people[0][0].roi.cx == pytest.approx(170.0, abs=1.5)
    assert people[0][1].roi.cx == pytest.approx(30.0, abs=1.5)
    assert tracks[0].roi is not None and tracks[0].roi.cx == pytest.approx(170.0, abs=1.5)


def test_several_people_run_the_detector_on_tracked_frames_and_skip_the_shoppers_own_detection() -> None:
    fake = FakeModels()
    image = _frame((20, 100, 40, 180), PERSON)
    _, tracks = bp.track([image], [0.0], [None], fake.detect, fake.landmarks, max_people=2)
    fake.detect_batches.clear()
    fake.landmark_batches.clear()
    people, _ = bp.track([image], [0.1], tracks, fake.detect, fake.landmarks, max_people=2)
    assert fake.detect_batches == [1]
    assert fake.landmark_batches == [1, 1]  # the tracked shopper, then only the other person
    shopper, other = people[0]
    assert not shopper.detector_ran and other.detector_ran
    assert other.roi.cx == pytest.approx(30.0, abs=1.5)
    one, _ = bp.track([image], [0.2], tracks, fake.detect, fake.landmarks, max_people=1)
    assert len(one[0]) == 1 and fake.detect_batches == [1]  # one person wanted: no detector on a tracked frame
    mixed, _ = bp.track([image, image], [0.3, 0.3], tracks * 2, fake.detect, fake.landmarks, max_people=[1, 2])
    assert [len(found) for found in mixed] == [1, 2]
    assert fake.detect_batches == [1, 1]  # only the frame that wants two people went to the detector


def test_estimate_is_single_image_mode() -> None:
    fake = FakeModels()
    poses = bp.estimate([_frame(PERSON), _frame()], fake.detect, fake.landmarks)
    assert (fake.detect_batches, fake.landmark_batches) == ([2], [1])
    assert poses[0].found and poses[0].score == pytest.approx(0.9)
    assert poses[1] is bp.NO_POSE and not poses[1].found
    assert bp.estimate([], fake.detect, fake.landmarks) == []


def test_visibility_is_low_passed_and_presence_is_not() -> None:
    """MediaPipe low-passes visibility (alpha 0.1) along a track; presence is the model's own, frame by frame."""
    fake = FakeModels()
    people, tracks = bp.track([_frame(PERSON)], [0.0], [None], fake.detect, fake.landmarks)
    fake.visibility_logit = -5.0  # the model now says every point is hidden
    people, _ = bp.track([_frame(PERSON)], [1 / 30], tracks, fake.detect, fake.landmarks)
    (pose,) = people[0]
    expected = 0.1 * ssd.sigmoid(np.array(-5.0)) + 0.9 * ssd.sigmoid(np.array(5.0))
    assert pose.keypoints[11, 2] == pytest.approx(float(expected), abs=1e-3)
    assert pose.keypoints[11, 3] == pytest.approx(float(ssd.sigmoid(np.array(5.0))), abs=1e-3)
