"""The `tryon` model without Triton, Kafka or a worker: the same code (streams/serving/tryon.py: decode, perception,
fit, render, encode) in this process, each of its BLS calls answered by onnxruntime on the same ONNX files with
the same thread settings. The in-process baseline of `make bench` (loadtest/bench.py), which runs it with the
models' venv (numpy < 2, onnxruntime: what Triton's python backend runs):

    .cache/venv-models/bin/python -m streams.serving.inprocess FRAMES_DIR --sessions 2 --item tee-breton-stripes

FRAMES_DIR holds <session>/<nnnn>.jpg; each session's frames go through in order with the tracking state the last
one left, one frame of every session per batch (as the workers' micro-batches reach Triton). Prints JSON: per
frame its session, index, the time its batch took and the shopper's keypoints (x, y px), and the frames per second
over the run.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import types
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


class Tensor:
    def __init__(self, name: str, array: Any) -> None:
        self.name, self.array = name, np.asarray(array)

    def as_numpy(self) -> np.ndarray:
        return self.array


class TritonError:
    def __init__(self, message: str) -> None:
        self.text = message

    def message(self) -> str:
        return self.text


class TritonModelException(Exception):
    pass


class Response:
    def __init__(self, output_tensors: list[Tensor] | None = None, error: TritonError | None = None) -> None:
        self.outputs = {t.name: t for t in output_tensors or []}
        self.error_ = error

    def has_error(self) -> bool:
        return self.error_ is not None

    def error(self) -> TritonError | None:
        return self.error_


class Request:
    """A request to `tryon` (its input tensors by name), or a BLS request to another model (`exec` runs it)."""

    sessions: ClassVar[dict[str, tuple[Any, str]]] = {}  # model -> (onnxruntime session, input name)

    def __init__(self, model_name: str = "", requested_output_names: Any = (), inputs: Any = (), **named: Any):
        self.model, self.wanted = model_name, list(requested_output_names)
        self.inputs = {t.name: t.array for t in inputs} | named

    def exec(self) -> Response:
        session, input_name = self.sessions[self.model]
        try:
            arrays = session.run(self.wanted, {input_name: next(iter(self.inputs.values()))})
        except Exception as exc:
            return Response(error=TritonError(f"onnxruntime failed: {exc}"))
        return Response([Tensor(n, a) for n, a in zip(self.wanted, arrays, strict=True)])


def backend_module() -> types.ModuleType:
    """What streams/serving/tryon.py imports as triton_python_backend_utils."""
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor = Tensor  # type: ignore[attr-defined]
    module.TritonError = TritonError  # type: ignore[attr-defined]
    module.TritonModelException = TritonModelException  # type: ignore[attr-defined]
    module.InferenceResponse = Response  # type: ignore[attr-defined]
    module.InferenceRequest = Request  # type: ignore[attr-defined]
    module.get_input_tensor_by_name = lambda r, n: Tensor(n, r.inputs[n]) if n in r.inputs else None  # type: ignore[attr-defined]
    module.get_output_tensor_by_name = lambda r, n: r.outputs.get(n)  # type: ignore[attr-defined]
    module.Logger = types.SimpleNamespace(log_error=lambda message: print(message, file=sys.stderr))  # type: ignore[attr-defined]
    return module


def _config(path: Path) -> tuple[str, int]:
    """A model's first input name and its onnxruntime intra-op threads, from its config.pbtxt."""
    text = path.read_text()
    name = re.search(r'input \[ \{ name: "([^"]+)"', text)
    threads = re.search(r'key: "intra_op_threads" value \{ string_value: "(\d+)"', text)
    return (name.group(1) if name else "input_1"), int(threads.group(1)) if threads else 1


def load(repo: Path) -> Any:
    """The tryon model, initialised as Triton would, with onnxruntime sessions for the models it calls."""
    import onnxruntime as ort

    for folder in sorted(p for p in repo.iterdir() if (p / "1" / "model.onnx").exists()):
        input_name, threads = _config(folder / "config.pbtxt")
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(str(folder / "1" / "model.onnx"), options, providers=["CPUExecutionProvider"])
        Request.sessions[folder.name] = (session, input_name)
    sys.modules["triton_python_backend_utils"] = backend_module()
    from streams.serving.tryon import TritonPythonModel

    model = TritonPythonModel()
    params = {"jpeg_quality": {"string_value": "85"}}
    model.initialize(
        {
            "model_config": json.dumps({"parameters": params}),
            "model_repository": str(repo / "tryon"),
            "model_version": "1",
        }
    )
    return model


def tryon_request(image: bytes, state: bytes, time_us: int, item: str, features: tuple[bool, bool, bool]) -> Request:
    """The inputs the stream worker sends (streams/inference.py `tryon_inputs`)."""
    return Request(
        IMAGE=np.array([[image]], dtype=np.object_),
        RENDER=np.array([[True]]),
        STATE=np.array([[state]], dtype=np.object_),
        CAPTURE_TIME_US=np.array([[time_us]], dtype=np.int64),
        FEATURES=np.array([list(features)], dtype=np.bool_),
        MAX_PEOPLE=np.array([[1]], dtype=np.int32),
        ITEM_ID=np.array([[item.encode()]], dtype=np.object_),
        HEIGHT_CM=np.array([[0.0]], dtype=np.float32),
        FIT_PREFERENCE=np.array([[0]], dtype=np.int32),
    )


def run(frames_dir: Path, item: str, features: tuple[bool, bool, bool], fps: float, repo: Path) -> dict[str, Any]:
    model = load(repo)
    sessions = {d.name: sorted(d.glob("*.jpg")) for d in sorted(frames_dir.iterdir()) if d.is_dir()}
    warm = next(iter(sessions.values()))[0].read_bytes()
    for _ in range(3):  # Triton warms its models up at load time too
        model.execute([tryon_request(warm, b"", 0, item, features)])
    states = dict.fromkeys(sessions, b"")
    timings: list[dict[str, Any]] = []
    started = time.perf_counter()
    for index in range(max(len(f) for f in sessions.values())):
        batch = [s for s, f in sessions.items() if index < len(f)]
        requests = [
            tryon_request(sessions[s][index].read_bytes(), states[s], int(1e6 + index * 1e6 / fps), item, features)
            for s in batch
        ]
        t = time.perf_counter()
        responses = model.execute(requests)
        took = time.perf_counter() - t
        for s, response in zip(batch, responses, strict=True):
            if response.has_error():
                raise RuntimeError(f"{s} frame {index}: {response.error().message()}")
            states[s] = bytes(response.outputs["STATE"].array[0][0])
            keypoints = response.outputs["KEYPOINTS"].array[0][:, :2]
            timings.append(
                {"session": s, "index": index, "seconds": took, "keypoints": np.round(keypoints, 2).tolist()}
            )
    elapsed = time.perf_counter() - started
    return {"frames": len(timings), "seconds": elapsed, "fps": len(timings) / elapsed, "frames_timed": timings}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the tryon model in-process (the bench's baseline)")
    parser.add_argument("frames", type=Path)
    parser.add_argument("--item", default="")
    parser.add_argument("--features", default="face,mask", help="perception on every frame: face,hands,mask")
    parser.add_argument("--fps", type=float, default=15.0, help="capture times of the frames (tracking, smoothing)")
    parser.add_argument("--repo", type=Path, default=ROOT / "triton_repo")
    args = parser.parse_args(argv)
    wanted = set(args.features.split(","))
    features = ("face" in wanted, "hands" in wanted, "mask" in wanted)
    print(json.dumps(run(args.frames, args.item, features, args.fps, args.repo)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
