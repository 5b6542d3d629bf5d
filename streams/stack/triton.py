"""The real Triton Inference Server from the nvidia-pytriton wheel, serving triton_repo/ on CPU.

The wheel carries `tritonserver` with the python backend only; models run in their own venv
(.cache/venv-models: numpy<2, onnxruntime, OpenCV), which `VTO_TRITON_PYTHONPATH` puts on the stub's
sys.path (the stub ignores PYTHONPATH). See FIELD_NOTES §1.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from streams.errors import StackError
from streams.settings import ROOT, Settings
from streams.stack import tritonserver
from streams.stack.procs import Service, wait_until

PYTRITON = "nvidia-pytriton==0.7.0"
REQUIRED_MODELS = (
    "pose_detection",
    "pose_landmark_full",
    "face_detection_short_range",
    "face_landmark",
    "iris_landmark",
    "palm_detection_full",
    "hand_landmark_full",
    "selfie_segmentation",
)


def install_dir(settings: Settings) -> Path:
    return settings.cache_dir / "tritonserver"


def ensure_installed(settings: Settings) -> Path:
    """Unpack tritonserver from the pytriton wheel (downloaded once) and put the 3.11 stub in place."""
    home = install_dir(settings) / "pytriton" / "tritonserver"
    if (home / "backends" / "python" / "triton_python_backend_stub").exists():
        return home
    wheels = settings.cache_dir / "wheels"
    found = sorted(wheels.glob("nvidia_pytriton-0.7.0-*.whl"))
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), PYTRITON], check=True
        )
        found = sorted(wheels.glob("nvidia_pytriton-0.7.0-*.whl"))
    return tritonserver.unpack(found[0], install_dir(settings), "3.11")


def models_site_packages(settings: Settings) -> Path:
    found = sorted((settings.cache_dir / "venv-models" / "lib").glob("python3.*/site-packages"))
    if not found:
        raise StackError("the models' venv is missing: run `make models`")
    return found[0]


def service(settings: Settings) -> Service:
    return Service("triton", settings.run_dir)


def grpc_port(settings: Settings) -> int:
    return int(settings.triton_grpc_url.rsplit(":", 1)[1])


def ready(settings: Settings) -> bool:
    url = f"http://127.0.0.1:{settings.triton_http_port}/v2/health/ready"
    with urllib.request.urlopen(url, timeout=2) as resp:
        return bool(resp.status == 200)


def start(settings: Settings, timeout: float = 180.0) -> None:
    missing = [m for m in REQUIRED_MODELS if not (settings.triton_repo / m / "1" / "model.onnx").exists()]
    if missing:
        raise StackError(f"models not built ({', '.join(missing)}): run `make models`")
    home = ensure_installed(settings)
    svc = service(settings)
    ports = {"http": settings.triton_http_port, "grpc": grpc_port(settings), "metrics": settings.triton_metrics_port}
    svc.start(
        tritonserver.command(home, settings.triton_repo, ports, settings.bind_address),
        env={
            **tritonserver.environment([models_site_packages(settings), ROOT], settings.catalogue_dir),
            "VTO_TRYON_MODELS": settings.tryon_models,
        },
    )
    wait_until(svc, lambda: ready(settings), timeout, "Triton models")


@contextlib.contextmanager
def running(settings: Settings) -> Iterator[None]:
    """Use the Triton that is up, or start one for the duration of the block (CLI commands, benchmarks)."""
    try:
        ready(settings)
        started_here = False
    except OSError:
        start(settings)
        started_here = True
    try:
        yield
    finally:
        if started_here:
            stop(settings)


def stop(settings: Settings) -> bool:
    return service(settings).stop()
