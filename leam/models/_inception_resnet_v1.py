"""Inception-ResNet-v1 as in David Sandberg's FaceNet (``src/models/inception_resnet_v1.py``).

Batch norm is folded into each convolution's bias (and into the bottleneck's), so every module is
a plain convolution, ReLU, pooling or linear layer. Convolutions keep TensorFlow's padding rule
(``TFConv2d``), so weights from a TensorFlow graph give TensorFlow's numbers.

Layer names and output shapes for a (N, 3, 160, 160) input::

    input_norm                                (3, 160, 160)
    stem.conv1a  3x3/2 valid                  (32, 79, 79)
    stem.conv2a  3x3 valid                    (32, 77, 77)
    stem.conv2b  3x3 same                     (64, 77, 77)
    stem.maxpool3a  3x3/2 valid               (64, 38, 38)
    stem.conv3b  1x1                          (80, 38, 38)
    stem.conv4a  3x3 valid                    (192, 36, 36)
    stem.conv4b  3x3/2 valid                  (256, 17, 17)
    block35.0 … block35.4  (Inception-ResNet-A, scale 0.17)   (256, 17, 17)
    mixed6a  (reduction A)                    (896, 8, 8)
    block17.0 … block17.9  (Inception-ResNet-B, scale 0.10)   (896, 8, 8)
    mixed7a  (reduction B)                    (1792, 3, 3)
    block8.0 … block8.4  (Inception-ResNet-C, scale 0.20)     (1792, 3, 3)
    block8_final  (Inception-ResNet-C, scale 1, no ReLU)       (1792, 3, 3)
    avgpool → flatten → bottleneck (1792 → 512) → l2norm

Inside a residual block: ``branch0``, ``branch1`` (``branch1.0``, ``branch1.1``, …), ``branch2``,
``up`` (the 1x1 projection back to the block's width, with bias, no ReLU) and ``relu``; every
``BasicConv`` has ``conv`` and ``relu``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

INPUT_SIZE = 160
EMBEDDING_SIZE = 512
SCALES = {"block35": 0.17, "block17": 0.10, "block8": 0.20}
REPEATS = {"block35": 5, "block17": 10, "block8": 5}


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "SAME" padding (before, after) of one axis; the odd pixel goes after.

    >>> tf_same_padding(160, 3, 2), tf_same_padding(17, 3, 1), tf_same_padding(4, 3, 2)
    ((0, 1), (1, 1), (0, 1))
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class TFConv2d(nn.Conv2d):
    """A convolution with TensorFlow's padding: "VALID" (none) or "SAME" (asymmetric when needed)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int | tuple[int, int], stride: int = 1, padding: str = "SAME"):
        super().__init__(in_ch, out_ch, kernel, stride, padding=0, bias=True)
        if padding not in ("SAME", "VALID"):
            raise ValueError(f"expected padding 'SAME' or 'VALID', got {padding!r}")
        self.tf_padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tf_padding == "SAME":
            (kh, kw), (sh, sw) = self.kernel_size, self.stride
            top, bottom = tf_same_padding(x.shape[2], kh, sh)
            left, right = tf_same_padding(x.shape[3], kw, sw)
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, tf_padding={self.tf_padding}"


class BasicConv(nn.Module):
    """Convolution (batch norm folded into its bias) → ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int | tuple[int, int], stride: int = 1, padding: str = "SAME"):
        super().__init__()
        self.conv = TFConv2d(in_ch, out_ch, kernel, stride, padding)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))


def _seq(*convs: BasicConv) -> nn.Sequential:
    return nn.Sequential(*convs)


class FixedStandardization(nn.Module):
    """RGB values in [0, 255] → (x − 127.5) / 128 (FaceNet's ``fixed_image_standardization``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - 127.5) / 128.0


class Prewhiten(nn.Module):
    """Per image: (x − mean) / max(std, 1/√n) over its n = 3·H·W values (FaceNet's ``prewhiten``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        mean = flat.mean(dim=1).view(-1, 1, 1, 1)
        std = flat.std(dim=1, unbiased=False).clamp(min=flat.shape[1] ** -0.5).view(-1, 1, 1, 1)
        return (x - mean) / std


class L2Normalize(nn.Module):
    """x / sqrt(max(Σx², eps)) per row, as TensorFlow's ``l2_normalize``."""

    def __init__(self, eps: float = 1e-10) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).sum(dim=1, keepdim=True).clamp(min=self.eps))


class ResidualBlock(nn.Module):
    """Branches → concatenate → ``up`` (1x1, bias) → x + scale·up → ReLU (unless ``relu=False``)."""

    def __init__(self, branches: dict[str, nn.Module], mixed: int, width: int, scale: float, relu: bool = True):
        super().__init__()
        for name, branch in branches.items():
            self.add_module(name, branch)
        self.branches = tuple(branches)
        self.up = TFConv2d(mixed, width, 1)
        self.scale = scale
        self.relu = nn.ReLU() if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = torch.cat([getattr(self, name)(x) for name in self.branches], dim=1)
        return self.relu(x + self.scale * self.up(mixed))


