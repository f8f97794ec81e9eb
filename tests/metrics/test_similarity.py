"""Bhattacharyya coefficient and EMD against obvious implementations, scipy and a linear program."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linprog
from scipy.stats import wasserstein_distance

from leam.metrics.similarity import as_distribution, bhattacharyya, block_sums, emd


def slow_bc(a: np.ndarray, b: np.ndarray) -> float:
    sa, sb = float(a.sum()), float(b.sum())
    return sum((x / sa * y / sb) ** 0.5 for x, y in zip(a.ravel().tolist(), b.ravel().tolist()))


def lp_emd(a: np.ndarray, b: np.ndarray) -> float:
    """Transport as a plain linear program over full-resolution pixels (scipy's HiGHS)."""
    p, q = a.ravel() / a.sum(), b.ravel() / b.sum()
    h, w = a.shape
    yy, xx = np.mgrid[0:h, 0:w]
    pts = np.stack([xx.ravel(), yy.ravel()], 1).astype(float)
    cost = np.linalg.norm(pts[:, None] - pts[None], axis=2)
    n = p.size
    rows = np.zeros((2 * n, n * n))
    for i in range(n):
        rows[i, i * n : (i + 1) * n] = 1  # mass leaving source i
        rows[n + i, i::n] = 1  # mass reaching target i
    res = linprog(cost.ravel(), A_eq=rows, b_eq=np.concatenate([p, q]), bounds=(0, None), method="highs")
    assert res.success
    return float(res.fun)


@pytest.mark.parametrize("seed", range(5))
def test_bc_matches_the_slow_sum(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.random((20, 20)) ** 4, rng.random((20, 20)) ** 4
    assert bhattacharyya(a, b) == pytest.approx(slow_bc(a, b), abs=1e-12)
    top_a, top_b = as_distribution(a, 10), as_distribution(b, 10)
    assert bhattacharyya(a, b, top_percent=10) == pytest.approx(slow_bc(top_a, top_b), abs=1e-12)
    assert (top_a > 0).sum() == 40 and top_a.sum() == pytest.approx(1.0)


def test_bc_extremes() -> None:
    a = np.zeros((10, 10))
    a[:5] = 1
    assert bhattacharyya(a, 3 * a) == pytest.approx(1.0)  # scale does not matter
    assert bhattacharyya(a, 1 - a) == 0.0  # disjoint supports
    with pytest.raises(ValueError, match="zero everywhere"):
        bhattacharyya(np.zeros((4, 4)), np.ones((4, 4)))
    with pytest.raises(ValueError, match="differ in shape"):
        bhattacharyya(np.ones((4, 4)), np.ones((4, 5)))


@pytest.mark.parametrize("seed", range(4))
def test_emd_matches_a_linear_program(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.random((5, 5)) ** 3, rng.random((5, 5)) ** 3
    assert emd(a, b, grid=None) == pytest.approx(lp_emd(a, b), abs=1e-7)


@pytest.mark.parametrize("seed", range(4))
def test_emd_on_one_row_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = np.zeros((16, 16)), np.zeros((16, 16))
    a[7], b[7] = rng.random(16), rng.random(16)
    x = np.arange(16.0)
    assert emd(a, b, grid=None) == pytest.approx(wasserstein_distance(x, x, a[7], b[7]), abs=1e-9)


def test_a_shifted_map_moves_by_its_shift() -> None:
    a = np.zeros((30, 30))
    a[10:14, 5:9] = 1.0
    b = np.roll(a, (3, 4), axis=(0, 1))
    assert emd(a, b, grid=None) == pytest.approx(5.0)  # every unit of mass moves (3, 4)
    assert emd(a, b, grid=30) == pytest.approx(5.0)
    assert emd(a, a) == 0.0


def test_block_sums_keep_mass_and_centres() -> None:
    p = as_distribution(np.random.default_rng(0).random((150, 150)))
    sums, centres = block_sums(p, 30)
    assert sums.shape == (900,) and sums.sum() == pytest.approx(1.0)
    assert centres[0].tolist() == [2.0, 2.0] and centres[-1].tolist() == [147.0, 147.0]
    sums7, _ = block_sums(p, 7)  # uneven blocks still keep every pixel exactly once
    assert sums7.sum() == pytest.approx(1.0)


def test_grid_error_is_small_for_smooth_maps() -> None:
    yy, xx = np.mgrid[0:60, 0:60]
    a = np.exp(-((xx - 20) ** 2 + (yy - 25) ** 2) / 50.0)
    b = np.exp(-((xx - 38) ** 2 + (yy - 30) ** 2) / 80.0)
    full = emd(a, b, grid=None)
    assert emd(a, b, grid=30) == pytest.approx(full, rel=0.02)
    assert emd(a, b, grid=30, method="sinkhorn") == pytest.approx(emd(a, b, grid=30), rel=0.05)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="method"):
        emd(np.ones((4, 4)), np.ones((4, 4)), grid=2, method="fast")
    with pytest.raises(ValueError, match="grid"):
        emd(np.ones((4, 4)), np.ones((4, 4)), grid=5)
