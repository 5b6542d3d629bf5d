"""The real Triton Inference Server from the nvidia-pytriton wheel, serving triton_repo/ on CPU.

The wheel carries `tritonserver` with the python backend only; models run in their own venv
(.cache/venv-models: numpy<2, onnxruntime, OpenCV), which `VTO_TRITON_PYTHONPATH` puts on the stub's
sys.path (the stub ignores PYTHONPATH). See FIELD_NOTES §1.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

from streams.errors import StackError
from streams.settings import ROOT, Settings
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
    stub = home / "backends" / "python" / "triton_python_backend_stub"
    if stub.exists():
        return home
    wheels = settings.cache_dir / "wheels"
    found = sorted(wheels.glob("nvidia_pytriton-0.7.0-*.whl"))
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), PYTRITON], check=True
        )
        found = sorted(wheels.glob("nvidia_pytriton-0.7.0-*.whl"))
    with zipfile.ZipFile(found[0]) as zf:
        # The server and its bundled libraries (found through RPATH $ORIGIN/../../../nvidia_pytriton.libs).
        members = [m for m in zf.namelist() if m.startswith(("pytriton/tritonserver/", "nvidia_pytriton.libs/"))]
        zf.extractall(install_dir(settings), members)
    (home / "bin" / "tritonserver").chmod(0o755)
    shutil.copy2(home / "python_backend_stubs" / "3.11" / "triton_python_backend_stub", stub)
    stub.chmod(0o755)
    return home


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
    pythonpath = f"{models_site_packages(settings)}:{ROOT}"
    svc.start(
        [
            str(home / "bin" / "tritonserver"),
            f"--backend-directory={home / 'backends'}",
            f"--http-port={settings.triton_http_port}",
            f"--grpc-port={grpc_port(settings)}",
            f"--metrics-port={settings.triton_metrics_port}",
            f"--http-address={settings.bind_address}",
            f"--grpc-address={settings.bind_address}",
            f"--metrics-address={settings.bind_address}",
            "--log-verbose=0",
            f"--model-repository={settings.triton_repo}",
        ],
        env={
            "VTO_TRITON_PYTHONPATH": pythonpath,
            "VTO_CATALOGUE_DIR": str(settings.catalogue_dir),
            "VTO_TRYON_MODELS": settings.tryon_models,
            # numpy's OpenBLAS keeps a thread per core spinning after each call: in the tryon model that cost several
            # times its own CPU per request, taking a core from Kafka and the workers (docs/performance.md).
            **SINGLE_THREADED_BLAS,
        },
    )
    wait_until(svc, lambda: ready(settings), timeout, "Triton models")


SINGLE_THREADED_BLAS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


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
