"""How alike two maps are: Bhattacharyya coefficient and Earth Mover's Distance (POT).

Both treat a map as a distribution over pixels: non-negative values normalised to sum 1, optionally
kept only at the map's top-p % pixels (zero elsewhere), which is what makes maps comparable at all:
full LEAM maps overlap almost everywhere.
"""

from __future__ import annotations

import math

import numpy as np

from leam.metrics.regions import top_mask

EMD_GRID = 30  # exact EMD on a 30 x 30 grid of block sums (5 x 5 pixels for a 150-px chip)


def as_distribution(values: np.ndarray, top_percent: float | None = None) -> np.ndarray:
    """A 2-D map as a distribution: negatives clipped to 0, optionally only its top-p % pixels kept,
    normalised to sum 1. An all-zero map raises ``ValueError`` (it is no distribution)."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0.0, None)
    if v.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {v.shape}")
    if top_percent is not None:
        v = np.where(top_mask(v, top_percent), v, 0.0)
    total = v.sum()
    if not total > 0:
        raise ValueError("the map is zero everywhere (after thresholding): no distribution to compare")
    return v / total


def bhattacharyya(a: np.ndarray, b: np.ndarray, top_percent: float | None = None) -> float:
    """Bhattacharyya coefficient sum(sqrt(p * q)) in [0, 1] of two maps of the same shape."""
    if np.shape(a) != np.shape(b):
        raise ValueError(f"maps differ in shape: {np.shape(a)} vs {np.shape(b)}")
    p, q = as_distribution(a, top_percent), as_distribution(b, top_percent)
    return float(min(1.0, np.sqrt(p * q).sum()))


def block_sums(p: np.ndarray, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum a (H, W) distribution into ``grid`` x ``grid`` blocks (mass kept exactly).

    Returns the flat block masses and the (x, y) centre of each block in the map's pixel coordinates.
    """
    h, w = p.shape
    if not 1 <= grid <= min(h, w):
        raise ValueError(f"grid must be in [1, {min(h, w)}], got {grid}")
    rows = np.linspace(0, h, grid + 1).round().astype(int)
    cols = np.linspace(0, w, grid + 1).round().astype(int)
    sums = np.add.reduceat(np.add.reduceat(p, rows[:-1], axis=0), cols[:-1], axis=1)
    cy = (rows[:-1] + rows[1:] - 1) / 2.0
    cx = (cols[:-1] + cols[1:] - 1) / 2.0
    xx, yy = np.meshgrid(cx, cy)
    return sums.ravel(), np.stack([xx.ravel(), yy.ravel()], axis=1)


def emd(
    a: np.ndarray,
    b: np.ndarray,
    top_percent: float | None = None,
    grid: int | None = EMD_GRID,
    method: str = "exact",
    reg: float = 0.02,
) -> float:
    """Earth Mover's Distance between two maps, in pixels of their frame (Euclidean ground distance).

    The maps are summed into ``grid`` x ``grid`` blocks (``None``: full resolution) whose centres carry
    the mass. ``method="exact"`` solves the transport problem (``ot.emd2``); ``"sinkhorn"`` uses
    entropic regularisation ``reg`` x the largest distance (``ot.sinkhorn2``, log domain), for larger grids.
    """
    import ot

    if np.shape(a) != np.shape(b):
        raise ValueError(f"maps differ in shape: {np.shape(a)} vs {np.shape(b)}")
    p, q = as_distribution(a, top_percent), as_distribution(b, top_percent)
    n = grid or min(p.shape)
    if grid is None and p.shape[0] != p.shape[1]:
        raise ValueError("full-resolution EMD needs a square map; give a grid")
    pa, centres = block_sums(p, n)
    qa, _ = block_sums(q, n)
    keep = (pa > 0) | (qa > 0)  # empty blocks carry nothing: drop them from the problem
    pa, qa, centres = pa[keep], qa[keep], centres[keep]
    cost = ot.dist(centres, centres, metric="euclidean")
    if method == "exact":
        value = ot.emd2(pa, qa, cost, numItermax=10_000_000)
    elif method == "sinkhorn":
        value = ot.sinkhorn2(pa, qa, cost, reg * cost.max(), method="sinkhorn_log", numItermax=5000)
    else:
        raise ValueError(f"expected method 'exact' or 'sinkhorn', got {method!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ArithmeticError("optimal transport did not converge")
    return value
