"""Parity of the perception models under PyTorch (onnx2torch, streams/serving/torch_models.py) with onnxruntime.

Each of the 8 ONNX files in triton_repo/ gets the same real inputs (8 photos of people from VTO_DATA_DIR, default
../shared/data, each resized whole to the model's input size and scaled as the model expects) through onnxruntime
(CPU, the reference) and through `TorchSession`. Per output: the largest absolute difference over batch 1 and batch 8
and the reference's largest magnitude; per model: median ms per batch at batch 1 and 8 for both, and `ok` when every
output is within the tolerance (written into the JSON with its reason). Run with the torch venv:

    .cache/venv-torch/bin/python loadtest/torch_parity.py [--device cpu|cuda] [--half] [--threads 1] [--out PATH]

Prints a table, writes loadtest/results/torch-parity-<date>-<device>[-fp16|-tf32].json, exits 1 when a model is
off. Precision: fp32; on cuda "tf32" unless torch.backends.cudnn.allow_tf32 is off (torch's default is on, so that is
what a GPU host runs); fp16 with --half, meant for cuda: on a CPU it runs but 30-60x slower than fp32 (no native fp16
kernels), so use --repeats 2 there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the torch venv does not install the project

from streams.serving.torch_models import TorchSession  # noqa: E402

# Input scaling per model, as streams/vision/*.py prepare them: the SSD detectors of pose and face take [-1, 1]
# (ssd.POSE, ssd.FACE), everything else [0, 1].
MODELS = {
    "pose_detection": (-1.0, 1.0),
    "pose_landmark_full": (0.0, 1.0),
    "face_detection_short_range": (-1.0, 1.0),
    "face_landmark": (0.0, 1.0),
    "iris_landmark": (0.0, 1.0),
    "palm_detection_full": (0.0, 1.0),
    "hand_landmark_full": (0.0, 1.0),
    "selfie_segmentation": (0.0, 1.0),
}
PHOTOS = (
    "keypoints/tfjs_pose_yoga/pose.jpg",
    "keypoints/mps_pose_sitting/test_image.jpg",
    "keypoints/tfjs_portrait_face/portrait.jpg",
    "keypoints/mps_business_person_face/business-person.png",
    "people/images/fr_biden_full_body.jpg",
    "people/images/rembg_arms_up_sunglasses_cap.jpg",
    "people/images/mediapipe_face_closeup.png",
    "people/images/fr_two_people_upper_body.jpg",
)
BATCHES = (1, 8)
# Allowed max |torch - onnxruntime| = factor * max(1, max |reference|), per output. fp32: the same fp32 graph, only
# the order of the sums differs (kernels, fusions). tf32: what CUDA fp32 really is for convolutions by default
# (torch.backends.cudnn.allow_tf32): 10-bit mantissa products, fp32 sums. fp16: every activation rounded to 11 bits
# (4.9e-4 relative), compounding over ~100 layers. For scale: landmarks are in pixels of a 192-256 px crop.
TOLERANCE = {
    "fp32": (1e-3, "fp32 both sides, summation order only; 1e-3 of the scale = 0.26 px on a 256-px crop"),
    "tf32": (1e-2, "cuDNN TF32 convolutions (10-bit mantissa products, fp32 sums); 2.6 px at most on 256 px"),
    "fp16": (2e-2, "fp16 activations (11-bit mantissa) compounding over ~100 layers; 5 px at most on 256 px"),
}


def photos(data: Path) -> list[np.ndarray]:
    """The photos as RGB uint8 (grayscale and RGBA files read as 3-channel colour)."""
    out = []
    for name in PHOTOS:
        bgr = cv2.imread(str(data / name), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SystemExit(f"{data / name} is missing (set VTO_DATA_DIR)")
        out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return out


def batch(images: list[np.ndarray], size: tuple[int, int], low: float, high: float) -> np.ndarray:
    """NHWC float32: each whole photo resized to (height, width) and mapped from [0, 255] to [low, high]."""
    height, width = size
    resized = np.stack([cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA) for rgb in images])
    return (low + resized.astype(np.float32) * ((high - low) / 255.0)).astype(np.float32)


def median_ms(call: Callable[[], object], repeats: int) -> float:
    call()  # warm-up (allocations, first-run kernel selection)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 2)


def compare(
    model: str, images: list[np.ndarray], device: str, precision: str, threads: int, repeats: int
) -> dict[str, Any]:
    path = ROOT / "triton_repo" / model / "1" / "model.onnx"
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    reference = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    session = TorchSession(path, device, half=precision == "fp16")
    spec = reference.get_inputs()[0]
    size = (int(spec.shape[1]), int(spec.shape[2]))
    low, high = MODELS[model]
    names = [o.name for o in reference.get_outputs()]
    factor = TOLERANCE[precision][0]
    diffs, scales, p999 = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0)
    timings: dict[str, dict[int, float]] = {"onnxruntime": {}, "torch": {}}
    for n in BATCHES:
        feeds = {spec.name: batch(images[:n], size, low, high)}
        expected, found = reference.run(names, feeds), session.run(names, feeds)
        for name, want, got in zip(names, expected, found, strict=True):
            if got.shape != want.shape or got.dtype != np.float32:
                raise SystemExit(f"{model}/{name}: torch gave {got.dtype}{got.shape}, onnxruntime {want.shape}")
            diff = np.abs(got - want)
            diffs[name], p999[name] = max(diffs[name], float(diff.max())), float(np.quantile(diff, 0.999))
            scales[name] = max(scales[name], float(np.abs(want).max()))
        timings["onnxruntime"][n] = median_ms(partial(reference.run, names, feeds), repeats)
        timings["torch"][n] = median_ms(partial(session.run, names, feeds), repeats)
    outputs = {
        name: {
            "max_abs_diff": float(f"{diffs[name]:.3g}"),
            "p999_abs_diff_b8": float(f"{p999[name]:.3g}"),
            "ref_max_abs": float(f"{scales[name]:.4g}"),
            "limit": float(f"{factor * max(1.0, scales[name]):.3g}"),
            "ok": diffs[name] <= factor * max(1.0, scales[name]),
        }
        for name in names
    }
    return {
        "input": {"name": spec.name, "size": list(size), "range": [low, high]},
        "outputs": outputs,
        "ms_per_batch": timings,
        "ok": all(o["ok"] for o in outputs.values()),
    }


def device_name(device: str) -> str:
    if device == "cuda":
        return str(torch.cuda.get_device_name())
    lines = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    return f"{cpu or platform.processor()}, {os.cpu_count()} cores"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--half", action="store_true", help="torch in fp16 (inputs cast, outputs back to fp32)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for onnxruntime and torch (default 1)")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per batch size (median)")
    parser.add_argument("--out", type=Path, help="JSON path (default loadtest/results/torch-parity-<date>-...)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = Path(os.environ.get("VTO_DATA_DIR") or ROOT.parent / "shared" / "data")
    images = photos(data)
    tf32 = args.device == "cuda" and torch.backends.cudnn.allow_tf32
    precision = "fp16" if args.half else "tf32" if tf32 else "fp32"
    date = datetime.now(UTC).date().isoformat()
    result: dict[str, Any] = {
        "date": date,
        "device": args.device,
        "device_name": device_name(args.device),
        "precision": precision,
        "threads": args.threads,
        "repeats": args.repeats,
        "versions": {p: version(p) for p in ("torch", "onnx2torch", "onnxruntime", "onnx", "numpy")},
        "reference": "onnxruntime CPUExecutionProvider, fp32, same ONNX file and inputs",
        "inputs": list(PHOTOS),
        "max_abs_diff_over_batches": list(BATCHES),
        "tolerance": {
            "rule": "max_abs_diff <= factor * max(1, ref_max_abs), per output",
            "factor": TOLERANCE[precision][0],
            "why": TOLERANCE[precision][1],
        },
        "models": {},
    }
    columns = " ".join(f"{'ort b' + str(n):>8} {'torch b' + str(n):>8}" for n in BATCHES)
    print(f"{'model':27} {'output':31} {'max diff':>9} {'ref max':>9} {'ok':>4}  ms per batch: {columns}")
    for model in MODELS:
        found = result["models"][model] = compare(model, images, args.device, precision, args.threads, args.repeats)
        ms = found["ms_per_batch"]
        times = " ".join(f"{ms['onnxruntime'][n]:8.2f} {ms['torch'][n]:8.2f}" for n in BATCHES)
        for i, (name, out) in enumerate(found["outputs"].items()):
            first = i == 0
            print(
                f"{model if first else '':27} {name:31} {out['max_abs_diff']:9.2g} {out['ref_max_abs']:9.4g}"
                f" {'yes' if out['ok'] else 'NO':>4}  {' ' * 14 + times if first else ''}"
            )
    result["ok"] = all(m["ok"] for m in result["models"].values())
    suffix = "" if precision == "fp32" else f"-{precision}"
    out = args.out or ROOT / "loadtest" / "results" / f"torch-parity-{date}-{args.device}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'all within tolerance' if result['ok'] else 'OFF TOLERANCE'}; wrote {out}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
