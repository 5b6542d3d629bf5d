import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from streams.vision import face as fc
from streams.vision import face_geometry as fg
from streams.vision import ssd
from streams.vision.geometry import Square

# --- ROI rules ---------------------------------------------------------------------------------------------------


def _detection(box: tuple[float, float, float, float], right_eye: tuple[float, float], left_eye: tuple[float, float]):
    kps = np.array([right_eye, left_eye, (0, 0), (0, 0), (0, 0), (0, 0)], dtype=np.float32)
    return ssd.Detection(0.9, np.array(box, dtype=np.float32), kps)


def test_detection_roi_is_the_box_scaled_1_5_and_square_on_the_long_side() -> None:
    roi = fc.face_roi_from_detection(_detection((100, 50, 180, 150), (120, 80), (160, 80)))
    assert (roi.cx, roi.cy) == pytest.approx((140, 100))
    assert roi.side == pytest.approx(1.5 * 100)
    assert roi.rotation == pytest.approx(0.0)


def test_detection_roi_turns_with_the_eyes() -> None:
    # left eye below the right eye on screen: the head leans clockwise, so the ROI turns clockwise (positive).
    roi = fc.face_roi_from_detection(_detection((0, 0, 100, 100), (30, 40), (70, 80)))
    assert roi.rotation == pytest.approx(math.pi / 4)


def test_pose_detection_roi_uses_the_keypoint_box_scaled_2_and_shifted_up() -> None:
    kps = np.array([(100, 100), (140, 100), (120, 120), (120, 140), (90, 110), (150, 110)], dtype=np.float32)
    roi = fc.face_roi_from_pose_detection(ssd.Detection(0.9, np.zeros(4, np.float32), kps))
    # keypoint box: x 90..150 (60), y 100..140 (40); shift_y -0.1 of the box height moves the centre up 4 px
    assert (roi.cx, roi.cy) == pytest.approx((120, 120 - 4))
    assert roi.side == pytest.approx(2.0 * 60)


def test_pose_detection_roi_shift_follows_the_rotation() -> None:
    # eyes stacked vertically (head lying on its side): rotation +90°, "up" of the face is image +x.
    kps = np.array([(100, 100), (100, 140), (110, 120), (120, 120), (100, 90), (100, 150)], dtype=np.float32)
    roi = fc.face_roi_from_pose_detection(ssd.Detection(0.9, np.zeros(4, np.float32), kps))
    assert roi.rotation == pytest.approx(math.pi / 2)
    box_h = 60.0  # y 90..150
    assert (roi.cx, roi.cy) == pytest.approx((110 + 0.1 * box_h, 120))
    assert roi.side == pytest.approx(2.0 * box_h)


def _pose(face_centre: tuple[float, float], visibility: float = 1.0, eye_dx: float = 10.0) -> np.ndarray:
    """Pose keypoints (33, 4) of a person facing the camera: their right eye (4..6) on the image left."""
    kp = np.zeros((33, 4), dtype=np.float32)
    x, y = face_centre
    face = {
        0: (x, y),  # nose
        1: (x + eye_dx * 0.6, y - 8),  # left eye inner ... (the subject's left: image right)
        2: (x + eye_dx, y - 8),
        3: (x + eye_dx * 1.4, y - 8),
        4: (x - eye_dx * 0.6, y - 8),  # right eye inner ... (image left)
        5: (x - eye_dx, y - 8),
        6: (x - eye_dx * 1.4, y - 8),
        7: (x + eye_dx * 2, y - 4),  # left ear
        8: (x - eye_dx * 2, y - 4),
        9: (x + 6, y + 12),  # mouth left
        10: (x - 6, y + 12),
    }
    for i, (px, py) in face.items():
        kp[i] = (px, py, visibility, visibility)
    return kp


