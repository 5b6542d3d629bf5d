"""The Triton load test on a bare GPU host: the bundled tritonserver (pytriton wheel, python backend only) serving
the `tryon` model on the GPU, its perception models run as PyTorch modules converted from the same ONNX files
(`models: torch`, streams/serving/torch_models.py), then `loadtest/triton_load.py` against it.

Runs with the host's own Python (3.12 and torch with CUDA on the GPU hosts of FIELD_NOTES §1), standard library
only until the bundle (tools/gpu_bundle.py, built where the package registries are) is unpacked:

    python3 loadtest/gpu_host.py --bundle .cache/gpu-bundle --sessions 50 100 150 200 --label h200
    .cache/venv-torch/bin/python loadtest/gpu_host.py --device cpu --sessions 1 2 --seconds 5 --label cpu-torch

Steps: unpack the wheels (numpy < 2, OpenCV, onnx2torch, tritonclient...) into one site folder, put first on the
stub's and the client's path before the host's torch; unpack tritonserver and the stub for this Python; write the
repository (`tools/triton_configs.py --target gpu-host`; `--device cpu` puts the instances on the CPU, a dry run of
the same path on a machine without a GPU); start Triton, wait until tryon is ready; run the load test; stop Triton
(by its PID). Writes to --results: the load test's triton-load-<date>-<label>.json and gpu-host-<date>-<label>.json
(the host: GPU, driver, torch, the tryon config, Triton's log tail).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the host's Python does not install the project

from streams.errors import StackError  # noqa: E402  (standard library only, both)
from streams.stack import tritonserver  # noqa: E402

PORTS = {"http": 18000, "grpc": 18001, "metrics": 18002}


def merged(bundle: Path) -> dict[str, list[Path]]:
    """The bundle's parts read as one: wheels, model files (relative paths) and frame folders."""
    parts = sorted(bundle.glob("part-*")) or [bundle]
    found: dict[str, list[Path]] = {"wheels": [], "models": [], "frames": []}
    for part in parts:
        found["wheels"] += sorted((part / "wheels").glob("*.whl"))
        found["models"] += sorted(p for p in (part / "models").rglob("*") if p.is_file())
        found["frames"] += sorted(p for p in (part / "frames").rglob("*.jpg"))
    return found


def unpack(found: dict[str, list[Path]], work: Path) -> tuple[Path, Path, Path]:
    """(site folder, tritonserver home, frames folder)."""
    site, frames = work / "site", work / "frames"
    pytriton = [w for w in found["wheels"] if w.name.startswith("nvidia_pytriton-")]
    if not pytriton:
        raise SystemExit("no pytriton wheel in the bundle: build it with tools/gpu_bundle.py")
    tag = f"-cp{sys.version_info.major}{sys.version_info.minor}-"  # a wheel's Python tag, as in numpy-...-cp312-...
    foreign = [w.name for w in found["wheels"] if "-cp3" in w.name and tag not in w.name and "abi3" not in w.name]
    if foreign:
        raise SystemExit(f"the bundle is for another Python ({foreign[0]}): tools/gpu_bundle.py --python X.Y")
    for wheel in found["wheels"]:
        if wheel not in pytriton:
            with zipfile.ZipFile(wheel) as zf:  # a wheel is a zip of its site-packages files
                zf.extractall(site)
    try:
        home = tritonserver.unpack(pytriton[0], work / "triton", f"{sys.version_info.major}.{sys.version_info.minor}")
    except StackError as exc:
        raise SystemExit(str(exc)) from exc
    for path in found["frames"]:
        (frames / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, frames / path.parent.name / path.name)
    for path in found["models"]:  # into triton_repo/, where `make models` would have built them
        target = ROOT / "triton_repo" / path.relative_to(next(p for p in path.parents if p.name == "models"))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return site, home, frames


