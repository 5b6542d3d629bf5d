"""Head pose from the face mesh: where MediaPipe's canonical face model sits in front of the camera.

One job: given the 468 face-mesh points of a frame (image pixels), find the rotation R and translation t (cm) that
place the canonical face model (MediaPipe's `canonical_face_model`, 468 vertices in cm) in the camera frame, and
project 3D points of that head frame (e.g. a pair of glasses) back onto the image.

Camera: a pinhole like MediaPipe's face geometry environment (`face_geometry` calculators): vertical field of view
63 degrees, principal point at the image centre, square pixels, no distortion, so fx = fy = (H / 2) / tan(63° / 2).

Frames (OpenCV convention throughout):
- camera frame: x to the image right, y down, z forward (away from the camera), in cm;
- head frame: the canonical model with its y and z axes negated, so a face looking straight into the camera has
  R = identity; x points to the image right of such a face (the subject's left), y down, z into the head.
  `FaceModel.vertices` are already in this frame. A camera-frame point is `R @ p + t`.

Method: perspective-n-point on MediaPipe's Procrustes landmark subset (the rigid points its geometry pipeline
weights: forehead, nose, eye corners, cheeks, sides of the face; no lips or chin), `cv2.solvePnP` with SQPnP (globally
optimal for the reprojection error, no initial guess needed), then Levenberg-Marquardt refinement. With the previous
frame's pose as a guess, only the LM refinement runs. The model's z output of the mesh is not used: depth comes from
the model's size, so `t` is right for an average adult face and scales with the subject's true face size (a face 10 %
smaller than the canonical one reads 10 % further away).

Expected error. Synthetic (the canonical model itself projected at random poses within +-30° yaw, +-20° pitch,
+-15° roll, 150 px face width at 640x480, 1.5 px Gaussian noise on every point): rotation error median 0.65°,
p95 1.3°; lateral translation 0.1 % and depth 0.3 % (p95 0.8 %) of the distance; 3 px noise doubles these.
Exact (1e-10) without noise. On real meshes the error is dominated by how far the subject's face is from the
canonical shape: the fit leaves ~3 % of the face width as reprojection residual on MediaPipe's reference photos,
i.e. a few degrees. Angles are in camera axes: a face above the optical axis that looks into the lens has a
positive pitch of atan(-t_y / t_z) (about 19° for the portrait reference).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

VERTICAL_FOV_DEG = 63.0
NUM_VERTICES = 468
# From the canonical model (cm, y up / z towards the viewer) to the head frame (OpenCV: y down, z forward).
_TO_HEAD_FRAME = np.array([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class FaceModel:
    """MediaPipe's canonical face model in the head frame (see the module docstring)."""

    vertices: np.ndarray  # (468, 3) cm
    uv: np.ndarray  # (468, 2) texture coordinates
    triangles: np.ndarray  # (898, 3) vertex indices
    procrustes_ids: np.ndarray  # (K,) vertex ids MediaPipe's geometry pipeline fits on
    procrustes_weights: np.ndarray  # (K,) their weights

    @property
    def fit_ids(self) -> np.ndarray:
        """The vertices the pose is solved on: the Procrustes subset with a non-zero weight."""
        return np.asarray(self.procrustes_ids[self.procrustes_weights > 0], dtype=np.int64)


def face_model_from_arrays(
    vertices: np.ndarray,
    uv: np.ndarray | None = None,
    triangles: np.ndarray | None = None,
    procrustes_ids: np.ndarray | None = None,
    procrustes_weights: np.ndarray | None = None,
) -> FaceModel:
    """A FaceModel from canonical-model arrays (vertices in MediaPipe's own frame: y up, z towards the viewer)."""
    vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    n = len(vertices)
    ids = np.arange(n) if procrustes_ids is None else np.asarray(procrustes_ids, dtype=np.int64).reshape(-1)
    weights = np.ones(len(ids)) if procrustes_weights is None else np.asarray(procrustes_weights, np.float64)
    return FaceModel(
        vertices=vertices * _TO_HEAD_FRAME,
        uv=np.zeros((n, 2)) if uv is None else np.asarray(uv, dtype=np.float64).reshape(n, 2),
        triangles=np.zeros((0, 3), np.int64) if triangles is None else np.asarray(triangles, np.int64).reshape(-1, 3),
        procrustes_ids=ids,
        procrustes_weights=weights.reshape(-1),
    )


