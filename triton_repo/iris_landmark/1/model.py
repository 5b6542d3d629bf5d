"""Triton entry point for iris_landmark; the code is streams/serving/onnx_model.py."""

import os
import sys

sys.path[:0] = [p for p in os.environ.get("VTO_TRITON_PYTHONPATH", "").split(os.pathsep) if p]

from streams.serving.onnx_model import TritonPythonModel  # noqa: E402,F401
