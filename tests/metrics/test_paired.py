"""Paired comparisons against scipy, a slow bootstrap loop, and values worked out by hand."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.stats import bootstrap, wilcoxon

from leam.metrics.paired import bootstrap_mean_ci, paired_comparison, rank_biserial


def slow_bootstrap(d: np.ndarray, seed: int, n_boot: int) -> tuple[float, float]:
    """One resample at a time (``rng.integers(0, n, n)``), means by a loop, percentiles by linear
    interpolation between order statistics (numpy's default)."""
    rng = np.random.default_rng(seed)
    n = len(d)
    means = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, size=n)
        means.append(sum(float(d[i]) for i in idx) / n)
    means.sort()

    def percentile(q: float) -> float:
        pos = q / 100 * (n_boot - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, n_boot - 1)
        return means[lo] + (pos - lo) * (means[hi] - means[lo])

    return percentile(2.5), percentile(97.5)


def test_by_hand():
    a = [1, 2, 3, 4, 5]
    b = [3, 3, 6, 3, 5]  # a - b = -2, -1, -3, 1, 0 (integers: |d| ties exactly)
    r = paired_comparison(a, b)
    assert r["n"] == 5
    assert r["mean_diff"] == -1.0
    assert r["median_diff"] == -1.0
    assert r["frac_a_below_b"] == 0.6  # 3 of 5; the tie is not below
    # |d| without the zero: 2, 1, 3, 1 -> ranks 3, 1.5, 4, 1.5; positive 1.5, negative 8.5, total 10
    assert r["rank_biserial"] == pytest.approx(-0.7)
    assert set(r) == {"n", "mean_diff", "median_diff", "ci_low", "ci_high", "p_wilcoxon", "rank_biserial",
                      "frac_a_below_b"}


def test_wilcoxon_matches_scipy():
    rng = np.random.default_rng(0)
    for n in (5, 12, 60, 300):
        a = rng.normal(size=n)
        b = a + rng.normal(0.3, 1.0, size=n)
        b[:2] = a[:2]  # zero differences, dropped by both
        for alt in ("two-sided", "less", "greater"):
            r = paired_comparison(a, b, alternative=alt)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # zeros: scipy switches to the normal approximation
                want = wilcoxon(a, b, alternative=alt).pvalue
            assert r["p_wilcoxon"] == pytest.approx(want, rel=1e-12)


def test_rank_biserial_from_scipys_signed_rank_sum():
    """r = (T+ − T−) / (T+ + T−) with T+ scipy's statistic for alternative="greater"."""
    rng = np.random.default_rng(1)
    for n in (3, 10, 80):
        d = np.round(rng.normal(0.2, 1, size=n), 1)  # rounded: ties among |d|
        d = d[d != 0]
        t_plus = wilcoxon(d, alternative="greater", method="approx").statistic
        total = len(d) * (len(d) + 1) / 2
        assert rank_biserial(d) == pytest.approx((2 * t_plus - total) / total)
    assert rank_biserial(np.array([1.0, 2.0])) == 1.0 and rank_biserial(np.array([-3.0])) == -1.0


@pytest.mark.parametrize(("n", "n_boot"), [(2, 50), (17, 2000), (5000, 1000)])
def test_bootstrap_matches_a_slow_loop(n, n_boot):
    """Also for n = 5000, where the resamples are drawn in blocks of rows."""
    rng = np.random.default_rng(n)
    a, b = rng.normal(size=n), rng.normal(size=n)
    r = paired_comparison(a, b, rng=np.random.default_rng(42), n_boot=n_boot)
    low, high = slow_bootstrap(a - b, 42, n_boot)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((low, high), abs=1e-12)


def test_bootstrap_is_seeded_and_agrees_with_scipy_and_the_normal_ci():
    rng = np.random.default_rng(3)
    d = rng.exponential(size=400) - 0.8
    assert paired_comparison(d, np.zeros(400)) == paired_comparison(d, np.zeros(400))  # default seed 0
    low, high = bootstrap_mean_ci(d, np.random.default_rng(5), n_boot=20000)
    ci = bootstrap((d,), np.mean, n_resamples=20000, method="percentile", random_state=7).confidence_interval
    half = 1.96 * d.std(ddof=1) / math.sqrt(len(d))
    assert low == pytest.approx(ci.low, abs=0.01) and high == pytest.approx(ci.high, abs=0.01)
    assert low == pytest.approx(d.mean() - half, abs=0.01) and high == pytest.approx(d.mean() + half, abs=0.01)


def test_non_finite_pairs_are_dropped():
    a = np.array([1.0, np.nan, 3.0, 4.0, np.inf, 2.0])
    b = np.array([2.0, 1.0, np.nan, 3.5, 1.0, 2.5])
    r = paired_comparison(a, b)
    assert r["n"] == 3 and r["mean_diff"] == pytest.approx((-1 + 0.5 - 0.5) / 3)
    assert r == paired_comparison([1.0, 4.0, 2.0], [2.0, 3.5, 2.5])


def test_degenerate_samples():
    same = paired_comparison([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert same["n"] == 3 and same["mean_diff"] == 0 and same["frac_a_below_b"] == 0
    assert math.isnan(same["p_wilcoxon"]) and math.isnan(same["rank_biserial"])
    assert same["ci_low"] == same["ci_high"] == 0
    one = paired_comparison([1.0], [2.0])
    assert one["n"] == 1 and one["mean_diff"] == -1 and one["rank_biserial"] == -1 and one["frac_a_below_b"] == 1
    assert math.isnan(one["p_wilcoxon"]) and math.isnan(one["ci_low"]) and math.isnan(one["ci_high"])
    none = paired_comparison([np.nan], [1.0])
    assert none["n"] == 0 and all(math.isnan(v) for k, v in none.items() if k != "n")


def test_bad_arguments():
    with pytest.raises(ValueError, match="same length"):
        paired_comparison([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="n_boot"):
        paired_comparison([1.0, 2.0], [1.0, 3.0], n_boot=0)
    with pytest.raises(ValueError, match="alternative"):
        paired_comparison([1.0, 2.0], [1.0, 3.0], alternative="smaller")


def test_the_docstring_example():
    import doctest

    import leam.metrics.paired

    assert doctest.testmod(leam.metrics.paired).failed == 0
