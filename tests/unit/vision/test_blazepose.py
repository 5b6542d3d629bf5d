import math

import numpy as np
import pytest

from streams.vision import blazepose as bp


def test_anchors_follow_mediapipe_ssd_layout() -> None:
    assert bp.ANCHORS.shape == (2254, 2)
    assert bp.ANCHORS[0] == pytest.approx((0.5 / 28, 0.5 / 28))  # stride 8: 28x28 cells, 2 anchors each
    assert bp.ANCHORS[1568] == pytest.approx((0.5 / 14, 0.5 / 14))  # stride 16 starts after 28*28*2
    assert bp.ANCHORS[-1] == pytest.approx((6.5 / 7, 6.5 / 7))  # stride 32: 7x7 cells, 6 anchors each
    assert np.all((bp.ANCHORS > 0) & (bp.ANCHORS < 1))


def test_square_maps_crop_corners_to_image() -> None:
    m = bp.Square(100.0, 50.0, 40.0).to_image(256)
    assert m @ [0, 0, 1] == pytest.approx([80, 30])
    assert m @ [256, 256, 1] == pytest.approx([120, 70])


def test_rotated_square_turns_crop_up_towards_rotation() -> None:
    m = bp.Square(0.0, 0.0, 256.0, rotation=math.pi / 2).to_image(256)
    up_in_crop = m @ [128, 0, 1]  # top centre of the crop
    assert up_in_crop == pytest.approx([128, 0], abs=1e-9)  # points to image +x: the body lies to the right


def test_crop_samples_the_requested_region() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    image[40:60, 150:170] = 255
    crop = bp.Square(160.0, 50.0, 20.0).crop(image, 32, border=0)
    assert crop[16, 16].tolist() == [255, 255, 255]
    assert bp.Square(40.0, 50.0, 20.0).crop(image, 32, border=0).max() == 0


def test_roi_of_an_upright_person_is_unrotated_and_scaled() -> None:
    det = bp.Detection(0.9, np.array([[100.0, 200.0], [100.0, 100.0], [100, 120], [100, 90]]))
    roi = bp.roi_from_detection(det)
    assert (roi.cx, roi.cy) == (100.0, 200.0)
    assert roi.rotation == pytest.approx(0.0)
    assert roi.side == pytest.approx(2 * 100 * 1.25)


def test_roi_rotation_follows_the_body_axis() -> None:
    det = bp.Detection(0.9, np.array([[100.0, 100.0], [180.0, 100.0], [0, 0], [0, 0]]))
    assert bp.roi_from_detection(det).rotation == pytest.approx(math.pi / 2)


def _raw_detection(anchor: int, logit: float, kp_offsets_px: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.zeros((2254, 12), np.float32)
    scores = np.full((2254, 1), -10.0, np.float32)
    boxes[anchor, 2:4] = 20.0  # box w, h in detector pixels
    boxes[anchor, 4:12] = np.tile(kp_offsets_px, 4)
    scores[anchor] = logit
    return boxes, scores


def test_decode_detection_undoes_the_letterbox() -> None:
    region = bp.letterbox(400, 200)  # a 400x400 square centred on the image: 100 px of padding above
    boxes, scores = _raw_detection(0, 5.0, (22.4, 0.0))  # +0.1 of the detector width
    det = bp.decode_detection(boxes, scores, region)
    assert det is not None
    ax, ay = bp.ANCHORS[0]
    assert det.keypoints[0] == pytest.approx([(ax + 0.1) * 400, ay * 400 - 100], abs=1e-3)
    assert det.score == pytest.approx(1 / (1 + math.exp(-5.0)))


def test_decode_detection_finds_nobody_below_threshold() -> None:
    boxes, scores = _raw_detection(0, -1.0, (0.0, 0.0))
    assert bp.decode_detection(boxes, scores, bp.letterbox(100, 100)) is None


def test_decode_landmarks_projects_to_image_and_applies_sigmoid() -> None:
    raw = np.zeros((39, 5), np.float32)
    raw[:, :2] = 128.0  # crop centre
    raw[0, 3] = 100.0  # visibility logit
    kps = bp.decode_landmarks(raw.reshape(-1), bp.Square(300.0, 200.0, 100.0))
    assert kps.shape == (33, 4)
    assert kps[0, :2] == pytest.approx([300, 200])
    assert kps[0, 2] == pytest.approx(1.0)
    assert kps[1, 2:] == pytest.approx([0.5, 0.5])


def test_estimate_batches_each_model_once_and_skips_images_without_a_person() -> None:
    calls: list[int] = []

    def detect(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(batch.shape[0])
        boxes, scores = np.zeros((batch.shape[0], 2254, 12), np.float32), np.full((batch.shape[0], 2254, 1), -9.0)
        boxes[0, 1000, 4:12] = [0, 0, 0, -30, 0, 0, 0, 0]  # image 0: hips at the anchor, top 30 px above
        scores[0, 1000] = 9.0
        return boxes, scores

    def landmarks(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(batch.shape[0])
        return np.zeros((batch.shape[0], 195), np.float32), np.full((batch.shape[0], 1), 0.9, np.float32)

    images = [np.zeros((120, 160, 3), np.uint8), np.zeros((50, 50, 3), np.uint8)]
    poses = bp.estimate(images, detect, landmarks)
    assert calls == [2, 1]
    assert poses[0].found and poses[0].score == pytest.approx(0.9)
    assert not poses[1].found
    assert bp.estimate([], detect, landmarks) == []