def torch_site() -> Path:
    """Where this Python's torch is (onnx2torch also imports torchvision)."""
    try:
        import torch
        import torchvision  # noqa: F401
    except ImportError as exc:
        raise SystemExit(f"this Python lacks torch or torchvision ({exc}): run with the GPU host's Python") from exc
    return Path(torch.__file__).resolve().parents[1]


def write_repo(work: Path, device: str, instances: int, half: bool) -> Path:
    repo = work / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    args = ["--target", "gpu-host", "--out", str(repo), "--instances", str(instances), *(["--half"] if half else [])]
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "triton_configs.py"), *args], check=True, stdout=subprocess.DEVNULL
    )
    if device == "cpu":  # the dry run: the same repository with its instances on the CPU
        config = repo / "tryon" / "config.pbtxt"
        config.write_text(config.read_text().replace("KIND_GPU", "KIND_CPU"))
    return repo


def ready(timeout_s: float, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    url = f"http://127.0.0.1:{PORTS['http']}/v2/models/tryon/ready"
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"tritonserver exited ({server.returncode}); see its log")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1.0)
    raise SystemExit(f"tryon not ready within {timeout_s:.0f} s")


def host_facts() -> dict[str, str]:
    facts = {"python": sys.version.split()[0], "cpus": str(os.cpu_count())}
    try:
        import torch

        facts["torch"] = torch.__version__
        facts["cuda"] = str(torch.version.cuda)
        facts["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    except ImportError:
        facts["torch"] = "missing"
    try:
        smi = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
        facts["nvidia_smi"] = subprocess.run(smi, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        facts["nvidia_smi"] = "not available"
    return facts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / ".cache" / "gpu-bundle")
    parser.add_argument("--work", type=Path, default=ROOT / ".cache" / "gpu-host")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--instances", type=int, default=2, help="tryon instances (each with its own models)")
    parser.add_argument("--half", action="store_true", help="the perception models in fp16")
    parser.add_argument("--sessions", type=int, nargs="+", default=[50, 100, 150, 200])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--label", default="gpu")
    parser.add_argument("--results", type=Path, default=ROOT / "loadtest" / "results")
    parser.add_argument("--ready-timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    site, home, frames = unpack(merged(args.bundle), args.work)
    repo = write_repo(args.work, args.device, args.instances, args.half)
    log = args.work / "triton.log"
    # The bundle's site first: its numpy < 2 before the host's (the stub's numpy route); then the host's torch.
    env = {**os.environ, **tritonserver.environment([site, torch_site(), ROOT], ROOT / "catalogue")}
    # The stub embeds this Python's libpython (a shared build: Debian's, or a venv of it).
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH", "")) if p)
    command = tritonserver.command(home, repo, PORTS, "127.0.0.1")
    command += ["--model-control-mode=explicit", "--load-model=tryon"]
    started = time.monotonic()
    with log.open("wb") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        ready(args.ready_timeout, server)
        load_s = time.monotonic() - started
        print(f"tryon ready on {args.device} in {load_s:.0f} s", flush=True)
        client_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
        load = [sys.executable, "-m", "loadtest.triton_load", "--url", f"127.0.0.1:{PORTS['grpc']}"]
        load += ["--frames", str(frames), "--seconds", str(args.seconds), "--label", args.label]
        load += ["--results", str(args.results), "--sessions", *map(str, args.sessions)]
        code = subprocess.run(load, cwd=ROOT, env=client_env).returncode
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    facts = {
        "date": date,
        "device": args.device,
        "instances": args.instances,
        "half": args.half,
        "host": host_facts(),
        "tryon_ready_s": round(load_s, 1),
        "tryon_config": [
            line for line in (repo / "tryon" / "config.pbtxt").read_text().splitlines() if not line.startswith("#")
        ],
        "triton_log_tail": log.read_text(errors="replace").splitlines()[-40:],
        "load_test_exit": code,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    out_path = args.results / f"gpu-host-{date}-{args.label}.json"
    out_path.write_text(json.dumps(facts, indent=1) + "\n")
    print(f"written {out_path}")
    return code


if __name__ == "__main__":
    sys.exit(main())
