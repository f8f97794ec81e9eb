"""Models a user brings: ONNX files (through onnx2torch), TorchScript files, any ``torch.nn.Module``.

Each becomes a differentiable ``FaceModel`` whose layers LEAM can hook. What the file cannot say
(input size, colour order, normalisation, alignment) comes from a ``Preset``; the embedding size and
the default layers are found by running the model once.

>>> model = load_model_file("w600k_r50.onnx", preset="arcface")      # doctest: +SKIP
>>> model = from_module(my_net, preset="arcface")                     # doctest: +SKIP

TorchScript runs compiled code that Python hooks cannot reach, so a TorchScript model is exported
to ONNX in memory and converted like an ONNX file. Pickled whole-model ``.pth`` files are not
unpickled unless the user trusts them (``trust_pickles()``, the CLI's ``--trust-model-file``): only
TorchScript archives and ONNX files are model files otherwise; a state dict goes with its
architecture (``--model iresnet50 --weights backbone.pth``).
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from leam._io import text_name
from leam.errors import ModelError
from leam.face.templates import ARCFACE_TEMPLATE, AlignmentTemplate
from leam.models import _onnx
from leam.models._files import existing_file
from leam.models._probe import (  # noqa: F401 - probe, SlowModelWarning: re-exported
    SlowModelWarning,
    batch_run,
    check_embeddings,
    probe,
    probe_images,
    probe_run,
    warn_if_slow,
)
from leam.models._registry import FaceModel, ModelSpec
from leam.models._torch_file import load_torch_file, pickles_trusted
from leam.models.iresnet import DEPTHS, expected_state, state_dict_mismatch

N_DEFAULT_LAYERS = 9


@dataclass(frozen=True)
class Preset:
    """How to feed a model file: chip size and alignment, the colour order the model expects, and
    ``(x - mean) / std`` applied per channel (in the model's colour order) to values in [0, 255]."""

    name: str
    description: str
    input_size: tuple[int, int]  # (height, width)
    color_order: str  # "RGB" or "BGR"
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    template: AlignmentTemplate
    threshold: float = 0.3  # typical cosine threshold of ArcFace-style models; model-dependent
    threshold_metric: str = "cosine"

    @property
    def normalization(self) -> str:
        return f"{self.color_order} (x - {list(self.mean)}) / {list(self.std)}"

    @property
    def mean_rgb(self) -> tuple[float, float, float]:
        """The RGB colour the model sees as zero: ``mean`` in RGB order. A preset that passes [0, 255] on
        unchanged (mean 0, std 1, as ``arcface-raw``) is for graphs that normalise themselves; their
        normalisation is not known here, and insightface's graphs subtract 127.5 (SFace's too), so 127.5."""
        if tuple(map(float, self.mean)) == (0.0,) * 3 and tuple(map(float, self.std)) == (1.0,) * 3:
            return (127.5, 127.5, 127.5)
        return tuple(self.mean[::-1]) if self.color_order == "BGR" else tuple(self.mean)


PRESETS = {
    "arcface": Preset(
        "arcface",
        "insightface ArcFace models (arcface_torch, w600k_r50.onnx, ...): 112x112 RGB, (x - 127.5) / 127.5",
        (112, 112), "RGB", (127.5,) * 3, (127.5,) * 3, ARCFACE_TEMPLATE,
    ),
    "arcface-raw": Preset(
        "arcface-raw",
        "ArcFace models whose graph normalises its input itself: 112x112 RGB in [0, 255] as it is",
        (112, 112), "RGB", (0.0,) * 3, (1.0,) * 3, ARCFACE_TEMPLATE,
    ),
    "arcface-bgr": Preset(
        "arcface-bgr",
        "ArcFace-aligned models trained on BGR images (e.g. AdaFace): 112x112 BGR, (x - 127.5) / 127.5",
        (112, 112), "BGR", (127.5,) * 3, (127.5,) * 3, ARCFACE_TEMPLATE,
    ),
}


def get_preset(preset: str | Preset) -> Preset:
    if isinstance(preset, Preset):
        return preset
    try:
        return PRESETS[preset]
    except KeyError:
        raise ModelError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}") from None


