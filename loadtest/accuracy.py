"""Perception accuracy through the real Triton `tryon` model, against the references in ../shared/data.

Prints and writes loadtest/results/accuracy-<date>.json: pose error against MediaPipe's golden outputs (photo
mode), pose in video (tracking vs detection on every frame: error against the reference, detector runs per 100
frames), jitter on a still subject with and without smoothing, face-mesh error and PCK against the two 478-point
references, person-mask IoU against the reference mask, hands found. docs/perception.md quotes this file.

    .venv/bin/python loadtest/accuracy.py
"""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import tritonclient.grpc as grpc

from streams.inference import TryOnRequest, TryOnResult, session_results, tryon_inputs, tryon_result
from streams.proto.vto.v1.perception_pb2 import POSE_SOURCE_DETECTOR, Perception
from streams.sender import frames_of
from streams.serving.state_codec import face_points, parse_perception
from streams.settings import get_settings
from streams.stack import triton
from streams.vision.blazepose import KEYPOINT_NAMES
from streams.vision.segmentation import rle_decode

RESULTS = Path(__file__).with_name("results")


def stats(errors: np.ndarray, threshold: float | None = None) -> dict[str, float]:
    out = {"median_px": round(float(np.median(errors)), 2), "max_px": round(float(errors.max()), 2)}
    if threshold is not None:
        out["pck"] = round(float(np.mean(errors < threshold)), 3)
        out["pck_threshold_px"] = round(threshold, 1)
    return out


