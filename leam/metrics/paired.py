"""Paired comparisons of two measures on the same units (e.g. the deletion AUC of two rankings on the same
photos): the differences' mean and median, a seeded percentile-bootstrap 95 % CI of the mean difference,
the Wilcoxon signed-rank test, the matched-pairs rank-biserial correlation, and how often a < b; and Holm's
correction of p-values for the number of tests. numpy and scipy only.

>>> r = paired_comparison([0.1, 0.2, 0.3, 0.4], [0.3, 0.3, 0.6, 0.5])
>>> r["n"], round(r["mean_diff"], 3), r["rank_biserial"], r["frac_a_below_b"]
(4, -0.175, -1.0, 1.0)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata, wilcoxon

CONFIDENCE = 0.95
_BOOT_CHUNK = 2**21  # resampled values held at once


def paired_comparison(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    rng: np.random.Generator | None = None,
    n_boot: int = 2000,
    alternative: str = "two-sided",
) -> dict:
    """Compare paired samples ``a`` and ``b`` (same length; pairs where either is not finite are dropped).

    Returns {"n", "mean_diff", "median_diff", "ci_low", "ci_high", "p_wilcoxon", "rank_biserial",
    "frac_a_below_b"}, differences being a − b:

    * ``ci_low``, ``ci_high``: the 2.5th and 97.5th percentiles of the mean difference over ``n_boot`` resamples
      of the pairs (``rng``, default seed 0); NaN for n < 2;
    * ``p_wilcoxon``: ``scipy.stats.wilcoxon`` of the differences (zero differences dropped; ``alternative``
      as scipy's: "less" tests a < b); NaN for n < 2 or when every difference is zero;
    * ``rank_biserial``: (sum of the ranks of |d| over positive d − that over negative d) / the sum of all
      ranks, zero differences dropped (Kerby 2014): +1 when every pair has a > b, −1 when a < b; NaN when
      every difference is zero;
    * ``frac_a_below_b``: the share of pairs with a < b (ties count as not below).
    """
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"expected paired samples of the same length, got {a.size} and {b.size}")
    if n_boot < 1:
        raise ValueError(f"expected n_boot >= 1, got {n_boot}")
    if alternative not in ("two-sided", "less", "greater"):
        raise ValueError(f"expected alternative 'two-sided', 'less' or 'greater', got {alternative!r}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    d = a - b
    n = len(d)
    nan = float("nan")
    low, high = bootstrap_mean_ci(d, rng or np.random.default_rng(0), n_boot) if n >= 2 else (nan, nan)
    return {
        "n": n,
        "mean_diff": float(d.mean()) if n else nan,
        "median_diff": float(np.median(d)) if n else nan,
        "ci_low": low,
        "ci_high": high,
        "p_wilcoxon": _wilcoxon_p(d, alternative),
        "rank_biserial": rank_biserial(d),
        "frac_a_below_b": float((a < b).mean()) if n else nan,
    }


def bootstrap_mean_ci(
    d: np.ndarray, rng: np.random.Generator, n_boot: int = 2000, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``d``: resample i draws ``rng.integers(0, n, n)`` (in blocks of
    rows, the same stream as one draw per resample), then the (1 ± confidence) / 2 percentiles of the means."""
    d = np.asarray(d, np.float64)
    n = len(d)
    rows = max(1, _BOOT_CHUNK // max(n, 1))
    means = np.concatenate([d[rng.integers(0, n, size=(min(rows, n_boot - i), n))].mean(1)
                            for i in range(0, n_boot, rows)])
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def rank_biserial(d: np.ndarray) -> float:
    """Matched-pairs rank-biserial correlation of differences ``d`` (zeros dropped; NaN if none is left)."""
    d = np.asarray(d, np.float64)
    d = d[d != 0]
    if not len(d):
        return float("nan")
    ranks = rankdata(np.abs(d))
    return float((ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum())


def _wilcoxon_p(d: np.ndarray, alternative: str) -> float:
    if len(d) < 2 or not (d != 0).any():
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "exact p-value ... switching to normal approximation"
        return float(wilcoxon(d, alternative=alternative).pvalue)


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error): sorted ascending, the i-th (from 0) of m becomes
    max over j ≤ i of (m − j) p_(j), capped at 1. NaN p-values (no test) stay NaN and do not count in m."""
    p = np.asarray(p_values, np.float64).ravel()
    out = np.full(p.shape, np.nan)
    tested = np.flatnonzero(np.isfinite(p))
    if not len(tested):
        return out
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return out
