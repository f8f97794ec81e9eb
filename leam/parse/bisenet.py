"""BiSeNet face parser for the 19 CelebAMask-HQ classes, from the user's ``79999_iter.pth``.

The network is the one of zllrunning's ``face-parsing.PyTorch`` (BiSeNet with a ResNet-18 context
path whose 1/8 features replace the spatial path), rebuilt here in plain PyTorch with the same
parameter names, so its state dict loads unchanged:

- ``cp.resnet.*``: ResNet-18 without its classifier (``conv1``, ``bn1``, ``layer1`` ... ``layer4``,
  two basic blocks each, ``downsample.0/1`` where the shape changes);
- ``cp.arm16``, ``cp.arm32``: attention refinement (``conv.conv``, ``conv.bn``, ``conv_atten``,
  ``bn_atten``) on the 1/16 (256 ch) and 1/32 (512 ch) features;
- ``cp.conv_head32``, ``cp.conv_head16``, ``cp.conv_avg``: conv-BN-ReLU heads (``conv``, ``bn``);
- ``ffm``: feature fusion of the 1/8 ResNet features with the context path (``convblk``, ``conv1``,
  ``conv2``);
- ``conv_out``, ``conv_out16``, ``conv_out32``: output heads (``conv.conv``, ``conv.bn``,
  ``conv_out``); only ``conv_out`` is evaluated, the other two are training aids kept so that the
  keys match.

Input: a 512 x 512 RGB crop, ``(x / 255 - mean) / std`` with ImageNet's mean and std; output: 19
logits per pixel in ``CLASSES`` order (label value = index), as in that repository's ``test.py``.
The crop is the CelebA-HQ framing of the face (see ``leam.parse._crop``), the framing of the
CelebAMask-HQ images the network was trained on; outside the photo it is black, and those
pixels are left unlabelled.

The weights are not shipped and never downloaded: ``create_parser("bisenet", weights=PATH)``.
They are read with ``torch.load(weights_only=True)`` (tensors only; a file that needs arbitrary
pickled objects is refused) and every key and shape is checked. The tests run on random weights
saved in the same format: real quality needs the real weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from leam._finite import check_finite
from leam.errors import ModelError
from leam.face import AlignedFace
from leam.face.align import warp_to_chip
from leam.face.labels import CLASSES, LabelMap
from leam.models._files import existing_file
from leam.models._torch_file import pickles_trusted
from leam.parse import register_parser
from leam.parse._crop import head_crop_warp, labels_to_chip

NAME = "bisenet"
WEIGHTS_FILE = "79999_iter.pth"
INPUT_SIZE = 512
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class ConvBNReLU(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if cin != cout or stride != 1:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + residual)


def _stage(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1))


class ResNet18(nn.Module):
    """ResNet-18 features at 1/8, 1/16 and 1/32 of the input (128, 256, 512 channels)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = _stage(64, 64, 1)
        self.layer2 = _stage(64, 128, 2)
        self.layer3 = _stage(128, 256, 2)
        self.layer4 = _stage(256, 512, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.layer1(self.maxpool(F.relu(self.bn1(self.conv1(x)))))
        feat8 = self.layer2(x)
        feat16 = self.layer3(feat8)
        return feat8, feat16, self.layer4(feat16)


class AttentionRefinement(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(cin, cout)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        return feat * torch.sigmoid(self.bn_atten(self.conv_atten(F.adaptive_avg_pool2d(feat, 1))))


class ContextPath(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.resnet = ResNet18()
        self.arm16 = AttentionRefinement(256, 128)
        self.arm32 = AttentionRefinement(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, kernel=1, padding=0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ResNet features at 1/8, context features at 1/8)."""
        feat8, feat16, feat32 = self.resnet(x)
        avg = self.conv_avg(F.adaptive_avg_pool2d(feat32, 1))
        up32 = F.interpolate(self.arm32(feat32) + avg, size=feat16.shape[2:], mode="nearest")
        up32 = self.conv_head32(up32)
        up16 = F.interpolate(self.arm16(feat16) + up32, size=feat8.shape[2:], mode="nearest")
        return feat8, self.conv_head16(up16)


class FeatureFusion(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.convblk = ConvBNReLU(cin, cout, kernel=1, padding=0)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([spatial, context], dim=1))
        atten = torch.sigmoid(self.conv2(F.relu(self.conv1(F.adaptive_avg_pool2d(feat, 1)))))
        return feat * atten + feat


class OutputHead(nn.Module):
    def __init__(self, cin: int, mid: int, n_classes: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(cin, mid)
        self.conv_out = nn.Conv2d(mid, n_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """(N, 3, H, W) normalised RGB -> (N, n_classes, H, W) logits (the main head only)."""

    def __init__(self, n_classes: int = len(CLASSES)) -> None:
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusion(256, 256)
        self.conv_out = OutputHead(256, 256, n_classes)
        self.conv_out16 = OutputHead(128, 64, n_classes)  # auxiliary training heads: loaded, unused
        self.conv_out32 = OutputHead(128, 64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat8, context8 = self.cp(x)
        logits = self.conv_out(self.ffm(feat8, context8))
        return F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=True)


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict of tensors read with ``weights_only=True``; anything else is a ``ModelError``."""
    path = Path(path)
    if not path.is_file():
        if path.exists() or path.is_symlink():  # a folder, pipe or bad link: say which
            existing_file(path, "BiSeNet weight file")
        raise ModelError(f"BiSeNet weights not found at {path}: supply {WEIGHTS_FILE} (face-parsing.PyTorch)")
    try:  # in full only inside leam.models.trust_pickles() (--trust-model-file)
        state = torch.load(path, map_location="cpu", weights_only=not pickles_trusted())
    except Exception as exc:  # UnpicklingError (refused object), RuntimeError (not a torch file), ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: cannot be read as a tensors-only state dict ({first})") from exc
    if isinstance(state, nn.Module):  # only a trusted, fully unpickled file can hold one
        state = state.state_dict()
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    if state and all(k.startswith("module.") for k in state):  # saved from nn.DataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _listed(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_state_dict(net: nn.Module, state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """``state`` completed for loading into ``net``, or a ``ModelError`` naming every mismatch.

    Missing ``num_batches_tracked`` counters (absent from files saved by old PyTorch) are taken
    from ``net``; every other key must be present with the same shape, and no key may be extra.
    """
    expected = net.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    misshaped = [
        f"{k} (file {tuple(state[k].shape)}, expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = [
        f"{len(names)} {what}: {_listed(names)}"
        for what, names in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped))
        if names
    ]
    if problems:
        raise ModelError(f"{source}: not a BiSeNet face-parsing state dict; " + "; ".join(problems))
    return {k: state.get(k, v) for k, v in expected.items()}


def load_bisenet(path: str | Path) -> BiSeNet:
    """The network with the weights at ``path`` (face-parsing.PyTorch's ``79999_iter.pth``), in eval mode."""
    net = BiSeNet()
    state = check_state_dict(net, load_state_dict_file(path), str(path))
    net.load_state_dict(state, strict=True)
    return net.eval()


class BiSeNetParser:
    """All 19 CelebAMask-HQ classes, predicted on a 512 x 512 head crop and carried to the chip."""

    name = NAME
    classes = CLASSES

    def __init__(self, net: nn.Module) -> None:
        self.net = net

    def predict(self, crop: np.ndarray, source: str = "the crop") -> np.ndarray:
        """(512, 512) uint8 labels (``CLASSES`` indices) of a (512, 512, 3) uint8 RGB crop."""
        if crop.shape != (INPUT_SIZE, INPUT_SIZE, 3) or crop.dtype != np.uint8:
            raise ValueError(f"expected a ({INPUT_SIZE}, {INPUT_SIZE}, 3) uint8 crop, got {crop.shape} {crop.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float().div(255.0)
        x = (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
        with torch.inference_mode():
            logits = self.net(x[None])
        if logits.shape != (1, len(CLASSES), INPUT_SIZE, INPUT_SIZE):
            raise ModelError(f"BiSeNet returned logits of shape {tuple(logits.shape)}, expected (1, 19, 512, 512)")
        check_finite(logits.numpy(), f"{self.name} parser", [source], what="face-parsing logits")
        return logits[0].argmax(0).to(torch.uint8).numpy()

    def parse(self, photo: np.ndarray, face: AlignedFace) -> LabelMap:
        """The label map of ``face`` in its aligned frame."""
        crop = head_crop_warp(photo, face, INPUT_SIZE)
        labels = self.predict(warp_to_chip(photo, crop), face.source)
        return LabelMap(labels_to_chip(labels, crop, face.warp, face.photo_shape), self.classes, self.name)


@register_parser(NAME, f"BiSeNet (face-parsing.PyTorch), 19 CelebAMask-HQ classes; weights: {WEIGHTS_FILE}")
def create(weights: str | Path | None = None) -> BiSeNetParser:
    if weights is None:
        raise ModelError(
            f"the bisenet parser needs its weights: supply {WEIGHTS_FILE} (face-parsing.PyTorch's "
            "CelebAMask-HQ model) with weights=PATH; leam never downloads them"
        )
    return BiSeNetParser(load_bisenet(weights))
