"""The model registry: ``@register_model`` + ``create_model(name)`` + ``list_models()``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from leam._finite import check_finite
from leam._torch_state import preserved_state
from leam.errors import ModelError, UsageError
from leam.face.templates import AlignmentTemplate  # re-exported: leam.models.AlignmentTemplate


@dataclass(frozen=True)
class ModelSpec:
    """What a user (and leam) must know to feed and explain a model."""

    name: str
    description: str
    input_size: tuple[int, int]  # (height, width)
    color_order: str  # "RGB" or "BGR"
    normalization: str  # human-readable, e.g. "(x - mean) / 256"
    template: AlignmentTemplate
    embedding_size: int
    default_layers: tuple[str, ...]
    threshold: float  # same-person decision threshold
    threshold_metric: str  # "euclidean" or "cosine"
    weights_hint: str  # where the weights come from
    license: str = ""
    # RGB colour in [0, 255] that the normalisation maps to zero (the "mean" fill of faithfulness curves);
    # None: per image, the chip's own mean colour (e.g. prewhitening)
    mean_colour: tuple[float, float, float] | None = None


@dataclass
class FaceModel:
    """A differentiable face-recognition network with its spec.

    ``net`` takes a float tensor (N, 3, H, W) of RGB values in [0, 255] (normalisation is the
    net's first module) and returns embeddings (N, D).
    """

    spec: ModelSpec
    net: nn.Module
    weights_path: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        """Where the net's parameters are (``model.net.to("cuda")`` moves it); CPU for a net without any."""
        return next((p.device for p in self.net.parameters()), torch.device("cpu"))

    def chips_to_tensor(self, chips: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3) uint8 RGB chips → (N, 3, H, W) float32 tensor in [0, 255] on the net's device."""
        chips = np.asarray(chips)
        if chips.ndim == 3:
            chips = chips[None]
        h, w = self.spec.input_size
        if chips.ndim != 4 or chips.shape[1:] != (h, w, 3):
            raise UsageError(f"expected chips of shape (N, {h}, {w}, 3), got {chips.shape}")
        return torch.from_numpy(np.ascontiguousarray(chips)).to(self.device).permute(0, 3, 1, 2).float()

    @torch.no_grad()
    def embed(self, chips: np.ndarray, batch_size: int = 32, names: Sequence[str] | None = None) -> np.ndarray:
        """Embeddings (N, D) for aligned uint8 chips (N, H, W, 3), as a NumPy array (on the CPU).

        Raises ``NonFiniteError`` naming the chip (``names[i]``, else its index) whose embedding holds NaN or Inf.
        """
        x = self.chips_to_tensor(chips)
        with preserved_state(self.net):
            out = [self.net(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        return check_finite(torch.cat(out).cpu().numpy(), self.spec.name, names)


ModelFactory = Callable[[str | Path | None], FaceModel]
_REGISTRY: dict[str, tuple[ModelSpec, ModelFactory, Callable[[], Path | None]]] = {}


def register_model(
    spec: ModelSpec, default_weights: Callable[[], Path | None]
) -> Callable[[ModelFactory], ModelFactory]:
    """Register a factory ``(weights_path | None) -> FaceModel`` under ``spec.name``."""

    def wrap(factory: ModelFactory) -> ModelFactory:
        if spec.name in _REGISTRY:
            raise ValueError(f"model {spec.name!r} is already registered")
        _REGISTRY[spec.name] = (spec, factory, default_weights)
        return factory

    return wrap


def list_models() -> list[str]:
    """Names of all registered models, default first."""
    return list(_REGISTRY)


def model_spec(name: str) -> ModelSpec:
    return _lookup(name)[0]


def default_weights_path(name: str) -> Path | None:
    """Where the registered default weights are, or None when they are not installed."""
    return _lookup(name)[2]()


def create_model(name: str, weights: str | Path | None = None) -> FaceModel:
    """Build a registered model with its weights (the installed default when ``weights`` is None)."""
    return _lookup(name)[1](weights)


def _lookup(name: str) -> tuple[ModelSpec, ModelFactory, Callable[[], Path | None]]:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(_REGISTRY) or "none"
        raise ModelError(f"unknown model {name!r}; registered models: {known}") from None
