"""Real 478-point face meshes with their photos (MediaPipe's golden outputs in ../shared/data/keypoints)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

MESHES = {
    "portrait": ("keypoints/tfjs_portrait_face/portrait_face_landmarks.json", "portrait.jpg"),
    "business": ("keypoints/mps_business_person_face/business-person_face_landmarks478.json", "business-person.png"),
}


def load_mesh(data_dir: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(478, 3) points in pixels (z scaled like x) and the BGR photo they were found on."""
    path, image_name = MESHES[name]
    data = json.loads((data_dir / path).read_text())
    block = data.get("mediapipe_face_landmarker_478_normalized", data)
    w, h = data["width"], data["height"]
    points = np.array([[p["x"] * w, p["y"] * h, p.get("z", 0.0) * w] for p in block["landmarks"]], np.float64)
    assert points.shape == (478, 3)
    bgr = cv2.imread(str((data_dir / path).parent / image_name))
    assert bgr is not None and bgr.shape[:2] == (h, w)
    return points, bgr
