"""LEAM: LayerCAM for embedding networks, all layers from one forward and one backward.

For images x and reference embeddings e, with A^k the output of channel k of a layer:

    L = 1 - cos(f(x), e)            (direction="loss"; "similarity" uses cos(f(x), e) instead)
    g^k = dL / dA^k
    map = ReLU(sum_k ReLU(g^k) * A^k), bilinearly upsampled to the input size

The engine is ``leam.maps.attribution.Attribution`` with the one method "leam"; this module keeps LEAM's
own result type and names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from leam.maps.aggregate import aggregate_maps
from leam.maps.attribution import DIRECTIONS, SELF_REFERENCE_COS, Attribution, objective
from leam.maps.methods import leam_map as layer_map

__all__ = ["DIRECTIONS", "LEAM", "SELF_REFERENCE_COS", "LeamResult", "layer_map", "objective"]


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
        """(N, H, W) in [0, 1]: the normalised maps combined over layers (``aggregate_maps``)."""
        return aggregate_maps(self.maps, method)


class LEAM:
    """Explain ``net`` at ``layers``; ``net`` maps (N, 3, H, W) images to (N, D) embeddings.

    >>> engine = LEAM(model.net, ["stage1.block0", "stage3.block2"])      # doctest: +SKIP
    >>> result = engine(images, reference_embeddings)                     # doctest: +SKIP
    >>> result.maps["stage1.block0"].shape                                # (N, H, W)  # doctest: +SKIP
    """

    def __init__(self, net: nn.Module, layers: Sequence[str], direction: str = "loss", name: str | None = None) -> None:
        Attribution(net, layers, direction, methods=("leam",))  # the engine's checks, at construction
        self.net = net
        self.layers = list(layers)
        self.direction = direction
        self.name = name

    def __call__(self, images: torch.Tensor, reference: torch.Tensor, allow_self_reference: bool = False,
                 names: Sequence[str] | None = None) -> LeamResult:
        """Maps for ``images`` (N, 3, H, W) against ``reference`` (N, D) or (D,) embeddings.

        Both are moved to the net's device (its parameters'), where the results stay.
        Raises ``DegenerateReferenceError`` when an image is its own reference (cosine 1: the
        gradient is zero and the map would be blank), unless ``allow_self_reference``, and ``NonFiniteError``
        naming the image (``names[i]``, else its index) whose embedding or maps hold NaN or Inf.
        """
        engine = Attribution(self.net, self.layers, self.direction, methods=("leam",), name=self.name)
        result = engine(images, reference, allow_self_reference, names)
        return LeamResult(result.raw["leam"], result.maps["leam"], result.cosine, result.embeddings, result.direction)
