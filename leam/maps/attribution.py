"""The attribution engine: every gradient CAM method at every layer, and input-gradient saliency, from one
forward and one backward.

For images x and reference embeddings e, with A^k the output of channel k of a layer:

    objective = 1 - cos(f(x), e)     (direction="loss"; "similarity" uses cos(f(x), e) instead)
    g^k = d objective / dA^k          one ``torch.autograd.grad`` for all layers (and x, for saliency)
    map = CAM_METHODS[method](A, g), bilinearly upsampled to the input size
    saliency = max over colour channels of |d objective / dx|

``LEAM`` (``leam.maps.leam``) is this engine with the one method "leam".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from leam._finite import check_finite
from leam._torch_state import preserved_state
from leam.errors import DegenerateReferenceError, LayerError, UsageError
from leam.maps.aggregate import aggregate_maps, minmax_normalize
from leam.maps.hooks import capture_activations, resolve_layers
from leam.maps.methods import CAM_METHODS

DIRECTIONS = ("loss", "similarity")
DEFAULT_DIRECTION = "similarity"  # of explain, regions, study, demo (see ``aggregate.DEFAULT_AGGREGATION``)
SELF_REFERENCE_COS = 1.0 - 1e-6


def objective(embeddings: torch.Tensor, reference: torch.Tensor, direction: str) -> torch.Tensor:
    """Per-image objective whose gradient the maps weight: 1 - cos ("loss") or cos ("similarity")."""
    cos = F.cosine_similarity(embeddings, reference, dim=1)
    return 1.0 - cos if direction == "loss" else cos


@dataclass
class AttributionResult:
    """Maps for a batch. ``raw`` and ``maps`` (min-max normalised per image) are {method: {layer: (N, H, W)}};
    ``saliency`` is the normalised (N, H, W) input-gradient saliency, or None when not asked for."""

    raw: dict[str, dict[str, torch.Tensor]]
    maps: dict[str, dict[str, torch.Tensor]]
    saliency: torch.Tensor | None
    cosine: torch.Tensor  # (N,) cosine similarity of each image to its reference
    embeddings: torch.Tensor  # (N, D)
    direction: str

    @property
    def methods(self) -> list[str]:
        return list(self.maps)

    @property
    def layers(self) -> list[str]:
        return list(next(iter(self.maps.values()), {}))

    def aggregate(self, method: str, aggregation: str = "mean") -> torch.Tensor:
        """(N, H, W) in [0, 1]: mean (or max) over layers of ``method``'s normalised maps."""
        if method not in self.maps:
            raise UsageError(f"expected method in {tuple(self.maps)}, got {method!r}")
        return aggregate_maps(self.maps[method], aggregation)


def _check_methods(methods: Sequence[str]) -> list[str]:
    unknown = [m for m in methods if m not in CAM_METHODS]
    if unknown:
        raise UsageError(f"expected methods in {tuple(CAM_METHODS)}, got {', '.join(map(repr, unknown))}")
    if len(set(methods)) != len(methods):
        raise UsageError(f"methods repeat: {list(methods)}")
    return list(methods)


def _layer_outputs_checked(acts: dict[str, torch.Tensor], layers: Sequence[str]) -> list[torch.Tensor]:
    """The captured (N, C, h, w) output of each layer; a layer that did not run or is not a map raises."""
    for name in layers:
        if name not in acts:
            raise LayerError(f"layer {name!r} did not run in the forward pass")
        if acts[name].dim() != 4:
            raise LayerError(
                f"layer {name!r} gives {tuple(acts[name].shape)}, expected a feature map "
                "(N, C, h, w); `leam layers` lists the layers that do"
            )
    return [acts[name] for name in layers]


def _check_used(layers: Sequence[str], grads: Sequence[torch.Tensor | None]) -> None:
    """A layer the embedding does not depend on has no gradient: ``LayerError`` naming it."""
    unused = [name for name, g in zip(layers, grads) if g is None]
    if unused:
        raise LayerError(f"the embedding does not depend on {', '.join(map(repr, unused))}: the gradient and "
                         "so the map would be undefined; `leam layers` lists the layers")


