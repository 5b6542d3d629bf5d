"""The bundled tritonserver: unpacked from the nvidia-pytriton wheel, and the command line and environment it runs
with. Standard library only: the embedded stack (streams/stack/triton.py) and a bare GPU host's bare Python
(loadtest/gpu_host.py) both use it. See FIELD_NOTES §1.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

from streams.errors import StackError

# numpy's OpenBLAS keeps a thread per core spinning after each call: in the tryon model that cost several times its
# own CPU per request, taking a core from Kafka and the workers (docs/performance.md).
SINGLE_THREADED_BLAS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def unpack(wheel: Path, into: Path, python: str) -> Path:
    """The server and its bundled libraries (found through RPATH $ORIGIN/../../../nvidia_pytriton.libs) from the
    wheel into `into`, with the python-backend stub for `python` ("3.11") in place; returns the server's home."""
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if m.startswith(("pytriton/tritonserver/", "nvidia_pytriton.libs/"))]
        zf.extractall(into, members)
    home = into / "pytriton" / "tritonserver"
    (home / "bin" / "tritonserver").chmod(0o755)
    source = home / "python_backend_stubs" / python / "triton_python_backend_stub"
    if not source.exists():
        raise StackError(f"the bundled server has no python-backend stub for Python {python}")
    stub = home / "backends" / "python" / "triton_python_backend_stub"
    shutil.copy2(source, stub)
    stub.chmod(0o755)
    return home


def command(home: Path, repo: Path, ports: dict[str, int], address: str) -> list[str]:
    """tritonserver serving `repo`; `ports` by kind ("http", "grpc", "metrics"), all listening on `address`."""
    return [
        str(home / "bin" / "tritonserver"),
        f"--backend-directory={home / 'backends'}",
        *(f"--{kind}-port={port}" for kind, port in ports.items()),
        *(f"--{kind}-address={address}" for kind in ports),
        "--log-verbose=0",
        f"--model-repository={repo}",
    ]


def environment(pythonpath: list[Path], catalogue: Path) -> dict[str, str]:
    """What the models' code needs: its site-packages and the project on the stub's sys.path (the stub ignores
    PYTHONPATH: triton_repo/*/1/model.py reads VTO_TRITON_PYTHONPATH), the catalogue, one BLAS thread."""
    return {
        "VTO_TRITON_PYTHONPATH": os.pathsep.join(str(p) for p in pythonpath),
        "VTO_CATALOGUE_DIR": str(catalogue),
        **SINGLE_THREADED_BLAS,
    }
