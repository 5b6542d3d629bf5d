"""Build step: MediaPipe's trained TFLite models -> ONNX files in triton_repo/, checked against TFLite.

Runs inside the throwaway conversion venv (tensorflow-cpu + tf2onnx); see `make models`.
For each model: extract the .tflite from the mediapipe wheel, densify sparse weights where needed,
convert with tf2onnx (opset 17), replace MediaPipe's custom transposed convolution where present,
make the batch dimension dynamic, then compare ONNX Runtime against the TFLite interpreter on crops of
a real photo (batch 1) and batch 4 against four single runs. Any difference above the stated tolerance
fails the build. Outputs are cached by a hash of every input.

Also writes MediaPipe's canonical face model (468 vertices, UVs, 898 triangles, Procrustes landmark
weights) to triton_repo/tryon/1/canonical_face_model.npz, read from the npm package
@mediapipe/face_mesh@0.4.1657299874 (licence Apache-2.0, as its package.json states; the tarball is
pinned by its npm integrity hash). Its geometry_pipeline_metadata_landmarks.binarypb is one member of
face_mesh_solution_packed_assets.data; a few lines of protobuf wire-format decoding read it.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import struct
import sys
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


Region = tuple[float, float, float, float]  # x0, y0, x1, y1 as fractions of the photo's width and height
WHOLE: Region = (0.0, 0.0, 1.0, 1.0)


@dataclass(frozen=True)
class ModelSpec:
    name: str  # the Triton model that serves it
    member: str  # path inside the mediapipe wheel
    size: int  # square input side
    low: float  # input value range after normalisation
    high: float
    densify: bool = False
    transpose_conv_bias: bool = False  # holds MediaPipe's custom Convolution2DTransposeBias op
    logits: tuple[str, ...] = ()  # outputs compared after a sigmoid
    # Check inputs: crops of `photo` ("body", "face" or "hand": the photos given as --photo, --face-photo,
    # --hand-photo) inside `region`, chosen for the photos `make models` passes: a yoga pose, a portrait
    # (face at x 0.34-0.63, y 0.11-0.34) and a person with both hands raised in a V sign.
    photo: str = "body"
    region: Region = WHOLE


MODELS = (
    ModelSpec("pose_detection", "mediapipe/modules/pose_detection/pose_detection.tflite", 224, -1.0, 1.0, densify=True),
    ModelSpec(
        "pose_landmark_full",
        "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
        256,
        0.0,
        1.0,
        logits=("Identity_2",),
    ),
    ModelSpec(
        "face_detection_short_range",
        "mediapipe/modules/face_detection/face_detection_short_range.tflite",
        128,
        -1.0,
        1.0,
        logits=("classificators",),
        photo="face",
        region=(0.15, 0.0, 0.85, 0.56),  # head and shoulders
    ),
    ModelSpec(
        "face_landmark",
        "mediapipe/modules/face_landmark/face_landmark.tflite",
        192,
        0.0,
        1.0,
        logits=("conv2d_31",),
        photo="face",
        region=(0.27, 0.05, 0.71, 0.40),  # the face box enlarged 1.5x, as MediaPipe crops it
    ),
    ModelSpec(
        "iris_landmark",
        "mediapipe/modules/iris_landmark/iris_landmark.tflite",
        64,
        0.0,
        1.0,
        photo="face",
        region=(0.39, 0.13, 0.50, 0.22),  # one eye, 2.3x its width
    ),
    ModelSpec(
        "palm_detection_full",
        "mediapipe/modules/palm_detection/palm_detection_full.tflite",
        192,
        0.0,
        1.0,
        logits=("Identity_1",),
        photo="hand",
    ),
    ModelSpec(
        "hand_landmark_full",
        "mediapipe/modules/hand_landmark/hand_landmark_full.tflite",
        224,
        0.0,
        1.0,
        photo="hand",
        region=(0.09, 0.075, 0.25, 0.315),  # the raised right hand (image left)
    ),
    ModelSpec(
        "selfie_segmentation",
        "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
        256,
        0.0,
        1.0,
        transpose_conv_bias=True,
    ),
)

# Stated tolerances; the measured differences are printed on every build and kept in the stamp file.
ATOL_VS_TFLITE = 1e-2  # absolute: pixels of the model input for coordinates, probabilities for logits
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


def replace_transpose_conv_bias(tflite: Path, path: Path) -> int:
    """Rewrite MediaPipe's custom op Convolution2DTransposeBias, which tf2onnx leaves as an unknown node.

    The op is a transposed convolution plus bias on NHWC tensors, kernel in OHWI order. It becomes
    Transpose(NCHW) -> ConvTranspose(kernel as IOHW, bias, strides) -> Transpose(NHWC). The kernel is not
    flipped: both ops scatter input pixel (y, x) to output (y * stride + ky, x * stride + kx). Only
    kernel == stride is handled, where SAME padding is no padding (out = in * stride); anything else fails.
    """
    import onnx
    from onnx import helper, numpy_helper
    from tensorflow.lite.tools import flatbuffer_utils

    # tf2onnx cannot parse the op's options (TfLiteTransposeConvParams: padding, stride_w, stride_h as int32).
    tfl = flatbuffer_utils.read_model(str(tflite))
    graph_t = tfl.subgraphs[0]
    options = {}
    for op in graph_t.operators:
        if tfl.operatorCodes[op.opcodeIndex].customCode == b"Convolution2DTransposeBias":
            name = graph_t.tensors[int(op.outputs[0])].name.decode()
            options[name] = struct.unpack("<3i", bytes(op.customOptions)[:12])

    model = onnx.load(str(path))
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    nodes, replaced = [], 0
    for node in graph.node:
        if node.op_type != "TFL_Convolution2DTransposeBias":
            nodes.append(node)
            continue
        x, w_name, b_name = node.input
        out = node.output[0]
        padding, stride_w, stride_h = options[out]
        kernel = numpy_helper.to_array(inits[w_name])  # (out channels, kh, kw, in channels)
        if padding != 1 or kernel.shape[1:3] != (stride_h, stride_w):  # 1 = kTfLitePaddingSame
            raise SystemExit(f"{out}: unsupported Convolution2DTransposeBias {kernel.shape=} {options[out]=}")
        w_onnx = f"{out}__iohw"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(kernel.transpose(3, 0, 1, 2)), w_onnx))
        nodes += [
            helper.make_node("Transpose", [x], [f"{out}__nchw_in"], perm=[0, 3, 1, 2], name=f"{out}__to_nchw"),
            helper.make_node(
                "ConvTranspose",
                [f"{out}__nchw_in", w_onnx, b_name],
                [f"{out}__nchw_out"],
                kernel_shape=list(kernel.shape[1:3]),
                strides=[stride_h, stride_w],
                pads=[0, 0, 0, 0],
                name=f"{out}__conv_transpose",
            ),
            helper.make_node("Transpose", [f"{out}__nchw_out"], [out], perm=[0, 2, 3, 1], name=f"{out}__to_nhwc"),
        ]
        replaced += 1
    used = {i for n in nodes for i in n.input}
    kept_inits = [i for i in graph.initializer if i.name in used]
    del graph.node[:], graph.initializer[:]
    graph.node.extend(nodes)
    graph.initializer.extend(kept_inits)
    onnx.save(model, str(path))
    return replaced


def photo_inputs(photo: Path, spec: ModelSpec, count: int) -> np.ndarray:
    """`count` different square crops of `spec.region` of a real photo, resized to the model input, normalised."""
    import tensorflow as tf

    img = tf.io.decode_image(photo.read_bytes(), channels=3, expand_animations=False).numpy()
    x0, y0, x1, y1 = spec.region
    img = img[round(y0 * img.shape[0]) : round(y1 * img.shape[0]), round(x0 * img.shape[1]) : round(x1 * img.shape[1])]
    h, w = img.shape[:2]
    crops = []
    for i in range(count):
        side = int(min(h, w) * (1.0 - 0.1 * i))
        top, left = (h - side) // 2, (w - side) // 2 + i * (w - side) // (2 * max(count, 1))
        crop = tf.image.resize(img[top : top + side, left : left + side], (spec.size, spec.size)).numpy()
        crops.append(spec.low + crop / 255.0 * (spec.high - spec.low))
    return np.stack(crops).astype(np.float32)


def check(spec: ModelSpec, tflite: Path, onnx_path: Path, photo: Path) -> dict[str, Any]:
    import onnxruntime as ort
    import tensorflow as tf

    x = photo_inputs(photo, spec, 4)
    # Default op resolver: its XNNPACK delegate also runs MediaPipe's Convolution2DTransposeBias.
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

    by_output: dict[str, float] = {}
    for name, ours in zip(names, single[0], strict=True):
        theirs = ref.get(name)
        if theirs is None:  # tf2onnx keeps TFLite tensor names; fall back to matching by shape
            theirs = next(v for v in ref.values() if v.shape == ours.shape)
        if name in spec.logits:  # large logits are compared as the probabilities they become
            ours, theirs = sigmoid(ours), sigmoid(theirs)
        by_output[name] = float(np.max(np.abs(ours - theirs)))
    diff_tflite = max(by_output.values())
    diff_batch = 0.0
    for k in range(len(names)):
        stacked = np.concatenate([s[k] for s in single])
        diff_batch = max(diff_batch, float(np.max(np.abs(stacked - batched[k]))))
    report = {"max_abs_diff_vs_tflite": diff_tflite, "max_abs_diff_batch4_vs_single": diff_batch}
    if diff_tflite > ATOL_VS_TFLITE or diff_batch > ATOL_BATCH:
        raise SystemExit(f"{spec.name}: ONNX check failed {report} (tolerances {ATOL_VS_TFLITE}, {ATOL_BATCH})")
    return {**report, "diff_vs_tflite_by_output": by_output, "tolerances": [ATOL_VS_TFLITE, ATOL_BATCH]}


def cache_key(*parts: str) -> str:
    return hashlib.sha256("|".join([*parts, sha256(Path(__file__))]).encode()).hexdigest()


def up_to_date(out: Path, stamp: Path, key: str) -> bool:
    return out.exists() and stamp.exists() and json.loads(stamp.read_text()).get("key") == key


def build(spec: ModelSpec, wheel: Path, photos: dict[str, Path], repo: Path, work: Path) -> None:
    out = repo / spec.name / "1" / "model.onnx"
    stamp = out.with_suffix(".build.json")
    converter = "|".join(metadata.version(p) for p in ("tf2onnx", "tensorflow-cpu", "onnx"))  # no slow import
    key = cache_key(sha256(wheel), spec.member, converter)
    if up_to_date(out, stamp, key):
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
    if spec.transpose_conv_bias:
        n = replace_transpose_conv_bias(tflite, tmp)  # tf2onnx has logged the op as unsupported: expected
        print(f"{spec.name}: replaced {n} Convolution2DTransposeBias by Transpose -> ConvTranspose -> Transpose")
    make_batch_dynamic(tmp)
    report = check(spec, tflite, tmp, photos[spec.photo])
    seconds = round(time.monotonic() - start, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.replace(out)
    checked_on = f"{photos[spec.photo].name} region {spec.region}"
    record = {"key": key, "source": spec.member, **report, "checked_on": checked_on, "seconds": seconds}
    stamp.write_text(json.dumps(record, indent=2) + "\n")
    print(f"{spec.name}: built in {seconds}s, {report}")


# --- MediaPipe's canonical face model (head pose, face occluder, UVs) ---

FACE_MESH_TGZ = "https://registry.npmjs.org/@mediapipe/face_mesh/-/face_mesh-0.4.1657299874.tgz"
FACE_MESH_INTEGRITY = "sha512-Jdza+77HjDH4SQ6/DAYmnKUYdh2fU1GbhuGqXZbkK5rnJKpZLZe5KQeJmwUq9dmkYkCPSq4oe9vmcuveRPpwag=="
PACKED_ASSETS = "package/face_mesh_solution_packed_assets.data"
PACKED_LOADER = "package/face_mesh_solution_packed_assets_loader.js"
GEOMETRY_BYTES = (3737848, 3757224)  # geometry_pipeline_metadata_landmarks.binarypb in PACKED_ASSETS
MESH_VERTICES, MESH_TRIANGLES = 468, 898


def fetch_face_mesh(cache: Path) -> Path:
    """The pinned npm tarball, downloaded once into `cache` and checked against npm's integrity hash."""
    tgz = cache / "npm" / FACE_MESH_TGZ.rsplit("/", 1)[1]
    if not tgz.exists():
        tgz.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(FACE_MESH_TGZ, timeout=120) as response:
            data = response.read()
        tgz.with_suffix(".part").write_bytes(data)
        tgz.with_suffix(".part").replace(tgz)
    digest = "sha512-" + base64.b64encode(hashlib.sha512(tgz.read_bytes()).digest()).decode()
    if digest != FACE_MESH_INTEGRITY:
        raise SystemExit(f"{tgz}: integrity {digest} is not npm's {FACE_MESH_INTEGRITY}; delete it and rerun")
    return tgz


def varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Protobuf base-128 varint at `pos`: (value, position after it)."""
    value = shift = 0
    while True:
        byte = buf[pos]
        value, pos, shift = value | (byte & 0x7F) << shift, pos + 1, shift + 7
        if byte < 0x80:
            return value, pos


def proto_fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field of a serialised protobuf message: varints as int,
    fixed32 / fixed64 / length-delimited values as their raw bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = varint(buf, pos)
        elif wire in (1, 2, 5):
            size, pos = (8, pos) if wire == 1 else (4, pos) if wire == 5 else varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
            if pos > len(buf):
                raise SystemExit("truncated protobuf field")
        else:
            raise SystemExit(f"protobuf wire type {wire} is not used by this message")
        yield number, wire, value


def floats(value: int | bytes) -> list[float]:
    """A `repeated float` entry: one fixed32, or a packed run of them."""
    assert isinstance(value, bytes) and len(value) % 4 == 0
    return list(struct.unpack(f"<{len(value) // 4}f", value))


def uints(value: int | bytes) -> list[int]:
    """A `repeated uint32` entry: one varint, or a packed run of them."""
    if isinstance(value, int):
        return [value]
    out, pos = [], 0
    while pos < len(value):
        v, pos = varint(value, pos)
        out.append(v)
    return out


def parse_geometry(data: bytes) -> dict[str, np.ndarray]:
    """Decode MediaPipe's GeometryPipelineMetadata (mediapipe/modules/face_geometry/protos/*.proto).

    GeometryPipelineMetadata: canonical_mesh = 1 (Mesh3d), procrustes_landmark_basis = 2 (repeated
    WeightedLandmarkRef {landmark_id = 1, weight = 2}), input_source = 3 (enum, 1 = FACE_LANDMARK_PIPELINE).
    Mesh3d: vertex_type = 1 (0 = VERTEX_PT: x, y, z, u, v per vertex), primitive_type = 2 (0 = TRIANGLE),
    vertex_buffer = 3 (repeated float), index_buffer = 4 (repeated uint32). This file stores the repeated
    fields unpacked; both encodings are read.
    """
    vertex_buffer: list[float] = []
    index_buffer: list[int] = []
    ids: list[int] = []
    weights: list[float] = []
    header = {}
    for number, _, value in proto_fields(data):
        if number == 1 and isinstance(value, bytes):
            for sub, _, sub_value in proto_fields(value):
                if sub in (1, 2):
                    header[("vertex_type", "primitive_type")[sub - 1]] = sub_value
                elif sub == 3:
                    vertex_buffer += floats(sub_value)
                elif sub == 4:
                    index_buffer += uints(sub_value)
        elif number == 2 and isinstance(value, bytes):
            ref = {sub: sub_value for sub, _, sub_value in proto_fields(value)}
            ids.append(int(ref.get(1, 0)))
            weights.append(floats(ref[2])[0] if 2 in ref else 0.0)
        elif number == 3:
            header["input_source"] = value
    if header != {"vertex_type": 0, "primitive_type": 0, "input_source": 1}:
        raise SystemExit(f"unexpected geometry metadata {header}: expected VERTEX_PT triangles from landmarks")
    vertices = np.asarray(vertex_buffer, dtype=np.float32).reshape(-1, 5)
    triangles = np.asarray(index_buffer, dtype=np.int32).reshape(-1, 3)
    if vertices.shape[0] != MESH_VERTICES or triangles.shape[0] != MESH_TRIANGLES:
        raise SystemExit(f"canonical mesh has {vertices.shape[0]} vertices, {triangles.shape[0]} triangles")
    if triangles.min() < 0 or triangles.max() >= MESH_VERTICES or max(ids) >= MESH_VERTICES:
        raise SystemExit("canonical mesh indices out of range")
    return {
        "vertices": np.ascontiguousarray(vertices[:, :3]),
        "uv": np.ascontiguousarray(vertices[:, 3:]),
        "triangles": triangles,
        "procrustes_ids": np.asarray(ids, dtype=np.int32),
        "procrustes_weights": np.asarray(weights, dtype=np.float32),
    }


def build_canonical_face(cache: Path, repo: Path) -> None:
    """triton_repo/tryon/1/canonical_face_model.npz, arrays:

    vertices (468, 3) float32: centimetres, head-centred; x to the image right (the subject's left), y up,
    z out of the face towards the camera. uv (468, 2) float32: texture coordinates as stored, u to the
    image right, v down (forehead v = 0.11, chin v = 0.95). triangles (898, 3) int32: vertex indices.
    procrustes_ids (n,) int32 / procrustes_weights (n,) float32: the landmarks MediaPipe fits the rigid
    head pose to, and their weights.
    """
    out = repo / "tryon" / "1" / "canonical_face_model.npz"
    stamp = out.with_suffix(".build.json")
    key = cache_key(FACE_MESH_INTEGRITY, str(GEOMETRY_BYTES))
    if up_to_date(out, stamp, key):
        print(f"canonical face model: up to date ({out.relative_to(ROOT)})")
        return
    tgz = fetch_face_mesh(cache)
    start, end = GEOMETRY_BYTES
    with tarfile.open(tgz) as tar:
        packed, loader = (tar.extractfile(name).read() for name in (PACKED_ASSETS, PACKED_LOADER))  # type: ignore[union-attr]
    # The package's own loader lists each packed file's byte range: confirm the pinned one.
    if f'geometry_pipeline_metadata_landmarks.binarypb", "start": {start}, "end": {end}}}'.encode() not in loader:
        raise SystemExit(f"{PACKED_LOADER} does not place the face geometry at bytes {start}-{end}")
    arrays = parse_geometry(packed[start:end])
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy stubs confuse names with allow_pickle
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(buffer.getvalue())
    shapes = {name: list(a.shape) for name, a in arrays.items()}
    stamp.write_text(
        json.dumps(
            {
                "key": key,
                "source": f"{FACE_MESH_TGZ} {PACKED_ASSETS}[{start}:{end}]",
                "license": "Apache-2.0",
                "shapes": shapes,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"canonical face model: wrote {out.relative_to(ROOT)} {shapes}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, required=True, help="mediapipe==0.10.14 wheel")
    parser.add_argument("--photo", type=Path, required=True, help="real photo of a person used for the checks")
    parser.add_argument("--face-photo", type=Path, required=True, help="real photo of a face used for the checks")
    parser.add_argument("--hand-photo", type=Path, required=True, help="real photo of raised hands for the checks")
    parser.add_argument("--repo", type=Path, default=ROOT / "triton_repo")
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache", help="downloads (npm tarball)")
    args = parser.parse_args()
    photos = {"body": args.photo, "face": args.face_photo, "hand": args.hand_photo}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in MODELS:
            build(spec, args.wheel, photos, args.repo, Path(tmp))
    build_canonical_face(args.cache, args.repo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
