"""IResNet-18/34/50/100, the ArcFace backbones of insightface's ``arcface_torch``, in PyTorch.

The modules carry exactly insightface's parameter names (``recognition/arcface_torch/backbones/
iresnet.py``), so a ``backbone.pth`` trained there, a plain state dict saved with
``torch.save(backbone.state_dict(), path)``, loads with ``torch.load(..., weights_only=True)`` and
strict key checking. leam ships no IResNet weights: the user supplies them.

The input is a 112x112 RGB face in [0, 255] aligned to the ArcFace template; ``input_norm`` (no
parameters, so the state dict keys stay insightface's) computes (x / 255 - 0.5) / 0.5 first. The
output is the 512-d embedding (``features``, a batch norm, not L2-normalised).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from leam.errors import ModelError
from leam.face.templates import ARCFACE_CHIP, ARCFACE_DST, ARCFACE_TEMPLATE  # noqa: F401  (ARCFACE_DST re-exported)
from leam.models._files import existing_file
from leam.models._registry import FaceModel, ModelSpec, register_model
from leam.models._torch_file import load_torch_file

CHIP = ARCFACE_CHIP
EMBEDDING = 512
DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}

class InputNorm(nn.Module):
    """RGB values in [0, 255] → (x / 255 - 0.5) / 0.5; no parameters or buffers."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x / 255.0 - 0.5) / 0.5


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """bn1 → conv1 → bn2 → prelu → conv2 (stride) → bn3, plus the (downsampled) input."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch, eps=1e-05)
        self.conv1 = conv3x3(in_ch, out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch, eps=1e-05)
        self.prelu = nn.PReLU(out_ch)
        self.conv2 = conv3x3(out_ch, out_ch, stride)
        self.bn3 = nn.BatchNorm2d(out_ch, eps=1e-05)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_ch, eps=1e-05),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class IResNet(nn.Module):
    """insightface's IResNet: (N, 3, 112, 112) RGB in [0, 255] → (N, 512).

    >>> IResNet((2, 2, 2, 2))(torch.zeros(1, 3, 112, 112)).shape   # doctest: +SKIP
    torch.Size([1, 512])
    """

    def __init__(self, blocks: tuple[int, int, int, int], num_features: int = EMBEDDING) -> None:
        super().__init__()
        self.input_norm = InputNorm()
        self.conv1 = conv3x3(3, 64)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-05)
        self.prelu = nn.PReLU(64)
        in_ch = 64
        for i, (ch, n) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
            stage = [IBasicBlock(in_ch, ch, stride=2)] + [IBasicBlock(ch, ch) for _ in range(n - 1)]
            self.add_module(f"layer{i}", nn.Sequential(*stage))
            in_ch = ch
        self.bn2 = nn.BatchNorm2d(512, eps=1e-05)
        self.dropout = nn.Dropout(p=0.0)  # insightface's is in-place; this one never writes a hooked tensor
        self.fc = nn.Linear(512 * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-05)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(self.input_norm(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


def default_layers(blocks: tuple[int, int, int, int]) -> tuple[str, ...]:
    """Nine layers from input to output at every resolution: the stem (112 px), then blocks — all of
    them when there are only eight, else the first and last at 56 px, the middle and last at 28 px,
    the thirds at 14 px and the last block (7 px)."""
    if 1 + sum(blocks) <= 9:
        return ("prelu", *(f"layer{i}.{j}" for i, n in enumerate(blocks, 1) for j in range(n)))
    n1, n2, n3, n4 = blocks
    picks = ((1, 0), (1, n1 - 1), (2, n2 // 2 - 1), (2, n2 - 1), (3, n3 // 3 - 1), (3, 2 * n3 // 3 - 1),
             (3, n3 - 1), (4, n4 - 1))
    return ("prelu", *(f"layer{i}.{j}" for i, j in picks))


def expected_state(depth: int) -> dict[str, tuple[int, ...]]:
    """The state dict keys and shapes of IResNet-``depth`` (built on the meta device: no memory)."""
    with torch.device("meta"):
        net = IResNet(DEPTHS[depth])
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict of tensors from ``path``; pickled objects are refused (``load_torch_file``), unless
    trusted (``trust_pickles``): then a whole pickled model gives its state dict."""
    path = existing_file(path)
    try:
        state = load_torch_file(path)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, EOFError, ... on non-checkpoints
        raise ModelError(f"{path} is not a PyTorch state dict file: {type(exc).__name__}: {exc}") from None
    if isinstance(state, nn.Module):  # only a trusted, fully unpickled file can hold one
        state = state.state_dict()
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
    state = dict(state)
    if state and all(k.startswith("module.") for k in state):  # saved from a DistributedDataParallel wrapper
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def state_dict_mismatch(state: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]]) -> str:
    """'' when ``state`` fits ``expected`` (key → shape); otherwise which keys are missing,
    unexpected or mis-shaped. Batch norms' ``num_batches_tracked`` may be absent (older files)."""
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    misshaped = [
        f"{k} (file {tuple(state[k].shape)}, model {shape})"
        for k, shape in expected.items()
        if k in state and tuple(state[k].shape) != shape
    ]
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if keys:
            shown = ", ".join(keys[:8]) + (f", ... ({len(keys) - 8} more)" if len(keys) > 8 else "")
            parts.append(f"{len(keys)} {label} key{'s' if len(keys) > 1 else ''}: {shown}")
    return "; ".join(parts)


