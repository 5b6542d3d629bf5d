"""Build step: MediaPipe's trained TFLite models -> ONNX files in triton_repo/, checked against TFLite.

Runs inside the throwaway conversion venv (tensorflow-cpu + tf2onnx); see `make models`.
For each model: extract the .tflite from the mediapipe wheel, densify sparse weights where needed,
convert with tf2onnx (opset 17), make the batch dimension dynamic, then compare ONNX Runtime against
the TFLite interpreter on a real photo (batch 1) and batch 4 against four single runs. Any difference
above the stated tolerance fails the build. Outputs are cached by a hash of every input.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ModelSpec:
    name: str  # the Triton model that serves it
    member: str  # path inside the mediapipe wheel
    size: int  # square input side
    low: float  # input value range after normalisation
    high: float
    densify: bool = False
    logit_maps: tuple[str, ...] = ()  # outputs compared after a sigmoid


MODELS = (
    ModelSpec("pose_detection", "mediapipe/modules/pose_detection/pose_detection.tflite", 224, -1.0, 1.0, densify=True),
    ModelSpec(
        "pose_landmark_full",
        "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
        256,
        0.0,
        1.0,
        logit_maps=("Identity_2",),
    ),
)

# Stated tolerances; the measured differences are printed on every build and kept in the stamp file.
ATOL_VS_TFLITE = 1e-2  # absolute: pixels of the model input for coordinates, probabilities for logit maps
ATOL_BATCH = 1e-3  # batch 4 vs four batch-1 runs of the same ONNX model


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0))))


def extract(wheel: Path, member: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        dest.write_bytes(zf.read(member))
    return dest


def densify(src: Path, dst: Path) -> int:
    """Replace each DENSIFY op by a constant holding its dense output (tf2onnx misreads sparse weights)."""
    import tensorflow as tf
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    interp = tf.lite.Interpreter(
        model_path=str(src),
        experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interp.allocate_tensors()
    detail = interp.get_input_details()[0]
    interp.set_tensor(detail["index"], np.zeros(detail["shape"], dtype=detail["dtype"]))
    interp.invoke()

    model = flatbuffer_utils.read_model(str(src))
    densify_code = next(
        i
        for i, code in enumerate(model.operatorCodes)
        if max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.DENSIFY
    )
    graph = model.subgraphs[0]
    kept, replaced = [], 0
    for op in graph.operators:
        if op.opcodeIndex != densify_code:
            kept.append(op)
            continue
        src_t, out = int(op.inputs[0]), int(op.outputs[0])
        dense = np.ascontiguousarray(interp.get_tensor(out))
        # The sparse constant becomes a plain dense constant; consumers of DENSIFY read it directly.
        model.buffers[graph.tensors[src_t].buffer].data = np.frombuffer(dense.tobytes(), dtype=np.uint8)
        graph.tensors[src_t].sparsity = None
        graph.tensors[src_t].shape = np.array(dense.shape, dtype=np.int32)
        for consumer in graph.operators:
            consumer.inputs = np.array([src_t if i == out else i for i in consumer.inputs], dtype=np.int32)
        replaced += 1
    graph.operators = kept
    flatbuffer_utils.write_model(model, str(dst))
    return replaced


def make_batch_dynamic(path: Path) -> None:
    """Symbolic batch dim on inputs/outputs; Reshape targets [1, ...] become [0, ...] (copy the batch dim)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    for value in list(graph.input) + list(graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    inits = {init.name: init for init in graph.initializer}
    consts = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    for node in graph.node:
        if node.op_type != "Reshape":
            continue
        shape_name = node.input[1]
        if shape_name in inits:
            arr = numpy_helper.to_array(inits[shape_name]).copy()
            if arr.size and arr[0] == 1:
                arr[0] = 0
                inits[shape_name].CopyFrom(numpy_helper.from_array(arr, shape_name))
        elif shape_name in consts:
            attr = consts[shape_name].attribute[0]
            arr = numpy_helper.to_array(attr.t).copy()
            if arr.size and arr[0] == 1:
                arr[0] = 0
                attr.t.CopyFrom(numpy_helper.from_array(arr))
    del graph.value_info[:]
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def photo_inputs(photo: Path, spec: ModelSpec, count: int) -> np.ndarray:
    """`count` different crops of a real photo, resized to the model input and normalised."""
    import tensorflow as tf

    img = tf.io.decode_image(photo.read_bytes(), channels=3, expand_animations=False).numpy()
    h, w = img.shape[:2]
    crops = []
    for i in range(count):
        side = int(min(h, w) * (1.0 - 0.1 * i))
        y0, x0 = (h - side) // 2, (w - side) // 2 + i * (w - side) // (2 * max(count, 1))
        crop = tf.image.resize(img[y0 : y0 + side, x0 : x0 + side], (spec.size, spec.size)).numpy()
        crops.append(spec.low + crop / 255.0 * (spec.high - spec.low))
    return np.stack(crops).astype(np.float32)


def check(spec: ModelSpec, tflite: Path, onnx_path: Path, photo: Path) -> dict[str, float]:
    import onnxruntime as ort
    import tensorflow as tf

    x = photo_inputs(photo, spec, 4)
    interp = tf.lite.Interpreter(model_path=str(tflite))
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x[:1])
    interp.invoke()
    ref = {d["name"]: interp.get_tensor(d["index"]) for d in interp.get_output_details()}

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    in_name = sess.get_inputs()[0].name
    names = [o.name for o in sess.get_outputs()]
    single = [sess.run(None, {in_name: x[i : i + 1]}) for i in range(4)]
    batched = sess.run(None, {in_name: x})

    diff_tflite = 0.0
    for name, ours in zip(names, single[0], strict=True):
        theirs = ref.get(name)
        if theirs is None:  # tf2onnx keeps TFLite tensor names; fall back to matching by shape
            theirs = next(v for v in ref.values() if v.shape == ours.shape)
        if name in spec.logit_maps:  # large logits are compared as the probabilities they become
            ours, theirs = sigmoid(ours), sigmoid(theirs)
        diff_tflite = max(diff_tflite, float(np.max(np.abs(ours - theirs))))
    diff_batch = 0.0
    for k in range(len(names)):
        stacked = np.concatenate([s[k] for s in single])
        diff_batch = max(diff_batch, float(np.max(np.abs(stacked - batched[k]))))
    report = {"max_abs_diff_vs_tflite": diff_tflite, "max_abs_diff_batch4_vs_single": diff_batch}
    if diff_tflite > ATOL_VS_TFLITE or diff_batch > ATOL_BATCH:
        raise SystemExit(f"{spec.name}: ONNX check failed {report} (tolerances {ATOL_VS_TFLITE}, {ATOL_BATCH})")
    return report