class Attribution:
    """Explain ``net`` at ``layers`` with the gradient CAM ``methods`` (keys of ``CAM_METHODS``) and,
    if ``saliency``, input-gradient saliency; ``net`` maps (N, 3, H, W) images to (N, D) embeddings.

    >>> engine = Attribution(model.net, ["stem", "stage3.block2"], methods=("leam", "gradcam"))  # doctest: +SKIP
    >>> result = engine(images, reference_embeddings)                                          # doctest: +SKIP
    >>> result.maps["gradcam"]["stem"].shape                                   # (N, H, W)     # doctest: +SKIP
    """

    def __init__(
        self,
        net: nn.Module,
        layers: Sequence[str],
        direction: str = "loss",
        methods: Sequence[str] = ("leam",),
        saliency: bool = False,
        name: str | None = None,
    ) -> None:
        if direction not in DIRECTIONS:
            raise UsageError(f"expected direction in {DIRECTIONS}, got {direction!r}")
        self.methods = _check_methods(methods)
        if not self.methods and not saliency:
            raise UsageError("expected at least one method or saliency=True")
        if self.methods and not layers:
            raise UsageError("expected at least one layer")
        resolve_layers(net, layers)  # fail early on unknown names
        self.net = net
        self.layers = list(layers)
        self.direction = direction
        self.saliency = saliency
        self.name = name or type(net).__name__  # the model, as errors name it

    def __call__(
        self, images: torch.Tensor, reference: torch.Tensor, allow_self_reference: bool = False,
        names: Sequence[str] | None = None,
    ) -> AttributionResult:
        """Maps for ``images`` (N, 3, H, W) against ``reference`` (N, D) or (D,) embeddings.

        Both are moved to the net's device (its parameters'), where the results stay.
        Raises ``DegenerateReferenceError`` when an image is its own reference (cosine 1: the
        gradient is zero and the map would be blank), unless ``allow_self_reference``, and
        ``NonFiniteError`` naming the image (``names[i]``, else its index) when its embedding, its
        reference or its maps hold NaN or Inf.
        """
        if images.dim() != 4:
            raise UsageError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
        device = next((p.device for p in self.net.parameters()), images.device)
        images = images.to(device)
        reference = reference.detach().to(device, images.dtype)
        if reference.dim() == 1:
            reference = reference.expand(images.shape[0], -1)
        if reference.shape[0] != images.shape[0]:
            raise UsageError(f"expected {images.shape[0]} references, got {reference.shape[0]}")
        layers = self.layers if self.methods else []
        check_finite(reference.cpu().numpy(), self.name, names, what="reference embedding")

        with preserved_state(self.net, eval_mode=True, freeze=True):
            x = images.detach().clone().requires_grad_(True)
            with torch.enable_grad(), capture_activations(self.net, layers) as acts:
                emb = self.net(x)
                check_finite(emb.detach().cpu().numpy(), self.name, names)
                outputs = _layer_outputs_checked(acts, layers)
                obj = objective(emb, reference, self.direction)
                grads = torch.autograd.grad(obj.sum(), outputs + ([x] if self.saliency else []), allow_unused=True)
        _check_used(layers + (["the input image"] if self.saliency else []), grads)

        cosine = F.cosine_similarity(emb.detach(), reference, dim=1)
        selfref = (cosine >= SELF_REFERENCE_COS).nonzero().flatten().tolist()
        if selfref and not allow_self_reference:
            raise DegenerateReferenceError(
                f"image(s) {selfref} in the batch are their own reference (cosine similarity 1): "
                "the gradient is zero and the map would be blank; use another image of the person"
            )
        size = images.shape[-2:]
        raw: dict[str, dict[str, torch.Tensor]] = {method: {} for method in self.methods}
        for name, activation, grad in zip(layers, outputs, grads):
            for method in self.methods:
                cam = CAM_METHODS[method](activation.detach(), grad).unsqueeze(1)
                raw[method][name] = F.interpolate(cam, size=size, mode="bilinear", align_corners=False).squeeze(1)
        for method, by_layer in raw.items():
            for layer, m in by_layer.items():
                check_finite(m.cpu().numpy(), self.name, names, what=f"{method} map at layer {layer!r}")
        if self.saliency:
            check_finite(grads[-1].cpu().numpy(), self.name, names, what="input gradient")
        maps = {method: {name: minmax_normalize(m) for name, m in by_layer.items()} for method, by_layer in raw.items()}
        saliency = minmax_normalize(grads[-1].abs().amax(dim=1)) if self.saliency else None
        return AttributionResult(raw, maps, saliency, cosine, emb.detach(), self.direction)
