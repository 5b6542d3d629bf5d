"""Triton python-backend model that runs one ONNX file with onnxruntime, batching all queued requests.

Used for `pose_detection` and `pose_landmark_full`. On GPU hosts running NVIDIA's Triton container the same
ONNX files can be served by the onnxruntime or TensorRT backend instead; the tensor names do not change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", "1"))
        options.inter_op_num_threads = 1
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        if not path.exists():
            raise pb_utils.TritonModelException(f"{path} is missing: run `make models`")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = config["input"][0]["name"]
        self.output_names = [o["name"] for o in config["output"]]

    def execute(self, requests: list[Any]) -> list[Any]:
        arrays = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        wanted = sorted({name for r in requests for name in (r.requested_output_names() or self.output_names)})
        try:
            outputs = self.session.run(wanted, {self.input_name: np.concatenate(arrays)})
        except Exception as exc:  # a bad batch fails its requests, not the model
            error = pb_utils.TritonError(f"onnxruntime failed: {exc}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        responses, start = [], 0
        for request, array in zip(requests, arrays, strict=True):
            end = start + array.shape[0]
            names = request.requested_output_names() or self.output_names
            tensors = [
                pb_utils.Tensor(n, np.ascontiguousarray(out[start:end]))
                for n, out in zip(wanted, outputs, strict=True)
                if n in names
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start = end
        return responses
