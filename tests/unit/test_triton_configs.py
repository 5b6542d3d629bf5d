"""The Triton configs of the ONNX models come from one table (tools/triton_configs.py): the committed embedded
configs are what it renders, and its production configs serve the same tensors on the GPU with TensorRT."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import triton_configs  # noqa: E402

MODELS = triton_configs.MODELS
NAMES = [m.name for m in MODELS]


def parse(text: str) -> model_config_pb2.ModelConfig:
    """Triton's own ModelConfig message: an unknown field, a wrong type or an unbalanced brace fails."""
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def tensors(config: model_config_pb2.ModelConfig) -> list[tuple[str, str, str, list[int]]]:
    return [
        (kind, t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims))
        for kind, group in (("input", config.input), ("output", config.output))
        for t in group
    ]


def test_the_table_holds_every_onnx_model_of_the_repository() -> None:
    onnx_models = {p.parent.name for p in (ROOT / "triton_repo").glob("*/config.pbtxt")} - {triton_configs.TRYON}
    assert sorted(onnx_models) == sorted(NAMES)


def test_committed_embedded_configs_are_the_rendered_ones() -> None:
    assert triton_configs.stale() == [], "run `python tools/triton_configs.py`"


def test_check_mode_names_a_hand_edited_config(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "triton_repo", repo, ignore=shutil.ignore_patterns("*.onnx", "__pycache__", "*.npz"))
    path = repo / "pose_detection" / "config.pbtxt"
    path.write_text(path.read_text().replace("max_batch_size: 16", "max_batch_size: 8"))
    assert triton_configs.stale(repo) == [path]
    assert triton_configs.main(["--check", "--repo", str(repo)]) == 1


@pytest.mark.parametrize("name", [*NAMES, triton_configs.TRYON])
def test_embedded_config_parses_as_a_python_backend_on_the_cpu(name: str) -> None:
    config = parse((ROOT / "triton_repo" / name / "config.pbtxt").read_text())
    assert config.name == name
    assert config.backend == "python" and not config.platform
    assert [g.kind for g in config.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]
    assert config.max_batch_size == triton_configs.MAX_BATCH_SIZE
    assert config.HasField("dynamic_batching")


@pytest.mark.parametrize("model", MODELS, ids=NAMES)
def test_production_config_serves_the_same_tensors_with_tensorrt_on_the_gpu(model: triton_configs.OnnxModel) -> None:
    embedded = parse(triton_configs.render_embedded(model))
    production = parse(triton_configs.render_production(model))
    assert production.name == embedded.name == model.name
    assert tensors(production) == tensors(embedded)
    assert production.max_batch_size == embedded.max_batch_size
    assert production.platform == "onnxruntime_onnx" and not production.backend
    assert [g.kind for g in production.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_GPU]
    accelerators = production.optimization.execution_accelerators.gpu_execution_accelerator
    assert [a.name for a in accelerators] == ["tensorrt"]
    assert accelerators[0].parameters["precision_mode"] == "FP16"
    # One TensorRT profile from batch 1 to max_batch_size, on the model's own input.
    assert accelerators[0].parameters["trt_profile_max_shapes"] == (
        f"{model.input.name}:{production.max_batch_size}x" + "x".join(str(d) for d in model.input.dims)
    )
    assert production.HasField("dynamic_batching")
    [warmup] = production.model_warmup
    assert list(warmup.inputs) == [model.input.name]
    assert list(warmup.inputs[model.input.name].dims) == list(model.input.dims)
    assert not production.parameters, "python-backend parameters have no meaning for onnxruntime_onnx"


def test_production_tryon_differs_from_the_embedded_one_only_by_gpu_instances_bls_batches_and_queue() -> None:
    text = (ROOT / "triton_repo" / "tryon" / "config.pbtxt").read_text()
    embedded, production = parse(text), parse(triton_configs.render_tryon_production(text))
    assert [(g.kind, g.count) for g in production.instance_group] == [(model_config_pb2.ModelInstanceGroup.KIND_GPU, 2)]
    # Embedded (CPU): the perception models in the tryon process; production: BLS calls to the GPU-served models.
    assert embedded.parameters["models"].string_value == "in_process"
    assert production.parameters["models"].string_value == "bls"
    assert list(embedded.dynamic_batching.preferred_batch_size) == [1]  # CPU: each frame to a free instance
    assert list(production.dynamic_batching.preferred_batch_size) == [8, 16]
    # A session has at most one frame at Triton: a GPU's hundreds of sessions queue that many requests.
    assert embedded.dynamic_batching.default_queue_policy.max_queue_size == 64
    assert production.dynamic_batching.default_queue_policy.max_queue_size == 512
    for config in (embedded, production):
        del config.instance_group[:]
        del config.parameters["models"]
        del config.dynamic_batching.preferred_batch_size[:]
        config.dynamic_batching.default_queue_policy.max_queue_size = 0
    assert production == embedded
    with pytest.raises(SystemExit):
        triton_configs.render_tryon_production(text.replace("KIND_CPU", "KIND_GPU"))
    with pytest.raises(SystemExit):
        triton_configs.render_tryon_production(text.replace('"in_process"', '"bls"'))