def block35(scale: float = SCALES["block35"]) -> ResidualBlock:
    """Inception-ResNet-A on 256 channels (35x35 in the Inception-v4 paper, 17x17 here)."""
    return ResidualBlock(
        {
            "branch0": BasicConv(256, 32, 1),
            "branch1": _seq(BasicConv(256, 32, 1), BasicConv(32, 32, 3)),
            "branch2": _seq(BasicConv(256, 32, 1), BasicConv(32, 32, 3), BasicConv(32, 32, 3)),
        },
        mixed=96,
        width=256,
        scale=scale,
    )


def block17(scale: float = SCALES["block17"]) -> ResidualBlock:
    """Inception-ResNet-B on 896 channels."""
    return ResidualBlock(
        {
            "branch0": BasicConv(896, 128, 1),
            "branch1": _seq(BasicConv(896, 128, 1), BasicConv(128, 128, (1, 7)), BasicConv(128, 128, (7, 1))),
        },
        mixed=256,
        width=896,
        scale=scale,
    )


def block8(scale: float = SCALES["block8"], relu: bool = True) -> ResidualBlock:
    """Inception-ResNet-C on 1792 channels."""
    return ResidualBlock(
        {
            "branch0": BasicConv(1792, 192, 1),
            "branch1": _seq(BasicConv(1792, 192, 1), BasicConv(192, 192, (1, 3)), BasicConv(192, 192, (3, 1))),
        },
        mixed=384,
        width=1792,
        scale=scale,
        relu=relu,
    )


class Reduction(nn.Module):
    """Parallel branches concatenated along channels (``mixed6a``, ``mixed7a``)."""

    def __init__(self, branches: dict[str, nn.Module]) -> None:
        super().__init__()
        for name, branch in branches.items():
            self.add_module(name, branch)
        self.branches = tuple(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([getattr(self, name)(x) for name in self.branches], dim=1)


def mixed6a() -> Reduction:
    return Reduction(
        {
            "branch0": BasicConv(256, 384, 3, 2, "VALID"),
            "branch1": _seq(BasicConv(256, 192, 1), BasicConv(192, 192, 3), BasicConv(192, 256, 3, 2, "VALID")),
            "branch2": nn.MaxPool2d(3, 2),
        }
    )


def mixed7a() -> Reduction:
    return Reduction(
        {
            "branch0": _seq(BasicConv(896, 256, 1), BasicConv(256, 384, 3, 2, "VALID")),
            "branch1": _seq(BasicConv(896, 256, 1), BasicConv(256, 256, 3, 2, "VALID")),
            "branch2": _seq(BasicConv(896, 256, 1), BasicConv(256, 256, 3), BasicConv(256, 256, 3, 2, "VALID")),
            "branch3": nn.MaxPool2d(3, 2),
        }
    )


class InceptionResnetV1(nn.Module):
    """(N, 3, 160, 160) RGB in [0, 255] → (N, 512) L2-normalised embeddings.

    ``embedding_size`` sets the bottleneck's width and ``input_norm`` the first module (default
    ``FixedStandardization``) for checkpoints trained otherwise (e.g. 128-d, ``Prewhiten``).
    """

    def __init__(self, embedding_size: int = EMBEDDING_SIZE, input_norm: nn.Module | None = None) -> None:
        super().__init__()
        self.input_norm = input_norm if input_norm is not None else FixedStandardization()
        self.stem = nn.Sequential(
            OrderedDict(
                conv1a=BasicConv(3, 32, 3, 2, "VALID"),
                conv2a=BasicConv(32, 32, 3, 1, "VALID"),
                conv2b=BasicConv(32, 64, 3),
                maxpool3a=nn.MaxPool2d(3, 2),
                conv3b=BasicConv(64, 80, 1, 1, "VALID"),
                conv4a=BasicConv(80, 192, 3, 1, "VALID"),
                conv4b=BasicConv(192, 256, 3, 2, "VALID"),
            )
        )
        self.block35 = nn.Sequential(*[block35() for _ in range(REPEATS["block35"])])
        self.mixed6a = mixed6a()
        self.block17 = nn.Sequential(*[block17() for _ in range(REPEATS["block17"])])
        self.mixed7a = mixed7a()
        self.block8 = nn.Sequential(*[block8() for _ in range(REPEATS["block8"])])
        self.block8_final = block8(scale=1.0, relu=False)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.bottleneck = nn.Linear(1792, embedding_size)  # batch norm folded into weight and bias
        self.l2norm = L2Normalize()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) → the last feature map (N, 1792, h, w), before pooling."""
        x = self.stem(self.input_norm(x))
        x = self.mixed6a(self.block35(x))
        x = self.mixed7a(self.block17(x))
        return self.block8_final(self.block8(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.l2norm(self.bottleneck(x))