def build(spec: ModelSpec, wheel: Path, photo: Path, repo: Path, work: Path) -> None:
    out = repo / spec.name / "1" / "model.onnx"
    stamp = out.with_suffix(".build.json")
    converter = "|".join(metadata.version(p) for p in ("tf2onnx", "tensorflow-cpu", "onnx"))  # no slow import
    key = hashlib.sha256("|".join([sha256(wheel), spec.member, sha256(Path(__file__)), converter]).encode()).hexdigest()
    if out.exists() and stamp.exists() and json.loads(stamp.read_text()).get("key") == key:
        print(f"{spec.name}: up to date ({out.relative_to(ROOT)})")
        return
    import tf2onnx

    start = time.monotonic()
    tflite = extract(wheel, spec.member, work / f"{spec.name}.tflite")
    if spec.densify:
        dense = work / f"{spec.name}.dense.tflite"
        n = densify(tflite, dense)
        print(f"{spec.name}: densified {n} sparse weight tensors")
        tflite = dense
    tmp = work / f"{spec.name}.onnx"
    tf2onnx.convert.from_tflite(str(tflite), opset=17, output_path=str(tmp))
    make_batch_dynamic(tmp)
    report = check(spec, tflite, tmp, photo)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.replace(out)
    stamp.write_text(json.dumps({"key": key, "source": spec.member, **report}, indent=2) + "\n")
    print(f"{spec.name}: built in {time.monotonic() - start:.1f}s, {report}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, required=True, help="mediapipe==0.10.14 wheel")
    parser.add_argument("--photo", type=Path, required=True, help="real photo used for the checks")
    parser.add_argument("--repo", type=Path, default=ROOT / "triton_repo")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for spec in MODELS:
            build(spec, args.wheel, args.photo, args.repo, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
