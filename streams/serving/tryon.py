"""Triton python-backend model `tryon`: one encoded frame (+ the session's state) in; perception, the size
advice, the rendered frame and the session's next state out.

decode -> perception (streams/serving/perception.py: pose, face, hands, mask; each model a BLS call on the
whole batch) -> fit (streams/fit: items with a size chart) -> render -> encode. All requests that Triton's
dynamic batcher hands over go through each model in one batch. A request whose image cannot be decoded gets an
error response of its own ("bad image: ..."), and so does one that breaks perception ("frame failed: ...", found
by perceiving the batch's frames one by one); the others go on. A failing size advice leaves the frame without it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import triton_python_backend_utils as pb_utils

from streams.fit import session as fit_session
from streams.fit.scale import MAX_HEIGHT_CM, MIN_HEIGHT_CM
from streams.imageheader import BadImage, image_size
from streams.serving import perception
from streams.serving import state_codec as codec
from streams.tryon.catalogue import Catalogue
from streams.tryon.render import render as render_item
from streams.tryon.scene import HandView, Scene
from streams.vision import blazepose
from streams.vision.hands import subject_handedness

MAX_SIDE = 4096
FRAME_FAILED_PREFIX = "frame failed: "  # streams/inference.py dead-letters these (inference_failed), no retry
MAX_PEOPLE = 8
ROOT = Path(__file__).resolve().parents[2]
TIMING_STAGES = ("decode", "pose_detection", "pose_landmark", "face", "hands", "mask", "fit", "render", "encode")
MODEL_STAGE = {
    "pose_detection": "pose_detection",
    "pose_landmark_full": "pose_landmark",
    "face_detection_short_range": "face",
    "face_landmark": "face",
    "iris_landmark": "face",
    "palm_detection_full": "hands",
    "hand_landmark_full": "hands",
    "selfie_segmentation": "mask",
}


def _decode(data: bytes) -> np.ndarray:
    """Encoded JPEG/PNG -> BGR image; ValueError with the reason when it is not one."""
    if not data:
        raise ValueError("bad image: empty")
    try:
        width, height = image_size(data)  # before decoding: a tiny file may claim a huge canvas
    except BadImage as exc:
        raise ValueError(f"bad image: {exc}") from exc
    if max(width, height) > MAX_SIDE:
        raise ValueError(f"bad image: {width}x{height} is larger than {MAX_SIDE} px")
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("bad image: bytes do not decode as JPEG or PNG")
    return bgr


def _optional(request: Any, name: str) -> np.ndarray | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.jpeg_quality = int(params.get("jpeg_quality", "85"))
        npz = Path(args["model_repository"]) / args["model_version"] / "canonical_face_model.npz"
        if not npz.exists():
            raise pb_utils.TritonModelException(f"{npz} is missing: run `make models`")
        with np.load(npz) as data:
            self.canonical_face = {k: data[k] for k in data.files}
        # The catalogue the workers also read; reloaded when its files change (no restart for new items).
        self.catalogue = Catalogue(Path(os.environ.get("VTO_CATALOGUE_DIR") or ROOT / "catalogue"))
        self.timings = np.zeros(len(TIMING_STAGES), dtype=np.float32)
        # Where the perception models run: "bls", calls to their Triton models; "in_process", onnxruntime sessions
        # here; "torch", PyTorch modules converted from the same ONNX files, on this instance's GPU (a bare GPU host).
        self.local = {}
        repo, mode = Path(args["model_repository"]).parent, os.environ.get("VTO_TRYON_MODELS") or params.get("models")
        if mode == "in_process":
            self.local = self._local_sessions(repo)
        elif mode == "torch":
            from streams.serving import torch_models  # needs torch and onnx2torch (requirements/torch.lock)

            gpu = args.get("model_instance_kind") == "GPU"
            device = params.get("device") or (f"cuda:{args.get('model_instance_device_id', '0')}" if gpu else "cpu")
            self.local = torch_models.sessions(repo, MODEL_STAGE, device, half=params.get("half") == "true")

    @staticmethod
    def _local_sessions(repo: Path) -> dict[str, Any]:
        """An onnxruntime session per perception model, on the model.onnx its Triton model would serve."""
        import onnxruntime as ort

        sessions = {}
        for model in MODEL_STAGE:
            path = repo / model / "1" / "model.onnx"
            if not path.exists():
                raise pb_utils.TritonModelException(f"{path} is missing: run `make models`")
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
            sessions[model] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return sessions

    def _bls(self, model: str, outputs: list[str], input_name: str = "input_1") -> Callable[..., dict[str, np.ndarray]]:
        """A batched call of another Triton model: (N, ...) float32 input -> {output name: (N, ...)}."""
        stage = TIMING_STAGES.index(MODEL_STAGE[model])

        def call(batch: np.ndarray, wanted: list[str] | None = None) -> dict[str, np.ndarray]:
            started = time.perf_counter()
            names = wanted or outputs
            if model in self.local:
                try:
                    found = self.local[model].run(names, {input_name: np.ascontiguousarray(batch, dtype=np.float32)})
                except Exception as exc:
                    raise pb_utils.TritonModelException(f"{model}: {exc}") from exc
                self.timings[stage] += time.perf_counter() - started
                return dict(zip(names, found, strict=True))
            request = pb_utils.InferenceRequest(
                model_name=model,
                requested_output_names=names,
                inputs=[pb_utils.Tensor(input_name, np.ascontiguousarray(batch, dtype=np.float32))],
            )
            response = request.exec()
            self.timings[stage] += time.perf_counter() - started
            if response.has_error():
                raise pb_utils.TritonModelException(f"{model}: {response.error().message()}")
            return {name: pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in names}

        return call

    def _models(self) -> perception.Models:
        def ordered(
            model: str, outputs: list[str], input_name: str = "input_1"
        ) -> Callable[..., tuple[np.ndarray, ...]]:
            call = self._bls(model, outputs, input_name)
            return lambda batch: tuple(call(batch)[name] for name in outputs)

        selfie = self._bls("selfie_segmentation", ["activation_10"])
        return perception.Models(
            pose_detection=self._bls("pose_detection", ["Identity", "Identity_1"]),
            pose_landmarks=self._bls("pose_landmark_full", list(blazepose.LANDMARK_OUTPUTS)),
            face_detection=ordered("face_detection_short_range", ["regressors", "classificators"], "input"),
            face_landmarks=ordered("face_landmark", ["conv2d_21", "conv2d_31"]),
            iris=ordered("iris_landmark", ["output_eyes_contours_and_brows", "output_iris"]),
            palm_detection=self._bls("palm_detection_full", ["Identity", "Identity_1"]),
            hand_landmarks=self._bls("hand_landmark_full", ["Identity", "Identity_1", "Identity_2"]),
            selfie_segmentation=lambda batch: selfie(batch)["activation_10"],
        )

    @staticmethod
    def _scene(bgr: np.ndarray, frame: perception.FrameInput, result: perception.FrameOutput) -> Scene:
        return Scene(
            bgr=bgr,
            time_s=frame.time_s,
            keypoints=result.keypoints if result.pose_score >= blazepose.MIN_POSE_PRESENCE else None,
            face=result.face_points,
            head_rotation=result.head_rotation,
            head_translation=result.head_translation,
            hands=[HandView(subject_handedness(h), h.points) for h in result.hands],
            mask=result.mask,
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        self.timings[:] = 0
        t0 = time.perf_counter()
        images: dict[int, np.ndarray] = {}
        errors: dict[int, str] = {}
        inputs: dict[int, perception.FrameInput] = {}
        render: dict[int, bool] = {}
        items: dict[int, str] = {}
        heights: dict[int, float] = {}
        preferences: dict[int, int] = {}
        for i, request in enumerate(requests):
            data = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy().reshape(-1)[0]
            try:
                images[i] = _decode(bytes(data))
            except ValueError as exc:
                errors[i] = str(exc)
                continue
            flag = _optional(request, "RENDER")
            render[i] = True if flag is None else bool(flag.reshape(-1)[0])
            item = _optional(request, "ITEM_ID")
            items[i] = bytes(item.reshape(-1)[0]).decode(errors="replace") if item is not None else ""
            height = _optional(request, "HEIGHT_CM")
            heights[i] = float(height.reshape(-1)[0]) if height is not None else 0.0
            if not MIN_HEIGHT_CM <= heights[i] <= MAX_HEIGHT_CM:
                heights[i] = 0.0  # not given (the worker refuses implausible heights before they get here)
            preference = _optional(request, "FIT_PREFERENCE")
            preferences[i] = int(preference.reshape(-1)[0]) if preference is not None else 0
            state = _optional(request, "STATE")
            capture = _optional(request, "CAPTURE_TIME_US")
            features = _optional(request, "FEATURES")
            people = _optional(request, "MAX_PEOPLE")
            client = _optional(request, "CLIENT_KEYPOINTS")
            face, hands, mask = (bool(v) for v in features.reshape(-1)[:3]) if features is not None else (0, 0, 0)
            time_us = int(capture.reshape(-1)[0]) if capture is not None else 0
            inputs[i] = perception.FrameInput(
                rgb=cv2.cvtColor(images[i], cv2.COLOR_BGR2RGB),
                time_s=time_us / 1e6,
                state=codec.parse_state(bytes(state.reshape(-1)[0]) if state is not None else b""),
                face=bool(face),
                hands=bool(hands),
                mask=bool(mask),
                max_people=min(MAX_PEOPLE, max(1, int(people.reshape(-1)[0]))) if people is not None else 1,
                client_keypoints=client.reshape(33, 4) if client is not None and client.size == 33 * 4 else None,
                video=time_us > 0,
            )
        self.timings[0] = time.perf_counter() - t0

        order = sorted(inputs)
        models = self._models()
        try:
            results = perception.perceive([inputs[i] for i in order], models, self.canonical_face)
            by_index = dict(zip(order, results, strict=True))
        except pb_utils.TritonModelException as exc:  # a model is down: every frame of the batch is affected
            error = pb_utils.TritonError(f"perception models failed: {exc}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        except Exception:
            # Something in one frame broke the batch: perceive each frame alone, so only that one fails.
            by_index = {}
            for i in order:
                try:
                    by_index[i] = perception.perceive([inputs[i]], models, self.canonical_face)[0]
                except pb_utils.TritonModelException as exc:
                    errors[i] = f"perception models failed: {exc}"
                except Exception as exc:
                    errors[i] = f"{FRAME_FAILED_PREFIX}perception: {type(exc).__name__}: {exc}"
            order = [i for i in order if i in by_index]

        self.catalogue.reload_if_changed()
        encoded: dict[int, bytes] = {}
        advice: dict[int, bytes] = {}
        for i in order:
            result, wanted = by_index[i], self.catalogue.get(items[i])
            scene = self._scene(images[i], inputs[i], result)
            # The session's fit measurements travel in its tracking state, untouched by items without a chart.
            result.state.fit.CopyFrom(inputs[i].state.fit)
            if wanted is not None and wanted.size_chart:
                t = time.perf_counter()
                try:
                    fit = fit_session.fold(codec.fit_from_proto(inputs[i].state.fit), scene, heights[i] or None)
                    report = fit_session.advise(fit, wanted, codec.fit_preference(preferences[i]))
                    message = codec.advice_to_proto(report, wanted.id, preferences[i])
                    codec.fit_to_proto(fit, result.state.fit)
                    advice[i] = message.SerializeToString() if message is not None else b""
                except Exception as exc:  # size advice is an extra: the frame still renders, without it
                    pb_utils.Logger.log_error(f"fit failed for item {wanted.id}: {type(exc).__name__}: {exc}")
                self.timings[TIMING_STAGES.index("fit")] += time.perf_counter() - t
            if not render[i]:
                continue
            t = time.perf_counter()
            # render() never raises: a failing renderer returns the frame without the item (and logs it)
            bgr = render_item(scene, wanted).bgr
            t2 = time.perf_counter()
            ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            self.timings[TIMING_STAGES.index("render")] += t2 - t
            self.timings[TIMING_STAGES.index("encode")] += time.perf_counter() - t2
            encoded[i] = buf.tobytes() if ok else b""

        responses = []
        for i in range(len(requests)):
            if i in errors:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(errors[i])))
                continue
            result = by_index[i]
            tensors = [
                pb_utils.Tensor("KEYPOINTS", result.keypoints[None].astype(np.float32)),
                pb_utils.Tensor("POSE_SCORE", np.array([[result.pose_score]], dtype=np.float32)),
                pb_utils.Tensor("IMAGE_SIZE", np.array([images[i].shape[:2]], dtype=np.int32)),
                pb_utils.Tensor("RENDERED", np.array([[encoded.get(i, b"")]], dtype=np.object_)),
                pb_utils.Tensor("TIMINGS", self.timings[None].copy()),
                pb_utils.Tensor("PERCEPTION", np.array([[result.perception.SerializeToString()]], dtype=np.object_)),
                pb_utils.Tensor("STATE", np.array([[result.state.SerializeToString()]], dtype=np.object_)),
                pb_utils.Tensor("ADVICE", np.array([[advice.get(i, b"")]], dtype=np.object_)),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