class InputTransform(nn.Module):
    """leam's RGB chips in [0, 255] → the model's colour order, then ``(x - mean) / std``."""

    def __init__(self, preset: Preset) -> None:
        super().__init__()
        self.bgr = preset.color_order == "BGR"
        self.register_buffer("mean", torch.tensor(preset.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(preset.std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bgr:
            x = x.flip(1)
        return (x - self.mean) / self.std


class ExternalNet(nn.Module):
    """``input_transform`` then the user's model, with the model's own layer names.

    The model's children are registered here under their own names (the same objects), so the
    layers of ``ExternalNet`` are named as in the model; the model itself is registered last as
    ``source_model`` for its own parameters and mode. With ``one_at_a_time`` (a model exported for
    batch size 1) a batch runs image by image.
    """

    def __init__(self, model: nn.Module, preset: Preset, one_at_a_time: bool = False) -> None:
        super().__init__()
        children = dict(model.named_children())
        taken = {"input_transform", "source_model"} & set(children)
        if taken:
            raise ModelError(f"the model has a submodule named {taken.pop()!r}, a name leam's wrapper uses")
        self.input_transform = InputTransform(preset).to(next((p.device for p in model.parameters()), "cpu"))
        for name, child in children.items():
            self.add_module(name, child)
        self.source_model = model
        self.one_at_a_time = one_at_a_time

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_transform(x)
        if self.one_at_a_time and x.shape[0] > 1:
            out = torch.cat([self.source_model(xi) for xi in x.split(1)])
        else:
            out = self.source_model(x)
        if isinstance(out, torch.Tensor) and out.is_floating_point() and out.dtype != torch.float32:
            out = out.float()  # float16/float64 graphs give leam's float32 embeddings
        return out


# ------------------------------------------------------------------------------- default layers


def spread_layers(names: Sequence[str], n: int = N_DEFAULT_LAYERS) -> list[str]:
    """``n`` names evenly spaced from the first to the last (all of them when there are ≤ n).

    >>> spread_layers([f"l{i}" for i in range(13)], 5)
    ['l0', 'l3', 'l6', 'l9', 'l12']
    """
    if len(names) <= n:
        return list(names)
    if n == 1:
        return [names[-1]]
    return [names[int(i * (len(names) - 1) / (n - 1) + 0.5)] for i in range(n)]


# ------------------------------------------------------------------------------- from a module


def from_module(
    net: nn.Module,
    preset: str | Preset = "arcface",
    name: str | None = None,
    one_at_a_time: bool = False,
    source: Path | None = None,
    kind: str = "module",
) -> FaceModel:
    """Wrap any ``nn.Module`` that maps a normalised (N, 3, H, W) batch to (N, D) embeddings.

    The preset's colour order and normalisation are applied in front of it (leam feeds RGB in
    [0, 255]); a TorchScript module is converted through ONNX so its layers can be hooked.
    """
    preset = get_preset(preset)
    if isinstance(net, torch.jit.ScriptModule):
        return _from_torchscript(net, preset, name or type(net).__name__, source)
    label = name or (source.name if source else type(net).__name__)
    where = _where(label, source)
    wrapped = ExternalNet(net, preset, one_at_a_time)  # modes untouched: leam runs it in eval mode, restoring them
    images = probe_images(preset.input_size).to(next((p.device for p in wrapped.parameters()), torch.device("cpu")))
    layers, one = probe_run(wrapped, images[:1], where)
    two, seconds = batch_run(wrapped, images, where)
    check_embeddings(one, two, where, label)
    if not layers:
        raise ModelError(f"{where} has no submodule that outputs a feature map (N, C, H, W) to explain")
    warn_if_slow(where, seconds, images.device)
    spec = ModelSpec(
        name=label,
        description=f"{kind} {label} with preset {preset.name}",
        input_size=preset.input_size,
        color_order=preset.color_order,
        normalization=preset.normalization,
        template=preset.template,
        embedding_size=int(two.shape[1]),
        default_layers=tuple(spread_layers(layers)),
        threshold=preset.threshold,
        threshold_metric=preset.threshold_metric,
        mean_colour=preset.mean_rgb,
        weights_hint=f"in {source}" if source else "given as a Python module",
    )
    return FaceModel(spec, wrapped, source, {"kind": kind, "preset": preset.name})


def _where(label: str, source: Path | None) -> str:
    """How errors name the model: ``model file PATH``, or ``model LABEL`` for a module."""
    return f"model file {text_name(str(source))}" if source else f"model {label}"


# ------------------------------------------------------------------------------- ONNX


def _from_onnx_model(model, preset: Preset, label: str, source: Path | None, kind: str) -> FaceModel:
    where = _where(label, source)
    dims = _onnx.input_dims(model, where)
    dims = [None] * 4 if dims is None else dims  # a graph that states no shape: tried as (N, 3, H, W)
    if len(dims) != 4 or dims[1] not in (3, None):
        raise ModelError(f"{where} takes input of shape {dims}, expected (N, 3, H, W)")
    size, wanted = tuple(dims[2:]), preset.input_size
    if any(d is not None and d != w for d, w in zip(size, wanted)):
        shown = "x".join("?" if d is None else str(d) for d in size)
        raise ModelError(f"{where} takes {shown} images, but preset {preset.name!r} gives {wanted[0]}x{wanted[1]}")
    _onnx.pin_input_shape(model, [dims[0], 3, *wanted])  # what leam feeds it
    graph_module = _onnx.to_torch(model, label)
    try:
        return from_module(graph_module, preset, label, one_at_a_time=dims[0] == 1, source=source, kind=kind)
    except ModelError as exc:
        if None not in size or " fails on a " not in str(exc):
            raise
        raise ModelError(f"{exc} (the graph leaves its image size open and was run at preset {preset.name!r}'s "
                         f"{wanted[0]}x{wanted[1]}: is it made for another size?)") from None


def load_onnx(path: str | Path, preset: str | Preset | None = None) -> FaceModel:
    """An ONNX face-recognition model as a differentiable module (onnx2torch).

    Without a preset, insightface's own rule picks one: ``arcface-raw`` when Sub and Mul nodes open
    the graph (it normalises its input itself), else ``arcface``. Weights kept in other files
    (external data) are checked by leam before any of them is read (``_onnx_data``): only regular
    files inside the model's folder, within their size.
    """
    path = _existing(path)
    model = _onnx.read_onnx(path)
    if preset is None:
        preset = "arcface-raw" if _onnx.normalises_itself(model) else "arcface"
    return _from_onnx_model(model, get_preset(preset), path.name, path, "ONNX model")


# ------------------------------------------------------------------------------- TorchScript


def _from_torchscript(net: torch.jit.ScriptModule, preset: Preset, label: str, source: Path | None) -> FaceModel:
    """Python hooks cannot reach into TorchScript: export it to ONNX in memory, convert that."""
    model = _onnx.torchscript_to_onnx(net, preset.input_size, label)
    return _from_onnx_model(model, preset, label, source, "TorchScript model")


def load_torchscript(path: str | Path, preset: str | Preset | None = None) -> FaceModel:
    """A TorchScript archive (``torch.jit.save``) as a hookable module."""
    path = _existing(path)
    if not _is_torchscript(path):
        raise ModelError(_not_a_model_file(path))
    try:  # TorchScript's own unpickler: only TorchScript types, no arbitrary Python callables
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch >= 2.10 deprecates TorchScript
            net = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{path} is not a loadable TorchScript archive: {type(exc).__name__}: {exc}") from None
    return _from_torchscript(net, get_preset(preset or "arcface"), path.name, path)


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files holding ``<name>/constants.pkl`` and ``<name>/code/``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


_UNREAD = object()


def _not_a_model_file(path: Path, obj: object = _UNREAD) -> str:
    """Why ``path`` (neither ONNX nor TorchScript; ``obj``: what it holds, when already read) is refused;
    a pickle is refused unopened unless trusted (``trust_pickles``)."""
    generic = f"{path} is not a model file: expected an ONNX file (.onnx) or a TorchScript archive"
    if pickles_trusted():
        generic += " or a pickled torch.nn.Module"
    try:
        obj = load_torch_file(path) if obj is _UNREAD else obj  # a ModelError for anything needing unpickling
    except ModelError:
        raise
    except Exception:  # noqa: BLE001 - not a torch file at all
        return generic
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        return generic
    fits = [d for d in DEPTHS if not state_dict_mismatch(obj, expected_state(d))]
    hint = f"--model iresnet{fits[0]} --weights {path}" if fits else "--model NAME --weights PATH"
    return f"{path} is a state dict (weights without an architecture), not a model file; use {hint}"


# ------------------------------------------------------------------------------- any file


def _existing(path: str | Path) -> Path:
    return existing_file(path, "model file")


def load_model_file(path: str | Path, preset: str | Preset | None = None) -> FaceModel:
    """An ONNX file (by its ``.onnx`` suffix) or a TorchScript archive (by its content), or, inside
    ``trust_pickles()`` only, a pickled ``nn.Module``; without a preset, ``arcface`` (or ``arcface-raw``
    for an ONNX graph that normalises its input)."""
    path = _existing(path)
    if path.suffix.lower() == ".onnx":
        return load_onnx(path, preset)
    if _is_torchscript(path):
        return load_torchscript(path, preset)
    if pickles_trusted():  # the user vouched for the file: a whole pickled module (torch.save(model)) will do
        try:
            obj = load_torch_file(path)
        except Exception as exc:  # noqa: BLE001 - unpickling raises anything at all
            raise ModelError(f"{path} cannot be unpickled: {type(exc).__name__}: {exc}") from None
        if isinstance(obj, nn.Module):
            return from_module(obj, preset or "arcface", source=path, kind="pickled model")
        raise ModelError(_not_a_model_file(path, obj))
    raise ModelError(_not_a_model_file(path))