class Runner:
    def __init__(self, client: grpc.InferenceServerClient, data: Path) -> None:
        self.client, self.data = client, data

    def one(self, request: TryOnRequest) -> tuple[TryOnResult, Perception]:
        result = tryon_result(self.client.infer("tryon", tryon_inputs(request)))
        return result, parse_perception(result.perception)

    def video(
        self, images: list[bytes], fps: float, track: bool, **fields: bool
    ) -> list[tuple[TryOnResult, Perception]]:
        results = session_results(self.client, "tryon", images, fps if track else None, render=False, **fields)
        return [(result, parse_perception(result.perception)) for result in results]

    def pose_photos(self) -> dict[str, object]:
        yoga = json.loads((self.data / "keypoints/tfjs_pose_yoga/pose_blazepose33.json").read_text())
        sitting = json.loads((self.data / "keypoints/mps_pose_sitting/test_image_blazepose33.json").read_text())
        cases = {
            "yoga vs MediaPipe golden (photo)": (
                "keypoints/tfjs_pose_yoga/pose.jpg",
                yoga["mediapipe_expected_pose_landmarks_normalized"]["landmarks"],
                yoga,
            ),
            "sitting vs pose_landmarker_full (photo)": (
                "keypoints/mps_pose_sitting/test_image.jpg",
                sitting["results"]["pose_landmarker_full"],
                sitting,
            ),
        }
        out: dict[str, object] = {}
        for name, (image, marks, ref) in cases.items():
            expected = np.array([[p["x"] * ref["width"], p["y"] * ref["height"]] for p in marks])
            result, _ = self.one(TryOnRequest((self.data / image).read_bytes(), render=False))
            errors = np.linalg.norm(result.keypoints[:, :2] - expected, axis=1)
            torso = np.linalg.norm(expected[11] - expected[24])  # left shoulder to right hip
            out[name] = stats(errors, float(0.2 * torso))  # PCK@0.2 torso diameter
        return out

    def pose_video(self) -> dict[str, object]:
        folder = self.data / "keypoints/tfjs_pose_1_synthetic_video"
        reference = json.loads((folder / "pose_1.json").read_text())
        images = [data for data, *_ in frames_of(folder / "pose_1.mp4")]
        out: dict[str, object] = {}
        for mode, track in (("tracking + smoothing", True), ("detection every frame", False)):
            results = self.video(images, 30.0, track)
            errors = np.concatenate(
                [
                    [
                        np.hypot(*(r.keypoints[KEYPOINT_NAMES.index(name), :2] - [p["x"], p["y"]]))
                        for name, p in expected.items()
                    ]
                    for (r, _), expected in zip(results, reference, strict=True)
                ]
            )
            detector = sum(p.pose_source == POSE_SOURCE_DETECTOR for _, p in results)
            out[mode] = {
                **stats(errors),
                "detector_runs_per_100_frames": round(100 * detector / len(results), 1),
                "frames": len(results),
            }
        return out

    def jitter(self) -> dict[str, object]:
        bgr = np.asarray(cv2.imread(str(self.data / "people/images/fr_biden_full_body.jpg")))
        rng = np.random.default_rng(3)
        images = [
            cv2.imencode(".jpg", np.clip(bgr + rng.normal(0, 3.0, bgr.shape), 0, 255).astype(np.uint8))[1].tobytes()
            for _ in range(60)
        ]
        motion = {}
        for mode, track in (("without smoothing (photo mode)", False), ("with tracking + smoothing", True)):
            kps = np.array([r.keypoints[:25, :2] for r, _ in self.video(images, 15.0, track)[10:]])
            motion[mode] = round(float(np.linalg.norm(np.diff(kps, axis=0), axis=2).mean()), 2)
        raw, smooth = motion.values()
        return {
            "subject": "fr_biden_full_body.jpg x 60 at 15 fps, Gaussian noise sigma 3, keypoints 0-24",
            "mean_motion_px_per_frame": motion,
            "reduction_factor": round(raw / smooth, 1),
        }

    def faces(self) -> dict[str, object]:
        cases = {
            "portrait": ("keypoints/tfjs_portrait_face", "portrait.jpg", "portrait_face_landmarks.json"),
            "business-person": (
                "keypoints/mps_business_person_face",
                "business-person.png",
                "business-person_face_landmarks478.json",
            ),
        }
        out: dict[str, object] = {}
        for name, (folder, image, reference) in cases.items():
            ref = json.loads((self.data / folder / reference).read_text())
            marks = ref.get("landmarks") or ref["mediapipe_face_landmarker_478_normalized"]["landmarks"]
            expected = np.array([[p["x"] * ref["width"], p["y"] * ref["height"]] for p in marks])
            _, perception = self.one(TryOnRequest((self.data / folder / image).read_bytes(), render=False, face=True))
            errors = np.linalg.norm(face_points(perception.face)[:, :2] - expected, axis=1)
            out[name] = {**stats(errors, float(0.05 * np.ptp(expected[:, 0]))), "iris": stats(errors[468:])}
        return out

    def mask(self) -> dict[str, object]:
        folder = self.data / "keypoints/tfjs_pose_yoga"
        palette = np.asarray(cv2.imread(str(folder / "pose_segmentation.png")))
        reference = (palette[:, :, 0] > 127) & (palette[:, :, 2] < 128)
        _, perception = self.one(TryOnRequest((folder / "pose.jpg").read_bytes(), render=False, mask=True))
        mask = rle_decode(list(perception.mask.rle), perception.mask.height, perception.mask.width).astype(bool)
        return {"yoga IoU vs reference mask": round(float((mask & reference).sum() / (mask | reference).sum()), 3)}

    def hands(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for photo in ("people/images/rembg_arms_up_sunglasses_cap.jpg", "people/images/fr_two_people_upper_body.jpg"):
            _, perception = self.one(TryOnRequest((self.data / photo).read_bytes(), render=False, hands=True))
            out[photo] = [f"{h.handedness} {h.score:.2f}" for h in perception.hands]
        clip = [data for data, *_ in frames_of(self.data / "people/videos/mediapipe_selfie_upper_body.mp4")]
        frames_with_hands = sum(bool(perception.hands) for _, perception in self.video(clip, 30.0, True, hands=True))
        out["mediapipe_selfie_upper_body.mp4 frames with a hand"] = f"{frames_with_hands}/{len(clip)}"
        return out


def main() -> int:
    settings = get_settings()
    with triton.running(settings):
        client = grpc.InferenceServerClient(settings.triton_grpc_url)
        runner = Runner(client, settings.data_dir)
        report = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Triton on CPU",
            "pose_photos": runner.pose_photos(),
            "pose_video": runner.pose_video(),
            "jitter": runner.jitter(),
            "face_478": runner.faces(),
            "mask": runner.mask(),
            "hands": runner.hands(),
        }
        client.close()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"accuracy-{datetime.now(UTC).date()}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
