"""ONNX plumbing: importing onnx2torch without torchvision, graph fixes, TorchScript → ONNX.

onnx2torch turns an ONNX graph into a ``torch.fx.GraphModule`` of ordinary modules (one per node,
named after the node), which is differentiable and hookable.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import sys
import types
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from leam.errors import ModelError

OPSET = 17  # what TorchScript models are exported with; onnx2torch converts it
INSTALL = "pip install 'onnx>=1.21' && pip install --no-deps 'onnx2torch>=1.5'"


def onnx_missing() -> str | None:
    """Why ONNX files cannot be read here (a message naming what to install), or None."""
    missing = [m for m in ("onnx", "onnx2torch") if importlib.util.find_spec(m) is None]
    if missing:
        return f"reading ONNX and TorchScript files needs {' and '.join(missing)}: {INSTALL}"
    return None


@contextmanager
def torchvision_stub():
    """onnx2torch imports torchvision for two detection ops (NonMaxSuppression, RoiAlign) that
    face-recognition models do not use; torchvision may be absent or not importable beside this
    torch build. While onnx2torch is imported, a stand-in whose functions raise takes its place."""
    if "torchvision" in sys.modules:  # the user's own, already imported: use it
        yield
        return

    def unavailable(*_args, **_kwargs):
        raise ModelError("this ONNX model uses a detection op (NonMaxSuppression/RoiAlign) that needs torchvision")

    ops = types.ModuleType("torchvision.ops")
    ops.nms = ops.roi_align = ops.box_convert = unavailable
    stub = types.ModuleType("torchvision")
    stub.ops = ops
    stubs = {"torchvision": stub, "torchvision.ops": ops}
    sys.modules.update(stubs)
    try:
        yield
    finally:
        for key, module in stubs.items():
            if sys.modules.get(key) is module:
                del sys.modules[key]


def import_onnx() -> tuple[types.ModuleType, types.ModuleType]:
    problem = onnx_missing()
    if problem:
        raise ModelError(problem)
    import onnx

    if "onnx2torch" not in sys.modules:
        with torchvision_stub():
            importlib.import_module("onnx2torch")
    return onnx, sys.modules["onnx2torch"]


def read_onnx(path: Path, label: str | None = None):
    """The ONNX ModelProto at ``path`` with its external data checked and read by leam
    (``_onnx_data.inline_external_data``) before any library reads it; ``label`` says what it should be."""
    from leam.models import _onnx_data

    what = f" ({label})" if label else ""
    if path.stat().st_size == 0:  # protobuf reads it as an empty model
        raise ModelError(f"{path} is not an ONNX model (an empty file{'; expected ' + label if label else ''})")
    onnx, _ = import_onnx()
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise ModelError(f"{path} is not an ONNX model{what}: {type(exc).__name__}: {exc}") from None
    _onnx_data.inline_external_data(model, path)
    return model


def inline_constant_identities(model) -> None:
    """Replace ``Identity`` nodes of initializers by copies of them (torch's exporter shares equal
    constants through Identity nodes, which onnx2torch cannot take as e.g. a Conv bias)."""
    import onnx

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    keep = []
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in inits and node.output[0] not in outputs:
            copy = onnx.TensorProto()
            copy.CopyFrom(inits[node.input[0]])
            copy.name = node.output[0]
            graph.initializer.append(copy)
            inits[copy.name] = copy
        else:
            keep.append(node)
    if len(keep) < len(graph.node):
        del graph.node[:]
        graph.node.extend(keep)


def drop_omitted_inputs(model) -> None:
    """Remove the trailing empty names from each node's inputs: ONNX's way to omit optional inputs, which
    onnx2torch looks up as tensors (torch's exporter writes ``Clip(x, min, "")`` for ``F.normalize``)."""
    for node in model.graph.node:
        n = len(node.input)
        while n and node.input[n - 1] == "":
            n -= 1
        if n < len(node.input):
            del node.input[n:]


def input_dims(model, where: str) -> list[int | None] | None:
    """The image input's dimensions (None where symbolic), or None when the graph states no shape at all;
    exactly one non-initializer input."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ModelError(f"{where} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}), expected one image")
    tensor = inputs[0].type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]


def pin_input_shape(model, dims: list[int | None]) -> None:
    """State the image input's shape as ``dims`` (None: a free dimension, ``N``) in ``model``: onnx2torch picks
    some ops' code from the input's shape, and a graph that leaves it out or open gets what leam will feed."""
    inits = {t.name for t in model.graph.initializer}
    image = next(i for i in model.graph.input if i.name not in inits)
    shape = image.type.tensor_type.shape
    del shape.dim[:]
    for d in dims:
        dim = shape.dim.add()
        if d is None:
            dim.dim_param = "N"
        else:
            dim.dim_value = d


def normalises_itself(model) -> bool:
    """insightface's test (``ArcFaceONNX``): Sub and Mul among the first 8 nodes mean the graph scales
    its [0, 255] input itself (insightface then feeds it unnormalised). It looks at node names from
    MXNet conversions (``Sub*``/``_minus*``, ``Mul*``/``_mul*``); op types are checked too."""
    nodes = model.graph.node[:8]
    sub = any(n.op_type == "Sub" or n.name.startswith(("Sub", "_minus")) for n in nodes)
    mul = any(n.op_type == "Mul" or n.name.startswith(("Mul", "_mul")) for n in nodes)
    return sub and mul


def to_torch(model, label: str) -> nn.Module:
    """The ONNX ``model`` as a torch.fx GraphModule (onnx2torch), in eval mode."""
    _, onnx2torch = import_onnx()
    drop_omitted_inputs(model)
    inline_constant_identities(model)
    try:
        return onnx2torch.convert(model).eval()
    except Exception as exc:  # noqa: BLE001 - onnx2torch raises NotImplementedError, KeyError, ...
        flow = next((op for op in ("If", "Loop", "Scan") if f"operation_type='{op}'" in str(exc)), None)
        hint = (f" ({flow}: control flow that depends on the input, which onnx2torch cannot convert; export the "
                "model traced for one path, e.g. torch.jit.trace or torch.onnx.export of the module)") if flow else ""
        text = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise ModelError(f"onnx2torch cannot convert {label}: {text}{hint}") from None


def torchscript_to_onnx(net: torch.jit.ScriptModule, input_size: tuple[int, int], label: str):
    """Export a TorchScript module to an ONNX ModelProto in memory (torch's TorchScript-based exporter,
    which needs no onnxscript), with a free batch dimension."""
    onnx, _ = import_onnx()
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript-based exporter is deprecated in torch >= 2.9
            torch.onnx.export(
                net, (torch.zeros(1, 3, *input_size),), buf, dynamo=False, opset_version=OPSET,
                input_names=["input"], output_names=["embedding"],
                dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}},
            )
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"cannot convert TorchScript {label} for hooking (via ONNX): "
                         f"{type(exc).__name__}: {exc}") from None
    return onnx.load_from_string(buf.getvalue())
