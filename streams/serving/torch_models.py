"""The perception models as PyTorch modules, converted with onnx2torch from the same ONNX files Triton serves.

For the `tryon` model's `torch` mode on a GPU host (CUDA, optionally fp16); CPU works too. `TorchSession.run` keeps
onnxruntime's `InferenceSession.run` contract, so it replaces an onnxruntime session as is; `run_torch` keeps the
outputs on the device (for a caller that hands them on through DLPack). Needs torch, torchvision and onnx2torch
(requirements/torch.lock), so only the torch venv or a GPU Triton stub imports this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx2torch import convert
from onnx2torch.node_converters import registry
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node


class DepthToSpace(torch.nn.Module):
    """ONNX DepthToSpace on NCHW: DCR (the default, which tf2onnx emits for pose_detection) or CRD."""

    def __init__(self, blocksize: int, mode: str) -> None:
        super().__init__()
        self.blocksize, self.mode = blocksize, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "CRD":
            return torch.pixel_shuffle(x, self.blocksize)
        n, c, h, w = x.shape
        b = self.blocksize
        x = x.reshape(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2)
        return x.reshape(n, c // (b * b), h * b, w * b)


class PRelu(torch.nn.Module):
    """ONNX PRelu. onnx2torch's own takes a boolean-mask assignment for the (1, C, 1, 1) slope tf2onnx writes: a
    nonzero() per call, i.e. a GPU->CPU sync per layer (and 5-10x slower on CPU). A per-channel slope gets one prelu
    kernel; any other broadcastable slope the formula."""

    def forward(self, x: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
        shape = (1,) * (x.dim() - slope.dim()) + tuple(slope.shape)
        if x.dim() >= 2 and shape == (1, x.shape[1]) + (1,) * (x.dim() - 2):
            return torch.nn.functional.prelu(x, slope.reshape(-1))
        return torch.where(x >= 0, x, x * slope)


def _depth_to_space(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    module = DepthToSpace(node.attributes["blocksize"], node.attributes.get("mode", "DCR"))
    return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))


def _prelu(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    return OperationConverterResult(torch_module=PRelu(), onnx_mapping=onnx_mapping_from_node(node))


def _with_fallback(builtin: registry.TConverter, ours: registry.TConverter) -> registry.TConverter:
    """onnx2torch's converter where it handles the node, ours where it raises NotImplementedError."""

    def converter(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
        try:
            return builtin(node, graph)
        except NotImplementedError:
            return ours(node, graph)

    return converter


def _register(
    operation_type: str, versions: tuple[int, ...], make: Callable[[registry.TConverter | None], registry.TConverter]
) -> None:
    """Registers make(onnx2torch's converter or None) per schema version (add_converter refuses a second one)."""
    for version in versions:
        builtin = registry._CONVERTER_REGISTRY.pop(
            registry.OperationDescription(onnx.defs.ONNX_DOMAIN, operation_type, version), None
        )
        registry.add_converter(operation_type=operation_type, version=version)(make(builtin))


# DepthToSpace: onnx2torch 1.5.15 converts CRD only; ours takes the nodes it refuses (DCR).
_register("DepthToSpace", (11, 13), lambda b: _depth_to_space if b is None else _with_fallback(b, _depth_to_space))
_register("PRelu", (7, 9, 16), lambda _: _prelu)


class TorchSession:
    """One ONNX file as a converted PyTorch module, called like an onnxruntime InferenceSession."""

    def __init__(self, path: Path, device: str = "cuda" if torch.cuda.is_available() else "cpu", half: bool = False):
        model = onnx.load(str(path))
        graph = model.graph
        initializers = {i.name for i in graph.initializer}
        self.input_names = [i.name for i in graph.input if i.name not in initializers]
        self.output_names = [o.name for o in graph.output]
        self.device, self.dtype = torch.device(device), torch.float16 if half else torch.float32
        self.module = convert(model).to(self.device, self.dtype).eval()
        # Where each graph output is in the module's result. onnx2torch returns one entry per producing node
        # (first-use order; the bare value when there is a single one), and a node with several outputs as a tuple.
        producer = {name: (node, index) for node in graph.node for index, name in enumerate(node.output)}
        nodes = list(dict.fromkeys(id(producer[name][0]) for name in self.output_names))
        self._paths: dict[str, tuple[int | None, int | None]] = {}
        for name in self.output_names:
            node, index = producer[name]
            self._paths[name] = (
                nodes.index(id(node)) if len(nodes) > 1 else None,
                index if len(node.output) > 1 else None,
            )

    def run_torch(self, names: list[str], feeds: Mapping[str, np.ndarray | torch.Tensor]) -> list[torch.Tensor]:
        """The outputs `names`, in that order, as tensors on the device (fp16 when half)."""
        inputs = []
        for name in self.input_names:
            value = feeds[name]
            tensor = torch.from_numpy(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) else value
            tensor = tensor.to(self.device)
            inputs.append(tensor.to(self.dtype) if tensor.is_floating_point() else tensor)
        with torch.inference_mode():
            result = self.module(*inputs)
        outputs = []
        for name in names:
            node, index = self._paths[name]
            found = result if node is None else result[node]
            outputs.append(found if index is None else found[index])
        return outputs

    def run(self, names: list[str], feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """onnxruntime's contract: the outputs `names`, in that order, as float32 numpy arrays on the CPU."""
        return [
            (t.float() if t.is_floating_point() else t).cpu().contiguous().numpy() for t in self.run_torch(names, feeds)
        ]


def sessions(repo: Path, models: Iterable[str], device: str, half: bool) -> dict[str, TorchSession]:
    """A TorchSession per model, on `repo/<model>/1/model.onnx` (the file its Triton model would serve)."""
    return {model: TorchSession(repo / model / "1" / "model.onnx", device, half) for model in models}
