"""Model code executed inside Triton's python backend (numpy, OpenCV and onnxruntime; torch on a bare GPU host).

Each `triton_repo/<model>/1/model.py` puts `$VTO_TRITON_PYTHONPATH` on sys.path and imports its
`TritonPythonModel` from here. Nothing in this subpackage may import the worker's dependencies.
"""