def test_pose_roi_is_the_face_keypoint_box_scaled_3() -> None:
    kp = _pose((200, 100))
    roi = fc.face_roi_from_pose(kp)
    assert roi is not None
    xs, ys = kp[:11, 0], kp[:11, 1]
    assert (roi.cx, roi.cy) == pytest.approx(((xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2))
    assert roi.side == pytest.approx(3.0 * max(np.ptp(xs), np.ptp(ys)))
    assert roi.rotation == pytest.approx(0.0)  # right eye (5) on the left, left eye (2) on the right: level


def test_pose_roi_needs_visible_face_keypoints() -> None:
    assert fc.face_roi_from_pose(_pose((200, 100), visibility=0.2)) is None
    assert fc.face_roi_from_pose(_pose((200, 100), visibility=0.9)) is not None


def _template(n: int = fc.NUM_MESH) -> np.ndarray:
    """A fake mesh in face units ([-0.5, 0.5]^2): random points with the eye corners where a face has them."""
    rng = np.random.default_rng(7)
    pts = rng.uniform(-0.45, 0.45, (n, 2))
    pts[0], pts[1] = (-0.5, -0.5), (0.5, 0.5)  # box exactly [-0.5, 0.5]^2
    pts[33], pts[133], pts[362], pts[263] = (-0.35, -0.15), (-0.12, -0.15), (0.12, -0.15), (0.35, -0.15)
    return pts


def test_landmark_roi_uses_the_outer_eye_corners_for_rotation() -> None:
    pts = _template() * 100 + 300
    roi = fc.face_roi_from_landmarks(pts)
    assert (roi.cx, roi.cy, roi.side, roi.rotation) == pytest.approx((300, 300, 150, 0.0))
    c, s = math.cos(0.3), math.sin(0.3)
    turned = (_template() * 100) @ np.array([[c, s], [-s, c]]) + 300  # rotated clockwise on screen by 0.3 rad
    assert fc.face_roi_from_landmarks(turned).rotation == pytest.approx(0.3)
    droopy = _template() * 100 + 300
    droopy[133] += (0, 20)  # the inner corner of the image-left eye lower: no effect, only 33 -> 263 counts
    assert fc.face_roi_from_landmarks(droopy).rotation == pytest.approx(0.0)


def test_eye_rois_span_the_eye_corners_scaled_2_3() -> None:
    pts = _template() * 100 + 300
    left, right = fc.eye_rois(pts)
    assert (left.cx, left.cy) == pytest.approx((300 - 23.5, 285))
    assert left.side == pytest.approx(2.3 * 23)
    assert (right.cx, right.cy) == pytest.approx((300 + 23.5, 285))
    assert left.rotation == pytest.approx(0.0) and right.rotation == pytest.approx(0.0)


# --- decoding ----------------------------------------------------------------------------------------------------


def test_landmarks_decode_to_image_pixels_with_z_on_the_x_scale() -> None:
    roi = Square(300.0, 200.0, 96.0)  # 192 crop px -> 96 image px: half scale
    raw = np.zeros((fc.NUM_MESH, 3), np.float32)
    raw[0] = (96, 96, 10)  # crop centre
    raw[1] = (0, 0, -20)  # crop corner
    pts = fc.decode_landmarks(raw.reshape(-1), roi)
    assert pts[0] == pytest.approx((300, 200, 5))
    assert pts[1] == pytest.approx((252, 152, -10))


def test_face_flag_is_a_logit() -> None:
    assert fc.face_score(np.array([[[[0.0]]]])) == pytest.approx(0.5)
    assert fc.face_score(np.array([4.0])) == pytest.approx(1 / (1 + math.exp(-4)))


def _raw_iris() -> tuple[np.ndarray, np.ndarray]:
    """Iris-model output in crop px as the model orders it: centre, +x edge, -y edge, -x edge, +y edge."""
    iris = np.array([(32, 32, 1), (40, 32, 1), (32, 24, 1), (24, 32, 1), (32, 40, 1)], np.float32)
    contour = np.zeros((71, 3), np.float32)
    contour[0] = (8, 32, 0)  # the outer corner is at the crop's left for both eyes (the right one is mirrored)
    return contour.reshape(-1), iris.reshape(-1)


def test_mirrored_eye_decodes_back_into_image_order() -> None:
    roi = Square(100.0, 100.0, 64.0)
    for mirrored in (False, True):
        contour, iris = fc.decode_iris(*_raw_iris(), roi, mirrored)
        assert iris[0, :2] == pytest.approx((100, 100))
        assert iris[1, 0] > iris[0, 0] > iris[3, 0]  # 1 is the +x edge in the image, 3 the -x edge
        assert iris[2, 1] < iris[0, 1] < iris[4, 1]
        # the outer corner: image left for the unmirrored (image-left) eye, image right for the mirrored one
        assert (contour[0, 0] < 100) != mirrored


def test_mirrored_eye_crop_is_flipped_left_right() -> None:
    image = np.zeros((200, 200, 3), np.uint8)
    image[90:110, 70:90] = 255  # bright patch left of the ROI centre
    roi = Square(100.0, 100.0, 64.0)
    plain, mirrored = fc.iris_input(image, roi, False), fc.iris_input(image, roi, True)
    assert plain[:, :32].mean() > 0.1 and plain[:, 32:].mean() == 0
    assert mirrored[:, 32:].mean() > 0.1 and mirrored[:, :32].mean() == 0


def test_478_points_follow_mediapipe_refined_order() -> None:
    mesh = np.zeros((fc.NUM_MESH, 3), np.float32)
    mesh[:, 2] = np.arange(fc.NUM_MESH)
    left_iris = np.array([(10, 1, 0), (11, 1, 0), (10, 0, 0), (9, 1, 0), (10, 2, 0)], np.float32)
    right_iris = left_iris + np.array([100.0, 0.0, 0.0], np.float32)
    left_contour = np.full((71, 3), -1.0, np.float32)
    right_contour = np.full((71, 3), -2.0, np.float32)
    out = fc.assemble_478(mesh, left_contour, left_iris, right_contour, right_iris, refine_eyes=False)
    assert out.shape == (478, 3)
    assert out[:468] == pytest.approx(mesh)
    assert out[468:473, :2] == pytest.approx(left_iris[:, :2])
    assert out[473:478, :2] == pytest.approx(right_iris[:, :2])
    # iris depth: mean mesh z of the 16 eye-opening contour points of the same eye
    assert out[468, 2] == pytest.approx(np.mean(fc.LEFT_EYE_CONTOUR[:16]))
    assert out[473, 2] == pytest.approx(np.mean(fc.RIGHT_EYE_CONTOUR[:16]))
    assert fc.LEFT_EYE_CONTOUR[:9] == (33, 7, 163, 144, 145, 153, 154, 155, 133)
    assert fc.RIGHT_EYE_CONTOUR[:9] == (263, 249, 390, 373, 374, 380, 381, 382, 362)
    assert len(set(fc.LEFT_EYE_CONTOUR)) == len(set(fc.RIGHT_EYE_CONTOUR)) == 71

    refined = fc.assemble_478(mesh, left_contour, left_iris, right_contour, right_iris, refine_eyes=True)
    assert refined[list(fc.LEFT_EYE_CONTOUR), :2] == pytest.approx(-1.0)
    assert refined[list(fc.RIGHT_EYE_CONTOUR), :2] == pytest.approx(-2.0)
    assert refined[list(fc.LEFT_EYE_CONTOUR), 2] == pytest.approx(mesh[list(fc.LEFT_EYE_CONTOUR), 2])  # z kept
    assert refined[1, :2] == pytest.approx(mesh[1, :2])  # not an eye point


# --- head pose -----------------------------------------------------------------------------------------------------


def _synthetic_face_model() -> fg.FaceModel:
    """A face-sized, face-shaped point cloud (cm, MediaPipe's frame: y up, z towards the viewer)."""
    rng = np.random.default_rng(3)
    u = rng.uniform(-1, 1, (fg.NUM_VERTICES, 2))
    x, y = 7.5 * u[:, 0], 9.5 * u[:, 1]
    z = 6.0 * np.sqrt(np.clip(1 - u[:, 0] ** 2 * 0.8 - u[:, 1] ** 2 * 0.5, 0, None))  # a half-ellipsoid
    ids = np.arange(0, fg.NUM_VERTICES, 14)
    return fg.face_model_from_arrays(
        np.stack([x, y, z], axis=1), procrustes_ids=ids, procrustes_weights=np.ones(ids.size)
    )


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    y, p, r = (math.radians(a) for a in (yaw, pitch, roll))
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return math.degrees(math.acos(np.clip((np.trace(a @ b.T) - 1) / 2, -1, 1)))


def test_head_pose_recovers_a_known_pose() -> None:
    model = _synthetic_face_model()
    rotation, translation = _rotation(25, -12, 8), np.array([4.0, -3.0, 55.0])
    points = fg.project(model.vertices, rotation, translation, 640, 480)
    r, t = fg.solve_head_pose(points, model, 640, 480)
    assert _angle_deg(r, rotation) < 0.01
    assert t == pytest.approx(translation, abs=1e-3)
    assert fg.euler_angles(r) == pytest.approx((25, -12, 8), abs=1e-3)


def test_head_pose_with_noisy_points_stays_close() -> None:
    model = _synthetic_face_model()
    rotation, translation = _rotation(-15, 10, -5), np.array([-2.0, 1.0, 60.0])
    points = fg.project(model.vertices, rotation, translation, 640, 480)
    points += np.random.default_rng(0).normal(0, 1.0, points.shape)
    r, t = fg.solve_head_pose(points, model, 640, 480)
    assert _angle_deg(r, rotation) < 3.0
    assert np.linalg.norm(t - translation) < 0.05 * translation[2]
    # a previous frame's pose as the starting guess converges to the same answer
    r2, t2 = fg.solve_head_pose(points, model, 640, 480, guess=(_rotation(-10, 5, 0), translation + 2))
    assert _angle_deg(r2, r) < 0.05 and t2 == pytest.approx(t, abs=0.05)


def test_frontal_face_has_identity_rotation_and_projects_nose_to_the_centre() -> None:
    model = _synthetic_face_model()
    centre = np.array([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.0, 0.0, -100.0]])
    uv = fg.project(centre, np.eye(3), np.array([0.0, 0.0, 50.0]), 640, 480)
    assert uv[0] == pytest.approx((320, 240))
    f = 240 / math.tan(math.radians(63 / 2))
    assert uv[1] == pytest.approx((320 + 5 * f / 50, 240))
    assert np.all(np.isnan(uv[2]))  # behind the camera
    # the head frame has the face's front (MediaPipe's +z) towards the camera: negative z
    nose = int(np.argmin(model.vertices[:, 2]))
    assert model.vertices[nose, 2] < 0


