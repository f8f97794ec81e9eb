"""The LEAM engine: LayerCAM for embedding networks, all layers from one forward and one backward.

For images x and reference embeddings e, with A^k the output of channel k of a layer:

    L = 1 - cos(f(x), e)            (direction="loss"; "similarity" uses cos(f(x), e) instead)
    g^k = dL / dA^k
    map = ReLU(sum_k ReLU(g^k) * A^k), bilinearly upsampled to the input size
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from leam._torch_state import preserved_state
from leam.errors import DegenerateReferenceError, LayerError
from leam.maps.aggregate import aggregate_maps, minmax_normalize
from leam.maps.hooks import capture_activations, resolve_layers

DIRECTIONS = ("loss", "similarity")
SELF_REFERENCE_COS = 1.0 - 1e-6


@dataclass
class LeamResult:
    """Per-layer maps for a batch: ``raw`` and ``maps`` (min-max normalised) are {layer: (N, H, W)}."""

    raw: dict[str, torch.Tensor]
    maps: dict[str, torch.Tensor]
    cosine: torch.Tensor  # (N,) cosine similarity of each image to its reference
    embeddings: torch.Tensor  # (N, D)
    direction: str

    @property
    def layers(self) -> list[str]:
        return list(self.maps)

    def aggregate(self, method: str = "mean") -> torch.Tensor:
        """(N, H, W) in [0, 1]: mean (or max) over layers of the normalised maps."""
        return aggregate_maps(self.maps, method)


def layer_map(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """ReLU(sum_k ReLU(g^k) * A^k) for (N, C, h, w) activations and gradients → (N, h, w)."""
    return F.relu((F.relu(gradient) * activation).sum(dim=1))


def objective(embeddings: torch.Tensor, reference: torch.Tensor, direction: str) -> torch.Tensor:
    """Per-image objective whose gradient LEAM weights: 1 - cos ("loss") or cos ("similarity")."""
    cos = F.cosine_similarity(embeddings, reference, dim=1)
    return 1.0 - cos if direction == "loss" else cos


class LEAM:
    """Explain ``net`` at ``layers``; ``net`` maps (N, 3, H, W) images to (N, D) embeddings.

    >>> engine = LEAM(model.net, ["stage1.block0", "stage3.block2"])      # doctest: +SKIP
    >>> result = engine(images, reference_embeddings)                     # doctest: +SKIP
    >>> result.maps["stage1.block0"].shape                                # (N, H, W)  # doctest: +SKIP
    """

    def __init__(self, net: nn.Module, layers: Sequence[str], direction: str = "loss") -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"expected direction in {DIRECTIONS}, got {direction!r}")
        if not layers:
            raise ValueError("expected at least one layer")
        resolve_layers(net, layers)  # fail early on unknown names
        self.net = net
        self.layers = list(layers)
        self.direction = direction

    def __call__(self, images: torch.Tensor, reference: torch.Tensor, allow_self_reference: bool = False) -> LeamResult:
        """Maps for ``images`` (N, 3, H, W) against ``reference`` (N, D) or (D,) embeddings.

        Both are moved to the net's device (its parameters'), where the results stay.
        Raises ``DegenerateReferenceError`` when an image is its own reference (cosine 1: the
        gradient is zero and the map would be blank), unless ``allow_self_reference``.
        """
        if images.dim() != 4:
            raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
        device = next((p.device for p in self.net.parameters()), images.device)
        images = images.to(device)
        reference = reference.detach().to(device, images.dtype)
        if reference.dim() == 1:
            reference = reference.expand(images.shape[0], -1)
        if reference.shape[0] != images.shape[0]:
            raise ValueError(f"expected {images.shape[0]} references, got {reference.shape[0]}")

        with preserved_state(self.net, eval_mode=True, freeze=True):
            x = images.detach().clone().requires_grad_(True)
            with torch.enable_grad(), capture_activations(self.net, self.layers) as acts:
                emb = self.net(x)
                for name in self.layers:
                    if name not in acts:
                        raise LayerError(f"layer {name!r} did not run in the forward pass")
                    if acts[name].dim() != 4:
                        raise LayerError(
                            f"layer {name!r} gives {tuple(acts[name].shape)}, expected a feature map "
                            "(N, C, h, w); `leam layers` lists the layers that do"
                        )
                obj = objective(emb, reference, self.direction)
                grads = torch.autograd.grad(obj.sum(), [acts[n] for n in self.layers])
        size = images.shape[-2:]
        raw = {}
        for name, grad in zip(self.layers, grads):
            cam = layer_map(acts[name].detach(), grad).unsqueeze(1)
            raw[name] = F.interpolate(cam, size=size, mode="bilinear", align_corners=False).squeeze(1)

        cosine = F.cosine_similarity(emb.detach(), reference, dim=1)
        selfref = (cosine >= SELF_REFERENCE_COS).nonzero().flatten().tolist()
        if selfref and not allow_self_reference:
            raise DegenerateReferenceError(
                f"image(s) {selfref} in the batch are their own reference (cosine similarity 1): "
                "the gradient is zero and the map would be blank; use another image of the person"
            )
        maps = {name: minmax_normalize(m) for name, m in raw.items()}
        return LeamResult(raw, maps, cosine, emb.detach(), self.direction)