def as_face_model(model: FaceModel | Mapping[str, np.ndarray]) -> FaceModel:
    """A FaceModel, or one built from the npz's arrays as a mapping (vertices, uv, triangles, procrustes_*)."""
    if isinstance(model, FaceModel):
        return model
    return face_model_from_arrays(
        model["vertices"],
        model.get("uv"),
        model.get("triangles"),
        model.get("procrustes_ids"),
        model.get("procrustes_weights"),
    )


def load_face_model(path: str | Path) -> FaceModel:
    """Load `canonical_face_model.npz` (vertices, uv, triangles, procrustes_ids, procrustes_weights)."""
    with np.load(str(path)) as data:
        return as_face_model({key: data[key] for key in data.files})


def camera_matrix(width: int, height: int, vertical_fov_deg: float = VERTICAL_FOV_DEG) -> np.ndarray:
    """3x3 intrinsics of MediaPipe's face-geometry camera for a width x height frame."""
    f = (height / 2.0) / math.tan(math.radians(vertical_fov_deg) / 2.0)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def solve_head_pose(
    points: np.ndarray,
    model: FaceModel,
    width: int,
    height: int,
    guess: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rotation (3, 3) and translation (3,) in cm of the head frame, from face-mesh points (468+, >= 2) in pixels.

    `guess` is a previous (R, t) to start from (video); without it SQPnP finds the global optimum.
    """
    ids = model.fit_ids
    obj = np.ascontiguousarray(model.vertices[ids], dtype=np.float64)
    img = np.ascontiguousarray(np.asarray(points, dtype=np.float64)[ids, :2])
    k = camera_matrix(width, height)
    if guess is not None and np.all(np.isfinite(guess[0])) and np.all(np.isfinite(guess[1])):
        rvec = np.asarray(cv2.Rodrigues(np.asarray(guess[0], dtype=np.float64))[0], dtype=np.float64)
        tvec = np.asarray(guess[1], dtype=np.float64).reshape(3, 1).copy()
    else:
        ok, r0, t0 = cv2.solvePnP(obj, img, k, None, flags=cv2.SOLVEPNP_SQPNP)
        if not ok:
            raise ValueError("head pose: solvePnP failed")
        rvec, tvec = np.asarray(r0, dtype=np.float64), np.asarray(t0, dtype=np.float64)
    r1, t1 = cv2.solvePnPRefineLM(obj, img, k, None, rvec, tvec)
    rotation = np.asarray(cv2.Rodrigues(np.asarray(r1, dtype=np.float64))[0], dtype=np.float64)
    return rotation, np.asarray(t1, dtype=np.float64).reshape(3)


def project(points3d: np.ndarray, rotation: np.ndarray, translation: np.ndarray, width: int, height: int) -> np.ndarray:
    """Head-frame points (N, 3) in cm -> image pixels (N, 2) with the face-geometry camera.

    Points at or behind the camera plane (z <= 1 mm) come back as NaN.
    """
    cam = np.asarray(points3d, dtype=np.float64).reshape(-1, 3) @ np.asarray(rotation, np.float64).T
    cam = cam + np.asarray(translation, dtype=np.float64).reshape(1, 3)
    k = camera_matrix(width, height)
    z = cam[:, 2:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = (cam[:, :2] * np.array([k[0, 0], k[1, 1]])) / z + np.array([k[0, 2], k[1, 2]])
    uv[(z[:, 0] <= 0.1)] = np.nan
    return np.asarray(uv, dtype=np.float64)


def euler_angles(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees with R = Rz(roll) @ Ry(yaw) @ Rx(pitch), about the camera axes.

    All three are 0 for a face looking into the camera. yaw > 0: the nose turns towards the image left;
    pitch > 0: the face looks down; roll > 0: the face tilts clockwise on screen.
    """
    r = np.asarray(rotation, dtype=np.float64)
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, -r[2, 0]))))
    pitch = math.degrees(math.atan2(r[2, 1], r[2, 2]))
    roll = math.degrees(math.atan2(r[1, 0], r[0, 0]))
    return yaw, pitch, roll