def test_load_face_model_converts_to_the_head_frame(tmp_path: Path) -> None:
    vertices = np.zeros((fg.NUM_VERTICES, 3), np.float32)
    vertices[1] = (0.0, -1.0, 7.5)  # MediaPipe's nose tip: below the origin, towards the viewer
    path = tmp_path / "canonical_face_model.npz"
    np.savez(
        path,
        vertices=vertices,
        uv=np.zeros((fg.NUM_VERTICES, 2), np.float32),
        triangles=np.zeros((898, 3), np.int32),
        procrustes_ids=np.array([1, 2, 3], np.int32),
        procrustes_weights=np.array([0.5, 0.0, 0.2], np.float32),
    )
    model = fg.load_face_model(path)
    assert model.vertices[1] == pytest.approx((0.0, 1.0, -7.5))
    assert model.triangles.shape == (898, 3)
    assert model.fit_ids.tolist() == [1, 3]


# --- tracking with fake models -----------------------------------------------------------------------------------

TEMPLATE = _template()


def _blobs(crop: np.ndarray, threshold: float) -> list[tuple[float, float, float]]:
    """(cx, cy, size) of the bright squares in a crop, largest first."""
    mask = (crop.mean(axis=-1) > threshold).astype(np.uint8)
    count, _, stats, centroids = cv2.connectedComponentsWithStats(mask)
    found = [(float(centroids[k][0]), float(centroids[k][1]), math.sqrt(stats[k][4])) for k in range(1, count)]
    return sorted(found, key=lambda b: -b[2])


