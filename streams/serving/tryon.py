"""Triton python-backend model `tryon`: encoded frame in; keypoints, pose score and the rendered frame out.

decode -> pose_detection (BLS) -> rotated ROI -> pose_landmark_full (BLS) -> render -> encode. All requests
that Triton's dynamic batcher hands over run through each model in one batch. A request whose image cannot be
decoded gets an error response of its own; the others in the batch go on.
"""

from __future__ import annotations

import json
import time
from typing import Any

import cv2
import numpy as np
import triton_python_backend_utils as pb_utils

from streams.vision import blazepose
from streams.vision.render import draw_skeleton

MAX_SIDE = 4096
TIMING_STAGES = ("decode", "pose_detection", "pose_landmark", "render", "encode")


def _bls(model: str, input_name: str, batch: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
    request = pb_utils.InferenceRequest(
        model_name=model, requested_output_names=outputs, inputs=[pb_utils.Tensor(input_name, batch)]
    )
    response = request.exec()
    if response.has_error():
        raise pb_utils.TritonModelException(f"{model}: {response.error().message()}")
    return [pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in outputs]


def _decode(data: bytes) -> np.ndarray:
    """Encoded JPEG/PNG -> BGR image; ValueError with the reason when it is not one."""
    if not data:
        raise ValueError("bad image: empty")
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("bad image: bytes do not decode as JPEG or PNG")
    if max(bgr.shape[:2]) > MAX_SIDE:
        raise ValueError(f"bad image: {bgr.shape[1]}x{bgr.shape[0]} is larger than {MAX_SIDE} px")
    return bgr


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.jpeg_quality = int(params.get("jpeg_quality", "85"))

    def _detect(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        boxes, scores = _bls("pose_detection", "input_1", batch, ["Identity", "Identity_1"])
        return boxes, scores

    def _landmarks(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raw, flags = _bls("pose_landmark_full", "input_1", batch, ["Identity", "Identity_1"])
        return raw, flags

    def execute(self, requests: list[Any]) -> list[Any]:
        timings = np.zeros(len(TIMING_STAGES), dtype=np.float32)
        t0 = time.perf_counter()
        images: dict[int, np.ndarray] = {}
        errors: dict[int, str] = {}
        render: dict[int, bool] = {}
        for i, request in enumerate(requests):
            data = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy().reshape(-1)[0]
            flag = pb_utils.get_input_tensor_by_name(request, "RENDER")
            render[i] = True if flag is None else bool(flag.as_numpy().reshape(-1)[0])
            try:
                images[i] = _decode(bytes(data))
            except ValueError as exc:
                errors[i] = str(exc)
        t1 = time.perf_counter()
        timings[0] = t1 - t0

        order = sorted(images)
        rgbs = [cv2.cvtColor(images[i], cv2.COLOR_BGR2RGB) for i in order]
        stage_clock = {"detect": 0.0, "landmarks": 0.0}

        def timed(fn: Any, key: str) -> Any:
            def run(batch: np.ndarray) -> Any:
                start = time.perf_counter()
                try:
                    return fn(batch)
                finally:
                    stage_clock[key] += time.perf_counter() - start

            return run

        try:
            poses = blazepose.estimate(rgbs, timed(self._detect, "detect"), timed(self._landmarks, "landmarks"))
        except pb_utils.TritonModelException as exc:
            error = pb_utils.TritonError(f"pose models failed: {exc}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        timings[1], timings[2] = stage_clock["detect"], stage_clock["landmarks"]

        encoded: dict[int, bytes] = {}
        for i, pose in zip(order, poses, strict=True):
            if not render[i]:
                continue
            t = time.perf_counter()
            bgr = draw_skeleton(images[i], pose.keypoints) if pose.found else images[i]
            t2 = time.perf_counter()
            ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            timings[3] += t2 - t
            timings[4] += time.perf_counter() - t2
            encoded[i] = buf.tobytes() if ok else b""

        by_index = dict(zip(order, poses, strict=True))
        responses = []
        for i in range(len(requests)):
            if i in errors:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(errors[i])))
                continue
            pose = by_index[i]
            keypoints = pose.keypoints if pose.found else blazepose.NO_POSE.keypoints
            tensors = [
                pb_utils.Tensor("KEYPOINTS", keypoints[None].astype(np.float32)),
                pb_utils.Tensor("POSE_SCORE", np.array([[pose.score]], dtype=np.float32)),
                pb_utils.Tensor("IMAGE_SIZE", np.array([images[i].shape[:2]], dtype=np.int32)),
                pb_utils.Tensor("RENDERED", np.array([[encoded.get(i, b"")]], dtype=np.object_)),
                pb_utils.Tensor("TIMINGS", timings[None]),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
