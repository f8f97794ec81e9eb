"""What sets a person apart: the *specific map*, where a model looks for this person more than for people in
general (numpy only; the study, the explorer and ``leam explain --person`` compute it here).

    consensus = normalised(mean of the person's maps)
    prior     = normalised(mean of everyone else's maps)          (the population prior)
    specific  = normalised(max(consensus − prior, 0))

each ``normalised`` a min-max scaling to [0, 1] (a constant map → zeros, as ``leam.maps.minmax_normalize``).
A specific map of zeros says the person's consensus lies nowhere above the prior.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def normalised(values: np.ndarray) -> np.ndarray:
    """``values`` min-max scaled to [0, 1] (float64); a constant (or empty) map becomes zeros."""
    values = np.asarray(values, np.float64)
    if not values.size:
        return values
    lo, hi = float(values.min()), float(values.max())
    return (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)


def consensus_map(maps: Sequence[np.ndarray]) -> np.ndarray:
    """The normalised mean of one person's maps (H, W)."""
    if not len(maps):
        raise ValueError("expected at least one map")
    return normalised(np.mean(np.stack([np.asarray(m, np.float64) for m in maps]), axis=0))


def prior_map(total: np.ndarray, count: int, own_total: np.ndarray | None = None, own_count: int = 0) -> np.ndarray:
    """The population prior: the normalised mean of the maps summed in ``total`` over ``count`` photos, less
    the person's own (``own_total`` over ``own_count``) when they are part of it."""
    rest = count - own_count
    if rest < 1:
        raise ValueError(f"expected maps of other people: {count} in all, {own_count} the person's own")
    total = np.asarray(total, np.float64)
    return normalised((total - own_total) / rest if own_total is not None else total / rest)


def specific_map(consensus: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Where ``consensus`` exceeds ``prior`` (both normalised first), normalised; (H, W) float64 in [0, 1]."""
    consensus, prior = np.asarray(consensus), np.asarray(prior)
    if consensus.shape != prior.shape:
        raise ValueError(f"expected maps of one shape, got {consensus.shape} and {prior.shape}")
    return normalised(np.clip(normalised(consensus) - normalised(prior), 0.0, None))
