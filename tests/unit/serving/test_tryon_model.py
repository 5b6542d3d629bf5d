"""The Triton `tryon` model's execute() with a stand-in for Triton's python-backend module: one request's
failure stays that request's. (The real server runs it in tests/integration; there no frame can be made to break
perception on purpose.)"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import pytest

from streams.proto.vto.v1.perception_pb2 import Perception
from streams.proto.vto.v1.session_state_pb2 import PerceptionState
from streams.serving.inprocess import Request, backend_module
from streams.settings import ROOT
from streams.tryon.catalogue import Catalogue
from streams.vision import blazepose


@pytest.fixture
def tryon(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", backend_module())
    monkeypatch.delitem(sys.modules, "streams.serving.tryon", raising=False)
    import streams.serving.tryon as module

    yield module
    sys.modules.pop("streams.serving.tryon", None)


def _model(module: Any) -> Any:
    model = module.TritonPythonModel.__new__(module.TritonPythonModel)  # what initialize() sets, without Triton
    model.jpeg_quality = 85
    model.canonical_face = {}
    model.catalogue = Catalogue(ROOT / "catalogue")
    model.timings = np.zeros(len(module.TIMING_STAGES), dtype=np.float32)
    model._models = lambda: None
    return model


def _request(width: int) -> Request:
    jpeg = cv2.imencode(".jpg", np.full((48, width, 3), 128, np.uint8))[1].tobytes()
    return Request(
        IMAGE=np.array([[jpeg]], dtype=np.object_),
        RENDER=np.array([[True]]),
        ITEM_ID=np.array([[b"tee-navy"]], dtype=np.object_),
    )


def _no_pose(frame: Any) -> Any:
    from streams.serving.perception import FrameOutput

    return FrameOutput(blazepose.NO_POSE.keypoints, 0.0, Perception(), PerceptionState())


def test_a_frame_that_breaks_perception_fails_alone(tryon: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def perceive(frames: list[Any], models: Any, canonical_face: Any) -> list[Any]:
        calls.append(len(frames))
        if any(f.rgb.shape[1] == 13 for f in frames):  # the poisoned frame: 13 px wide
            raise ValueError("cannot reshape array")
        return [_no_pose(f) for f in frames]

    monkeypatch.setattr(tryon.perception, "perceive", perceive)
    responses = _model(tryon).execute([_request(64), _request(13), _request(32)])
    assert calls == [3, 1, 1, 1]  # the batch, then each frame alone
    error = responses[1].error()
    assert error is not None and error.message().startswith("frame failed: perception: ValueError")
    for ok in (responses[0], responses[2]):
        assert ok.error() is None and ok.outputs["RENDERED"].array[0][0].startswith(b"\xff\xd8")


def test_a_model_that_is_down_fails_the_whole_batch(tryon: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def perceive(frames: list[Any], models: Any, canonical_face: Any) -> list[Any]:
        raise tryon.pb_utils.TritonModelException("pose_landmark_full: unavailable")

    monkeypatch.setattr(tryon.perception, "perceive", perceive)
    responses = _model(tryon).execute([_request(64), _request(32)])
    assert all(r.error() is not None and "perception models failed" in r.error().message() for r in responses)


def test_failing_size_advice_leaves_the_frame_rendered_without_it(tryon: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tryon.perception, "perceive", lambda frames, *_: [_no_pose(f) for f in frames])

    def broken_fold(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("a bug in the fit math")

    monkeypatch.setattr(tryon.fit_session, "fold", broken_fold)
    [response] = _model(tryon).execute([_request(64)])
    assert response.error() is None
    assert response.outputs["ADVICE"].array[0][0] == b""
    assert response.outputs["RENDERED"].array[0][0].startswith(b"\xff\xd8")


async def test_the_worker_dead_letters_a_frame_that_failed_instead_of_retrying_it() -> None:
    from tritonclient.utils import InferenceServerException

    from streams.errors import BadInput
    from streams.inference import TritonTryOn, TryOnRequest

    retries: list[int] = []
    client = TritonTryOn("127.0.0.1:1", "tryon", timeout_s=1.0, retries=3, on_retry=lambda: retries.append(1))

    async def infer(*args: Any, **kwargs: Any) -> Any:
        raise InferenceServerException("[StatusCode.INTERNAL] frame failed: perception: ValueError: bad reshape")

    client.client.infer = infer  # type: ignore[method-assign]
    try:
        with pytest.raises(BadInput) as info:
            await client.infer(TryOnRequest(b"\xff\xd8"))
    finally:
        await client.close()
    assert info.value.reason == "inference_failed" and "ValueError" in info.value.detail
    assert retries == []  # deterministic: retrying would fail the same way


@pytest.mark.parametrize(
    ("kind", "device_id", "params", "expected"),
    [
        ("GPU", "1", {}, ("cuda:1", False)),  # a bare GPU host: each instance's models on its own GPU
        ("GPU", "0", {"half": "true"}, ("cuda:0", True)),
        ("CPU", "0", {}, ("cpu", False)),  # the dry run of that path on a machine without a GPU
        ("GPU", "0", {"device": "cpu"}, ("cpu", False)),
    ],
)
def test_torch_mode_puts_the_perception_models_on_the_instances_device(
    tryon: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    kind: str,
    device_id: str,
    params: dict[str, str],
    expected: tuple[str, bool],
) -> None:
    """`models: torch` (tools/triton_configs.py --target gpu-host) asks streams/serving/torch_models.py for one
    session per perception model, on the device Triton gave the instance; the tryon model then calls them like
    onnxruntime sessions."""
    import json
    import types

    asked: list[tuple[Any, ...]] = []
    fake = types.ModuleType("streams.serving.torch_models")

    def sessions(repo: Any, models: Any, device: str, half: bool) -> dict[str, Any]:
        asked.append((repo, list(models), device, half))
        return {}

    fake.sessions = sessions  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "streams.serving.torch_models", fake)
    import streams.serving

    monkeypatch.setattr(streams.serving, "torch_models", fake, raising=False)  # were the real one imported before
    monkeypatch.delenv("VTO_TRYON_MODELS", raising=False)
    (tmp_path / "tryon" / "1").mkdir(parents=True)
    np.savez(tmp_path / "tryon" / "1" / "canonical_face_model.npz", vertices=np.zeros((3, 3)))
    parameters = {"models": {"string_value": "torch"}, **{k: {"string_value": v} for k, v in params.items()}}
    model = tryon.TritonPythonModel()
    model.initialize(
        {
            "model_config": json.dumps({"parameters": parameters}),
            "model_repository": str(tmp_path / "tryon"),
            "model_version": "1",
            "model_instance_kind": kind,
            "model_instance_device_id": device_id,
        }
    )
    assert asked == [(tmp_path, list(tryon.MODEL_STAGE), *expected)]
