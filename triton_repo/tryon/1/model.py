"""Triton entry point for tryon; the code is streams/serving/tryon.py."""

import os
import sys

sys.path[:0] = [p for p in os.environ.get("VTO_TRITON_PYTHONPATH", "").split(os.pathsep) if p]

from streams.serving.tryon import TritonPythonModel  # noqa: E402,F401