def load_insightface_weights(net: IResNet, depth: int, path: Path) -> None:
    """Fill ``net`` from an arcface_torch ``backbone.pth``, checking every key and shape first."""
    state = read_state_dict(path)
    problem = state_dict_mismatch(state, expected_state(depth))
    if problem:
        hint = ""
        fits = [d for d in DEPTHS if d != depth and not state_dict_mismatch(state, expected_state(d))]
        if fits:
            hint = f" (the file fits iresnet{fits[0]})"
        raise ModelError(f"{path} does not match iresnet{depth}{hint}: {problem}")
    net.load_state_dict(state, strict=True)


def _spec(depth: int) -> ModelSpec:
    return ModelSpec(
        name=f"iresnet{depth}",
        description=f"insightface arcface_torch IResNet-{depth} (112x112, 512-d); weights supplied by you",
        input_size=(CHIP, CHIP),
        color_order="RGB",
        normalization="(x / 255 - 0.5) / 0.5",
        template=ARCFACE_TEMPLATE,
        embedding_size=EMBEDDING,
        default_layers=default_layers(DEPTHS[depth]),
        threshold=0.3,  # a common cosine threshold for ArcFace models; depends on the training set
        threshold_metric="cosine",
        mean_colour=(127.5, 127.5, 127.5),  # (x / 255 - 0.5) / 0.5
        weights_hint=(
            f"pass your arcface_torch IResNet-{depth} state dict (backbone.pth from insightface's "
            f"arcface_torch model zoo, or your own training) with --weights PATH"
        ),
        license="weights: as their source states (insightface's model zoo: non-commercial research)",
    )


SPECS = {depth: _spec(depth) for depth in DEPTHS}


def _no_default() -> Path | None:
    return None


def build_iresnet(depth: int, weights: str | Path | None) -> FaceModel:
    """IResNet-``depth`` with the user's arcface_torch weights (there are no installed ones)."""
    spec = SPECS[depth]
    if weights is None:
        raise ModelError(f"iresnet{depth} has no installed weights: {spec.weights_hint}")
    path = Path(weights)
    net = IResNet(DEPTHS[depth])
    load_insightface_weights(net, depth, path)
    net.eval()
    return FaceModel(spec, net, path)


def _register(depth: int) -> None:
    register_model(SPECS[depth], _no_default)(lambda weights=None: build_iresnet(depth, weights))


for _depth in DEPTHS:
    _register(_depth)