class FakeModels:
    """Stand-ins for the three models that 'see' white squares: a square is a face."""

    def __init__(self) -> None:
        self.calls = {"detect": 0, "landmarks": 0, "iris": 0}
        self.batches: dict[str, list[int]] = {"detect": [], "landmarks": [], "iris": []}

    def detect(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls["detect"] += 1
        self.batches["detect"].append(len(x))
        assert x.shape[1:] == (128, 128, 3) and x.dtype == np.float32 and x.min() >= -1.0
        boxes = np.zeros((len(x), 896, 16), np.float32)
        scores = np.full((len(x), 896, 1), -10.0, np.float32)
        anchor = ssd.anchors(128, ssd.FACE.strides)[0] * 128
        for n, crop in enumerate(x):
            blobs = _blobs(crop, 0.0)
            if not blobs:
                continue
            cx, cy, s = blobs[0]
            kps = [(cx - 0.25 * s, cy - 0.15 * s), (cx + 0.25 * s, cy - 0.15 * s), (cx, cy), (cx, cy + 0.25 * s)]
            kps += [(cx - 0.5 * s, cy), (cx + 0.5 * s, cy)]
            boxes[n, 0, :4] = (cx - anchor[0], cy - anchor[1], s, s)
            boxes[n, 0, 4:] = (np.array(kps) - anchor).reshape(-1)
            scores[n, 0] = 5.0
        return boxes, scores

    def landmarks(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls["landmarks"] += 1
        self.batches["landmarks"].append(len(x))
        assert x.shape[1:] == (192, 192, 3) and x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1
        raw = np.zeros((len(x), 1, 1, 1404), np.float32)
        flags = np.full((len(x), 1, 1, 1), -10.0, np.float32)
        for n, crop in enumerate(x):
            blobs = _blobs(crop, 0.5)
            if not blobs or blobs[0][2] < 10:
                continue
            cx, cy, s = blobs[0]
            mesh = np.concatenate([TEMPLATE * s + (cx, cy), np.zeros((fc.NUM_MESH, 1))], axis=1)
            raw[n, 0, 0] = mesh.reshape(-1)
            flags[n] = 10.0
        return raw, flags

    def iris(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls["iris"] += 1
        self.batches["iris"].append(len(x))
        assert x.shape[1:] == (64, 64, 3)
        contour, iris = _raw_iris()
        return np.tile(contour, (len(x), 1)), np.tile(iris, (len(x), 1))


def _frame(*squares: tuple[int, int, int], size: tuple[int, int] = (480, 640)) -> np.ndarray:
    image = np.zeros((*size, 3), np.uint8)
    for x, y, s in squares:
        image[y - s // 2 : y + s // 2, x - s // 2 : x + s // 2] = 255
    return image


def _run(models: FakeModels, images, tracks, poses=None, **kwargs):
    n = len(images)
    return fc.track_faces(
        images,
        [0.0] * n if "times" not in kwargs else kwargs.pop("times"),
        tracks,
        poses or [None] * n,
        models.detect,
        models.landmarks,
        models.iris,
        **kwargs,
    )


def test_first_frame_detects_refines_and_calls_each_model_at_most_twice() -> None:
    models = FakeModels()
    images = [_frame((200, 150, 80)), _frame((420, 300, 100))]
    faces, tracks = _run(models, images, [None, None])
    assert models.calls == {"detect": 1, "landmarks": 2, "iris": 1}
    assert models.batches == {"detect": [2], "landmarks": [2, 2], "iris": [4]}
    for face, (x, y, s) in zip(faces, [(200, 150, 80), (420, 300, 100)], strict=True):
        assert face is not None and face.detector_ran
        assert face.points.shape == (478, 3) and face.points.dtype == np.float32
        assert face.points[:468, :2].mean(axis=0) == pytest.approx((x, y), abs=0.05 * s)
        assert np.ptp(face.points[:468, 0]) == pytest.approx(s, rel=0.1)
        assert face.score > 0.99
        assert np.all(np.isnan(face.rotation))  # no face model given
    assert all(t.roi is not None for t in tracks)


def test_second_frame_tracks_with_the_previous_roi_without_the_detector() -> None:
    models = FakeModels()
    first = [_frame((200, 150, 80)), _frame((420, 300, 100))]
    _, tracks = _run(models, first, [None, None])
    models.calls = dict.fromkeys(models.calls, 0)
    moved = [_frame((205, 152, 80)), _frame((415, 300, 100))]
    faces, new_tracks = _run(models, moved, tracks)
    assert models.calls == {"detect": 0, "landmarks": 1, "iris": 1}
    for face, track in zip(faces, tracks, strict=True):
        assert face is not None and not face.detector_ran
        assert face.roi == track.roi
    assert faces[0] is not None and faces[0].points[:468, 0].mean() == pytest.approx(205, abs=3)
    assert new_tracks[0].roi != tracks[0].roi  # follows the face


def test_lost_track_is_redetected_in_the_same_batch() -> None:
    models = FakeModels()
    _, tracks = _run(models, [_frame((150, 150, 80)), _frame((400, 300, 80))], [None, None])
    models.calls = dict.fromkeys(models.calls, 0)
    # session 0's face jumps far away (outside its ROI); session 1 stays
    faces, _ = _run(models, [_frame((500, 350, 80)), _frame((400, 300, 80))], tracks)
    assert models.calls["detect"] == 1 and models.calls["landmarks"] == 2 and models.calls["iris"] == 1
    assert models.batches["detect"][-1] == 1  # only the lost session
    assert faces[0] is not None and faces[0].detector_ran
    assert faces[0].points[:468, :2].mean(axis=0) == pytest.approx((500, 350), abs=4)
    assert faces[1] is not None and not faces[1].detector_ran


def test_no_face_gives_none_and_an_empty_track() -> None:
    models = FakeModels()
    faces, tracks = _run(models, [_frame()], [None])
    assert faces == [None]
    assert tracks[0].roi is None and tracks[0].landmarks is None
    assert models.calls == {"detect": 1, "landmarks": 0, "iris": 0}


def test_pose_face_region_is_searched_before_the_whole_frame() -> None:
    # a big square (found on the whole frame) and a small one where the pose says the face is
    image = _frame((150, 240, 120), (500, 200, 50))
    models = FakeModels()
    faces, _ = _run(models, [image], [None], poses=[_pose((500, 200), eye_dx=8)])
    assert faces[0] is not None
    assert faces[0].points[:468, :2].mean(axis=0) == pytest.approx((500, 200), abs=4)
    faces, _ = _run(FakeModels(), [image], [None], poses=[None])
    assert faces[0] is not None and faces[0].points[:468, :2].mean(axis=0) == pytest.approx((150, 240), abs=6)
    # an invisible pose face falls back to the whole frame
    faces, _ = _run(FakeModels(), [image], [None], poses=[_pose((500, 200), visibility=0.1)])
    assert faces[0] is not None and faces[0].points[:468, 0].mean() == pytest.approx(150, abs=6)


def test_pose_and_whole_frame_detections_use_their_own_roi_rules() -> None:
    image = _frame((500, 200, 50))
    faces, _ = _run(FakeModels(), [image], [None], poses=[_pose((500, 200), eye_dx=8)], refine=False)
    assert faces[0] is not None and faces[0].detector_ran
    assert faces[0].roi.side == pytest.approx(2.0 * 50, rel=0.05)  # holistic: keypoint box (= blob width) x 2
    faces, _ = _run(FakeModels(), [image], [None], poses=[None], refine=False)
    assert faces[0] is not None and faces[0].roi.side == pytest.approx(1.5 * 50, rel=0.05)  # detection box x 1.5


def test_tracking_roi_wins_over_the_pose_unless_the_pose_face_is_outside_it() -> None:
    models = FakeModels()
    image = _frame((300, 240, 80))
    _, tracks = _run(models, [image], [None])
    models.calls = dict.fromkeys(models.calls, 0)
    _run(models, [image], tracks, poses=[_pose((300, 240))])
    assert models.calls["detect"] == 0
    _run(models, [image], tracks, poses=[_pose((600, 60))])  # the pose's face is elsewhere: track dropped
    assert models.calls["detect"] == 1


def test_smoothing_holds_a_jittering_face_still() -> None:
    models = FakeModels()
    jitter = [(300, 240), (302, 240), (300, 240), (302, 240), (300, 240), (302, 240)]
    tracks: list[fc.FaceTrack | None] = [None]
    smooth_x, raw_x = [], []
    for k, (x, y) in enumerate(jitter):
        faces, new = _run(models, [_frame((x, y, 80))], tracks, times=[k / 30])
        raw, _ = _run(FakeModels(), [_frame((x, y, 80))], tracks, times=[k / 30], smooth=False)
        tracks = list(new)
        assert faces[0] is not None and raw[0] is not None
        smooth_x.append(faces[0].points[:468, 0].mean())
        raw_x.append(raw[0].points[:468, 0].mean())
        assert tracks[0].landmarks is not None and tracks[0].landmarks.filtered.shape == (478, 3)
    assert np.ptp(smooth_x[2:]) < 0.5 * np.ptp(raw_x[2:])


def _template_face_model() -> fg.FaceModel:
    """A 15 cm face whose frontal view is the fake mesh model's template (MediaPipe frame: y up, z to the viewer)."""
    t = TEMPLATE.astype(np.float64)
    bump = 3.0 * (1.0 - (2 * t[:, 0]) ** 2) * (1.0 - (2 * t[:, 1]) ** 2)
    ids = np.arange(0, fg.NUM_VERTICES, 7)
    vertices = np.stack([15 * t[:, 0], -15 * t[:, 1], bump], axis=1)
    return fg.face_model_from_arrays(vertices, procrustes_ids=ids, procrustes_weights=np.ones(ids.size))


def test_a_face_found_again_by_the_detector_restarts_the_filter() -> None:
    models = FakeModels()
    _, tracks = _run(models, [_frame((150, 150, 80))], [None], times=[0.0])
    faces, _ = _run(models, [_frame((500, 350, 80))], tracks, times=[1 / 30])  # jumped: lost, re-detected
    assert faces[0] is not None and faces[0].detector_ran
    raw, _ = _run(FakeModels(), [_frame((500, 350, 80))], tracks, times=[1 / 30], smooth=False)
    assert raw[0] is not None
    assert faces[0].points == pytest.approx(raw[0].points, abs=1e-3)  # the first sample of a new filter passes


def test_a_degenerate_tracked_roi_is_not_used() -> None:
    models = FakeModels()
    faces, _ = _run(models, [_frame((300, 240, 80))], [fc.FaceTrack(Square(300.0, 240.0, 2.0), None)])
    assert models.calls["detect"] == 1 and faces[0] is not None and faces[0].detector_ran


def test_head_pose_of_a_frontal_face_is_near_identity() -> None:
    models = FakeModels()
    faces, _ = _run(models, [_frame((320, 240, 100))], [None], face_model=_template_face_model())
    face = faces[0]
    assert face is not None
    assert face.rotation @ face.rotation.T == pytest.approx(np.eye(3), abs=1e-6)
    assert fg.euler_angles(face.rotation) == pytest.approx((0, 0, 0), abs=3.0)
    # 15 cm over 100 px with f = 240 / tan(31.5°): about 59 cm straight ahead
    f = 240 / math.tan(math.radians(63 / 2))
    assert face.translation == pytest.approx((0, 0, 15 * f / 100), abs=0.05 * 15 * f / 100)
    # the npz's arrays as a mapping (as the serving layer loads them) give the same answer
    model = _template_face_model()
    arrays = {"vertices": model.vertices * (1, -1, -1), "procrustes_ids": model.procrustes_ids}
    arrays["procrustes_weights"] = model.procrustes_weights
    same, _ = _run(FakeModels(), [_frame((320, 240, 100))], [None], face_model=arrays)
    assert same[0] is not None and same[0].rotation == pytest.approx(face.rotation, abs=1e-6)


def test_mismatched_batch_lengths_are_rejected() -> None:
    models = FakeModels()
    with pytest.raises(ValueError, match="same length"):
        fc.track_faces([_frame()], [0.0, 1.0], [None], [None], models.detect, models.landmarks, models.iris)