def test_production_repository_holds_configs_models_and_tryon(tmp_path: Path) -> None:
    repo = tmp_path / "embedded"
    shutil.copytree(ROOT / "triton_repo", repo, ignore=shutil.ignore_patterns("*.onnx", "__pycache__"))
    for name in NAMES:
        (repo / name / "1" / "model.onnx").write_bytes(f"onnx of {name}".encode())
    (repo / "tryon" / "1" / "__pycache__").mkdir(exist_ok=True)
    out = tmp_path / "production"
    triton_configs.write_production(out, repo)
    assert sorted(p.name for p in out.iterdir()) == sorted([*NAMES, "tryon"])
    for model in MODELS:
        assert (out / model.name / "1" / "model.onnx").read_bytes() == f"onnx of {model.name}".encode()
        assert (out / model.name / "config.pbtxt").read_text() == triton_configs.render_production(model)
    assert (out / "tryon" / "1" / "model.py").read_text() == (repo / "tryon" / "1" / "model.py").read_text()
    assert not (out / "tryon" / "1" / "__pycache__").exists()
    assert parse((out / "tryon" / "config.pbtxt").read_text()).instance_group[0].kind == (
        model_config_pb2.ModelInstanceGroup.KIND_GPU
    )
    with pytest.raises(SystemExit, match="not empty"):
        triton_configs.write_production(out, repo)


def test_gpu_host_repository_serves_tryon_on_the_gpu_with_torch_models_beside_it(tmp_path: Path) -> None:
    """A bare GPU host (bundled server, python backend only): tryon on the GPU running the ONNX files as PyTorch
    modules, which sit beside it without a config (Triton serves tryon alone)."""
    repo = tmp_path / "embedded"
    shutil.copytree(ROOT / "triton_repo", repo, ignore=shutil.ignore_patterns("*.onnx", "__pycache__"))
    for name in NAMES:
        (repo / name / "1" / "model.onnx").write_bytes(f"onnx of {name}".encode())
    out = tmp_path / "gpu"
    triton_configs.write_gpu_host(out, repo, instances=3, half=True)
    for name in NAMES:
        assert (out / name / "1" / "model.onnx").read_bytes() == f"onnx of {name}".encode()
        assert not (out / name / "config.pbtxt").exists()
    assert (out / "tryon" / "1" / "model.py").read_text() == (repo / "tryon" / "1" / "model.py").read_text()
    config = parse((out / "tryon" / "config.pbtxt").read_text())
    assert [(g.kind, g.count) for g in config.instance_group] == [(model_config_pb2.ModelInstanceGroup.KIND_GPU, 3)]
    assert config.parameters["models"].string_value == "torch"
    assert config.parameters["half"].string_value == "true"
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 16]
    assert config.dynamic_batching.default_queue_policy.max_queue_size == 512
    plain = parse(triton_configs.render_tryon_gpu_host((repo / "tryon" / "config.pbtxt").read_text(), 1, False))
    assert "half" not in plain.parameters and plain.parameters["models"].string_value == "torch"
    assert [g.count for g in plain.instance_group] == [1]
    embedded = parse((repo / "tryon" / "config.pbtxt").read_text())
    for changed in (config, embedded):  # nothing else differs from the embedded config
        del changed.instance_group[:]
        for key in ("models", "half"):
            if key in changed.parameters:
                del changed.parameters[key]
        del changed.dynamic_batching.preferred_batch_size[:]
        changed.dynamic_batching.default_queue_policy.max_queue_size = 0
    assert config == embedded
    with pytest.raises(SystemExit, match="not empty"):
        triton_configs.write_gpu_host(out, repo)


def test_production_repository_needs_the_built_models(tmp_path: Path) -> None:
    repo = tmp_path / "embedded"
    shutil.copytree(ROOT / "triton_repo", repo, ignore=shutil.ignore_patterns("*.onnx", "__pycache__"))
    with pytest.raises(SystemExit, match="make models"):
        triton_configs.write_production(tmp_path / "out", repo)


def test_table_matches_the_built_onnx_files() -> None:
    """What Triton's onnxruntime backend checks at load time (the python backend does not): names, dims, dtype."""
    python = ROOT / ".cache" / "venv-models" / "bin" / "python"
    built = all((ROOT / "triton_repo" / n / "1" / "model.onnx").is_file() for n in NAMES)
    if not python.is_file() or not built:
        if os.environ.get("CI"):  # `make test` builds the models first: missing there is a failure
            pytest.fail("the models' venv or the ONNX files are missing")
        pytest.skip("needs `make models` (the models' venv and the ONNX files)")
    result = subprocess.run(
        [str(python), str(ROOT / "tools" / "triton_configs.py"), "--verify-onnx"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
