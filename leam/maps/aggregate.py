"""Normalising and aggregating maps (pure functions on tensors)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from leam.errors import UsageError

AGGREGATIONS = ("mean", "max", "early")
# The map ``explain``, ``regions``, ``study`` and ``demo`` show unless told otherwise (with ``DEFAULT_DIRECTION``):
# the early layers' mean in the similarity objective, whose top pixels lowered the cosine more than the reference
# study's 9-layer mean (``loss``) did, for every model under every fill on all of the shared LFW (README,
# "Faithfulness"). The engine's own defaults (``aggregate_maps``, ``LEAM``) stay the method as defined: "mean", "loss".
DEFAULT_AGGREGATION = "early"
EARLY_LAYERS = 3  # "early": the mean of the first three layers (in the order given: the model's, shallow first)


def minmax_normalize(maps: torch.Tensor) -> torch.Tensor:
    """Scale each map of (N, H, W) to [0, 1]; a constant map becomes all zeros."""
    flat = maps.flatten(1)
    lo = flat.min(dim=1).values.view(-1, 1, 1)
    span = (flat.max(dim=1).values.view(-1, 1, 1) - lo)
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (maps - lo) / safe, torch.zeros_like(maps))


def aggregate_maps(maps: Mapping[str, torch.Tensor], method: str = "mean") -> torch.Tensor:
    """Combine normalised per-layer maps {layer: (N, H, W)} into one (N, H, W) map in [0, 1].

    "mean": the mean over layers; "max": LayerCAM's element-wise maximum; "early": the mean over the first
    ``EARLY_LAYERS`` layers (all of them when there are fewer), whose own maps matter most in occlusion.
    """
    if method not in AGGREGATIONS:
        raise UsageError(f"expected aggregation in {AGGREGATIONS}, got {method!r}")
    if not maps:
        raise UsageError("no maps to aggregate")
    values = list(maps.values())
    if method == "early":
        values = values[:EARLY_LAYERS]
    stacked = torch.stack(values)
    return stacked.max(0).values if method == "max" else stacked.mean(0)
