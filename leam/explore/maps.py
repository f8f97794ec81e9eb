"""What the explorer computes from an identity's stored maps (``RunStore.unit_arrays``): pure NumPy.

Per identity and model, over the identity's explained photos:

- the **consensus map**: the mean of the photos' aggregate maps (aligned frame);
- the **population prior**: the mean aggregate map of every *other* identity's explained photos (each photo
  counts once, as the faithfulness phase's ``population_prior``), found as (all photos' sum − the identity's
  sum) / (all photos − the identity's);
- the **distance** of the consensus from the prior: Earth Mover's Distance of the full maps (in pixels of the
  aligned frame, on a ``EMD_GRID`` × ``EMD_GRID`` grid of block sums: 2.5 ms a pair where the study's 30 × 30
  grid takes 85 ms) — the explorer's default order, most unusual first — and the Bhattacharyya coefficient;
  EMD says how far the person's attention moved, where BC of full maps stays near 1 for any two faces;
- the **top-1 % region shares**: for each face class, the share of the consensus map's top 1 % pixels that
  fall in it, averaged over the identity's photos, each read with its own label map (the consensus is a map of
  the aligned frame that no one photo's labels describe; the person's own faces, aligned alike, each say which
  region a pixel is). Computed as the mean over those pixels of the class's frequency over the photos, which
  is the same number. The prior's shares are read the same way, on the same faces, so the two differ only by
  the map.

Sums of float16 maps in float64 are exact (every float16 is a multiple of 2⁻²⁴, and the sums stay far below
2²⁹), so the population's sums, and every prior, do not depend on the order photos are added in.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass

import numpy as np

from leam.face.labels import CLASSES, UNLABELLED, UNLABELLED_NAME
from leam.metrics.regions import top_mask
from leam.metrics.similarity import bhattacharyya, emd

EMD_GRID = 15
POT_NO_TORCH = "POT_BACKEND_DISABLE_PYTORCH"  # POT's switch for its torch backend
TOP_PERCENT = 1.0  # region shares (and the variability within a person) of the top 1 % pixels


@dataclass(frozen=True)
class Sums:
    """Explained photos under one model (an identity's, or a whole population's): how many, and the sums of
    their aggregate maps (H, W) and of their chips (H, W, 3; None where not needed), in float64."""

    count: int
    maps: np.ndarray
    chips: np.ndarray | None = None


@dataclass(frozen=True)
class Person:
    """The numbers the explorer shows of one identity under one model (``person``)."""

    photos: int
    shares: dict[str, tuple[float, float]]  # class -> (consensus share, prior share) of the top 1 % pixels
    emd: float  # of consensus and prior, pixels; NaN without a prior
    bc: float  # Bhattacharyya coefficient of the full maps; NaN without a prior


def sums(arrays, explained: tuple[int, ...]) -> Sums:
    """``Sums`` of the photos ``explained`` (their ``array_index``) in an identity unit's arrays."""
    maps = sum(arrays[f"{i}/aggregate"].astype(np.float64) for i in explained)
    chips = sum(arrays[f"{i}/chip"].astype(np.float64) for i in explained)
    return Sums(len(explained), maps, chips)


def prior(total: Sums, own: Sums) -> np.ndarray | None:
    """The mean map of the photos in ``total`` (a model's whole population) that are not ``own``'s; None when
    ``own`` is all of them."""
    others = total.count - own.count
    return (total.maps - own.maps) / others if others > 0 else None


def label_frequency(labels: np.ndarray) -> dict[str, np.ndarray]:
    """{class: (H, W) fraction of the photos whose label map puts the pixel in that class} of a (N, H, W) stack
    of label maps (``leam.face.labels`` values, 255: unlabelled); classes no photo has are left out."""
    return {(UNLABELLED_NAME if v == UNLABELLED else CLASSES[v]): (labels == v).mean(axis=0)
            for v in np.unique(labels)}


def top_shares(values: np.ndarray, frequency: dict[str, np.ndarray], percent: float = TOP_PERCENT) -> dict[str, float]:
    """{class: mean over photos of the share of ``values``' top ``percent`` % pixels in the class}, the photos'
    label maps given as ``label_frequency``."""
    mask = top_mask(values, percent)
    return {c: float(f[mask].mean()) for c, f in frequency.items()}


def consensus_and_prior(arrays, explained: tuple[int, ...],
                        total: Sums | None) -> tuple[Sums, np.ndarray, np.ndarray | None]:
    """(the identity's ``Sums``, its consensus map, its population prior or None) from its unit's arrays and
    the model's population ``total`` (``Sums`` over every identity; None: no prior)."""
    own = sums(arrays, explained)
    return own, own.maps / own.count, None if total is None else prior(total, own)


def person(arrays, explained: tuple[int, ...], consensus: np.ndarray, prior_map: np.ndarray | None) -> Person:
    """The region shares of the consensus and the prior, and their distances, of one identity under one model
    (``consensus_and_prior``)."""
    frequency = label_frequency(np.stack([arrays[f"{i}/labels"] for i in explained]))
    mine = top_shares(consensus, frequency)
    theirs = top_shares(prior_map, frequency) if prior_map is not None else {}
    shares = {c: (v, theirs.get(c, math.nan)) for c, v in sorted(mine.items(), key=lambda kv: -kv[1])}
    return Person(len(explained), shares, *distances(consensus, prior_map))


def distances(consensus: np.ndarray, prior_map: np.ndarray | None) -> tuple[float, float]:
    """(EMD in pixels on the ``EMD_GRID`` grid, Bhattacharyya coefficient) of two maps; NaNs when there is no
    prior or either map is zero everywhere."""
    if prior_map is None:
        return math.nan, math.nan
    import_pot()
    try:
        return emd(consensus, prior_map, grid=min(EMD_GRID, *consensus.shape)), bhattacharyya(consensus, prior_map)
    except ValueError:  # an all-zero map: no distribution
        return math.nan, math.nan


def normalised(values: np.ndarray) -> np.ndarray:
    """``values`` scaled to [0, 1] by their own minimum and maximum (zeros for a constant map)."""
    lo, hi = float(values.min()), float(values.max())
    return (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values, dtype=np.float64)


def difference(consensus: np.ndarray, prior_map: np.ndarray) -> np.ndarray:
    """The consensus minus the prior, each as a distribution (summed to 1), scaled to [-1, 1] by the largest
    absolute difference: > 0 where the person's maps weigh a pixel more than the population's."""
    a, b = np.clip(consensus, 0, None), np.clip(prior_map, 0, None)
    d = a / max(a.sum(), 1e-300) - b / max(b.sum(), 1e-300)
    top = float(np.abs(d).max())
    return d / top if top > 0 else d


def import_pot() -> None:
    """Import POT (``ot``, which ``leam.metrics.similarity.emd`` uses) without its PyTorch backend: POT imports
    torch when it is installed (1.3 s and a few hundred MB per process), and the explorer needs NumPy's only.
    The environment is restored; a process that imported POT before keeps it as it was."""
    if "ot" in sys.modules:
        return
    before = os.environ.get(POT_NO_TORCH)
    os.environ[POT_NO_TORCH] = "1"
    try:
        import ot  # noqa: F401
    finally:
        if before is None:
            del os.environ[POT_NO_TORCH]
        else:
            os.environ[POT_NO_TORCH] = before
