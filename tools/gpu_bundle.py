"""Build what a bare GPU host needs to run `loadtest/gpu_host.py`, for a host that reaches no package registry.

    .venv/bin/python tools/gpu_bundle.py [--python 3.12] [--out .cache/gpu-bundle] [--part-mib 54]

Writes OUT/part-1 ... part-N, each at most --part-mib (an upload limit: the device tool takes 64 MiB a call, the
working tree's ~8 MiB included), holding between them:
- wheels/: the pytriton wheel (the bundled tritonserver and its python-backend stubs) and, for the host's Python,
  the packages the `tryon` model and the load client need besides the host's own torch: numpy < 2 (the python
  backend's numpy route, FIELD_NOTES §1), OpenCV, protobuf, onnx + onnx2torch (the ONNX -> PyTorch conversion) and
  tritonclient[grpc];
- models/: the eight ONNX files and the canonical face model, as `make models` built them in triton_repo/;
- frames/<clip>/<nnnn>.jpg: the frames the load test sends, encoded once from the sample videos as a client would.
`loadtest/gpu_host.py --bundle OUT` reads the parts back as one.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from streams.stack.triton import REQUIRED_MODELS

ROOT = Path(__file__).resolve().parents[1]
REPO = ROOT / "triton_repo"
MODEL_FILES = [*(f"{m}/1/model.onnx" for m in REQUIRED_MODELS), "tryon/1/canonical_face_model.npz"]
# Pinned as requirements/models.lock and requirements/app.lock pin them; torch and torchvision are the host's.
WHEELS = [
    "numpy==1.26.4",
    "opencv-python-headless==4.10.0.84",
    "protobuf==6.33.6",
    "onnx==1.23.2",
    "tritonclient[grpc]==2.73.0",
]
NO_DEPS_WHEELS = ["onnx2torch==1.5.15"]  # its torch / torchvision requirements are met by the host's
PLATFORMS = ["manylinux_2_35_x86_64", "manylinux_2_28_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64", "any"]
FRAMES_PER_CLIP = 60


def download(python: str, into: Path) -> None:
    base = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--python-version", python, "-d"]
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run([*base, str(into), *platforms, *WHEELS], check=True)
    subprocess.run([*base, str(into), *platforms, "--no-deps", *NO_DEPS_WHEELS], check=True)


def frames(into: Path) -> None:
    from streams.sender import SAMPLE_VIDEOS, sample_clips  # the app's venv
    from streams.settings import get_settings

    for video, clip in zip(SAMPLE_VIDEOS, sample_clips(get_settings().data_dir), strict=True):
        (into / Path(video).stem).mkdir(parents=True, exist_ok=True)
        for index, (data, *_) in enumerate(clip[:FRAMES_PER_CLIP]):
            (into / Path(video).stem / f"{index:04d}.jpg").write_bytes(data)


def split(staging: Path, out: Path, part_bytes: int) -> list[Path]:
    """First fit, largest file first: each part a folder of the same relative paths, at most part_bytes."""
    files = sorted((p for p in staging.rglob("*") if p.is_file()), key=lambda p: -p.stat().st_size)
    parts: list[tuple[int, list[Path]]] = []
    for path in files:
        size = path.stat().st_size
        if size > part_bytes:
            raise SystemExit(f"{path.name} ({size} bytes) is larger than a part")
        for i, (used, members) in enumerate(parts):
            if used + size <= part_bytes:
                parts[i] = (used + size, [*members, path])
                break
        else:
            parts.append((size, [path]))
    for i, (_, members) in enumerate(parts, 1):
        for path in members:
            target = out / f"part-{i}" / path.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(path, target)
    return [out / f"part-{i}" for i in range(1, len(parts) + 1)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default="3.12", help="the GPU host's Python version (its stub and wheels)")
    parser.add_argument("--out", type=Path, default=ROOT / ".cache" / "gpu-bundle")
    parser.add_argument("--part-mib", type=float, default=54.0)
    args = parser.parse_args(argv)
    missing = [f for f in MODEL_FILES if not (REPO / f).is_file()]
    if missing:
        raise SystemExit(f"models not built ({', '.join(missing)}): run `make models`")
    pytriton = sorted((ROOT / ".cache" / "wheels").glob("nvidia_pytriton-0.7.0-*.whl"))
    if not pytriton:
        raise SystemExit("the pytriton wheel is not in .cache/wheels: run `make setup` or `vto stack up` once")
    shutil.rmtree(args.out, ignore_errors=True)
    staging = args.out / "staging"
    download(args.python, staging / "wheels")
    shutil.copy2(pytriton[0], staging / "wheels")
    for name in MODEL_FILES:
        (staging / "models" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, staging / "models" / name)
    frames(staging / "frames")
    parts = split(staging, args.out, int(args.part_mib * 2**20))
    shutil.rmtree(staging)
    for part in parts:
        size = sum(p.stat().st_size for p in part.rglob("*") if p.is_file())
        print(f"{part.relative_to(ROOT) if part.is_relative_to(ROOT) else part}: {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
