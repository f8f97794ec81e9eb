"""Which face regions a map picks out: shares of its top-p % pixels and its mass per class."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from leam.errors import LeamError
from leam.face.labels import LabelMap

DEFAULT_THRESHOLDS: tuple[float, ...] = (1, 5, 10, 25, 50, 100)
TABLE_COLUMNS = ["layer", "class", "measure", "threshold", "value"]


def check_thresholds(thresholds: Iterable[float], name: str = "thresholds") -> tuple[float, ...]:
    """The top-p % thresholds as floats, in the order given, once checked: one or more, each a number in
    (0, 100], none twice; else ``LeamError`` naming ``name`` (e.g. the command's option).

    >>> check_thresholds([1, 5, 100])
    (1.0, 5.0, 100.0)
    """
    try:
        values = tuple(float(p) for p in thresholds)
    except (TypeError, ValueError):
        raise LeamError(f"{name}: expected numbers (percentages in (0, 100]), got {list(thresholds)!r}") from None
    bad = [f"{p:g}" for p in values if not 0 < p <= 100]  # NaN fails too
    twice = sorted({p for p in values if values.count(p) > 1})
    if not values:
        raise LeamError(f"{name}: expected one or more top-p percentages in (0, 100]")
    if bad:
        raise LeamError(f"{name}: expected top-p percentages in (0, 100] (e.g. "
                        f"{' '.join(f'{p:g}' for p in DEFAULT_THRESHOLDS)}), got {', '.join(bad)}")
    if twice:
        raise LeamError(f"{name}: {', '.join(f'{p:g}' for p in twice)} given twice; give each percentage once")
    return values


def top_count(n_pixels: int, percent: float) -> int:
    """How many pixels make the top ``percent`` % of ``n_pixels``: ceil, at least 1."""
    if not 0 < percent <= 100:
        raise ValueError(f"expected a threshold in (0, 100] percent, got {percent}")
    return max(1, math.ceil(n_pixels * percent / 100.0 - 1e-9))


def pixel_ranking(values: np.ndarray) -> np.ndarray:
    """Flat pixel indices from most to least activated; ties in raster order (the earlier pixel first)."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    if not np.isfinite(flat).all():
        raise ValueError("map holds NaN or infinite values")
    return np.argsort(-flat, kind="stable")


def top_mask(values: np.ndarray, percent: float, ranking: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of the top ``percent`` % most activated pixels of a 2-D map.

    Ties are broken deterministically by raster order (the earlier pixel wins). ``ranking`` (from
    ``pixel_ranking``) saves sorting again for several thresholds; without it the mask is found by
    selection (``np.partition``, linear time), which gives the same pixels.
    """
    if ranking is not None:
        mask = np.zeros(ranking.size, dtype=bool)
        mask[ranking[: top_count(ranking.size, percent)]] = True
        return mask.reshape(np.shape(values))
    flat = np.asarray(values, dtype=np.float64).ravel()
    if not np.isfinite(flat).all():
        raise ValueError("map holds NaN or infinite values")
    k = top_count(flat.size, percent)
    kth = np.partition(flat, flat.size - k)[flat.size - k]  # the k-th largest value
    mask = flat > kth
    ties = np.flatnonzero(flat == kth)[: k - int(mask.sum())]  # the earliest of the pixels equal to it
    mask[ties] = True
    return mask.reshape(np.shape(values))


def region_shares(values: np.ndarray, labels: LabelMap, thresholds: Iterable[float]) -> dict[float, dict[str, float]]:
    """{threshold: {class: share of the top-p % pixels falling in class}} over the parser's classes."""
    _check_shapes(values, labels)
    masks = {c: labels.mask(c) for c in labels.categories}
    ranking = pixel_ranking(values)
    out = {}
    for p in thresholds:
        top = top_mask(values, p, ranking)
        n = top.sum()
        out[float(p)] = {c: float((top & m).sum() / n) for c, m in masks.items()}
    return out


def region_mass(values: np.ndarray, labels: LabelMap) -> dict[str, float]:
    """{class: sum of the map inside the class / sum of the map}; NaN for an all-zero map."""
    _check_shapes(values, labels)
    v = np.asarray(values, dtype=np.float64)
    total = v.sum()
    return {c: float(v[labels.mask(c)].sum() / total) if total > 0 else math.nan for c in labels.categories}


def region_table(
    maps: Mapping[str, np.ndarray], labels: LabelMap, thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> pd.DataFrame:
    """Long table (layer, class, measure, threshold, value) for every map: "share" at each
    threshold (percent) and "mass" (threshold NaN)."""
    rows = []
    for layer, values in maps.items():
        for p, shares in region_shares(values, labels, thresholds).items():
            rows += [(layer, c, "share", p, s) for c, s in shares.items()]
        rows += [(layer, c, "mass", math.nan, m) for c, m in region_mass(values, labels).items()]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def identity_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per identity, layer, class, measure and threshold: mean over images, std, and the coefficient
    of variation (sample std / mean; NaN when the mean is 0). ``table`` needs ``identity`` and ``image``
    columns beside ``TABLE_COLUMNS``."""
    keys = ["identity", "layer", "class", "measure", "threshold"]
    g = table.groupby(keys, dropna=False, sort=True)["value"]
    out = g.agg(images="count", mean="mean", std="std")  # sample std (ddof 1): NaN for a single image
    out["cv"] = np.where(out["mean"] > 0, out["std"] / out["mean"].where(out["mean"] > 0), math.nan)
    return out.reset_index()


def share_pivot(table: pd.DataFrame, layer: str = "aggregate") -> pd.DataFrame:
    """Classes × thresholds of the "share" measure for one layer (plus a "mass" column)."""
    t = table[table["layer"] == layer]
    shares = t[t["measure"] == "share"].pivot_table(index="class", columns="threshold", values="value", sort=False)
    shares.columns = [f"top {c:g}%" for c in shares.columns]
    mass = t[t["measure"] == "mass"].set_index("class")["value"].rename("mass")
    return shares.join(mass)


def _check_shapes(values: np.ndarray, labels: LabelMap) -> None:
    if np.shape(values) != labels.labels.shape:
        raise ValueError(f"map shape {np.shape(values)} differs from label map shape {labels.labels.shape}")
