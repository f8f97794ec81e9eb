"""The specific map and Holm's correction, against slow obvious implementations and on adversarial maps; the
specific map's validation statistics on frames where each outcome is forced."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leam.metrics.paired import holm
from leam.metrics.specific import consensus_map, normalised, prior_map, specific_map
from leam.study.faithfulness_stats import specific_validation, specific_verdicts


def slow_normalised(m: np.ndarray) -> np.ndarray:
    lo, hi = min(m.ravel()), max(m.ravel())
    return np.array([[(v - lo) / (hi - lo) if hi > lo else 0.0 for v in row] for row in m])


def slow_specific(consensus: np.ndarray, prior: np.ndarray) -> np.ndarray:
    c, p = slow_normalised(consensus), slow_normalised(prior)
    return slow_normalised(np.array([[max(a - b, 0.0) for a, b in zip(rc, rp)] for rc, rp in zip(c, p)]))


@pytest.mark.parametrize("seed", range(5))
def test_specific_map_equals_the_slow_one(seed) -> None:
    rng = np.random.default_rng(seed)
    maps = rng.random((4, 9, 7)) ** 3
    total, count = rng.random((9, 7)) * 20 + maps.sum(0), 24
    consensus = consensus_map(list(maps))
    prior = prior_map(total, count, maps.sum(0), len(maps))
    np.testing.assert_allclose(consensus, slow_normalised(maps.mean(0)), atol=1e-12)
    np.testing.assert_allclose(prior, slow_normalised((total - maps.sum(0)) / (count - 4)), atol=1e-12)
    np.testing.assert_allclose(specific_map(consensus, prior), slow_specific(consensus, prior), atol=1e-12)


def test_adversarial_maps() -> None:
    flat, ramp = np.full((5, 5), 0.3), np.arange(25.0).reshape(5, 5)
    assert not specific_map(ramp, ramp).any()  # the consensus is the prior: nothing sets the person apart
    assert not specific_map(flat, ramp).any()  # a constant consensus normalises to zeros
    np.testing.assert_allclose(specific_map(ramp, flat), ramp / 24)  # a constant prior: the consensus itself
    assert not normalised(np.zeros((0, 3))).size and not normalised(flat).any()
    prior = np.random.default_rng(0).random((5, 5))
    np.testing.assert_allclose(specific_map(3 * ramp + 5, prior / 7), specific_map(ramp, prior))  # scale: no matter
    with pytest.raises(ValueError, match="one shape"):
        specific_map(ramp, ramp[:4])
    with pytest.raises(ValueError, match="other people"):
        prior_map(ramp, 3, ramp, 3)
    with pytest.raises(ValueError, match="at least one"):
        consensus_map([])


def slow_holm(p: list[float]) -> list[float]:
    tested = [i for i, v in enumerate(p) if np.isfinite(v)]
    order = sorted(tested, key=lambda i: (p[i], i))
    m, out, running = len(order), [float("nan")] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def test_holm_textbook_example() -> None:
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])


@pytest.mark.parametrize("seed", range(6))
def test_holm_equals_the_slow_one(seed) -> None:
    rng = np.random.default_rng(seed)
    p = list(rng.random(int(rng.integers(1, 15))) ** 3)
    p[0] = p[-1]  # a tie
    if len(p) > 3:
        p[1] = float("nan")  # no test
        p[2] = 0.9  # capped at 1 once scaled
    np.testing.assert_allclose(holm(p), slow_holm(p), equal_nan=True)
    assert np.isnan(holm([np.nan, np.nan])).all() and holm([]).shape == (0,)


def photos_frame(own_drop: float, other_drop: float, specific_auc: float, prior_auc: float,
                 n: int = 12) -> pd.DataFrame:
    """Per-photo rows of a study's faithfulness summary for one model and two fills, with noise."""
    rng = np.random.default_rng(0)
    rows = []
    for fill in ("black", "blur"):
        for i in range(n):
            base = {"model": "m", "identity": f"id{i}", "image": f"id{i}/1.jpg", "map": "aggregate",
                    "objective": "", "fill": fill, "direction": "deletion", "unmatch": np.nan, "censored": False}
            noise = rng.normal(0, 0.01, 4)
            rows += [{**base, "method": "specific", "auc": specific_auc + noise[0], "drop": own_drop + noise[1]},
                     {**base, "method": "population_prior", "auc": prior_auc + noise[2], "drop": np.nan},
                     {**base, "method": "specific_other", "auc": np.nan, "drop": other_drop + noise[3]}]
    return pd.DataFrame(rows)


def test_validation_holds_only_where_both_tests_pass() -> None:
    good = specific_validation(photos_frame(own_drop=0.3, other_drop=0.1, specific_auc=0.4, prior_auc=0.6))
    assert len(good) == 4 and good["holds"].all() and (good["p_holm"] >= good["p_wilcoxon"]).all()
    assert "validated under every fill" in specific_verdicts(good)["m"]
    face_only = specific_validation(photos_frame(own_drop=0.1, other_drop=0.3, specific_auc=0.4, prior_auc=0.6))
    assert list(face_only.groupby("test")["holds"].all()) == [True, False]  # beats the prior, not identity-specific
    assert "not validated" in specific_verdicts(face_only)["m"]
    worse = specific_validation(photos_frame(own_drop=0.3, other_drop=0.1, specific_auc=0.7, prior_auc=0.6))
    assert not worse[worse["test"] == "beats the population prior"]["holds"].any()
    assert specific_validation(photos_frame(0.3, 0.1, 0.4, 0.6).query("method != 'specific_other'"))[
        "test"].eq("beats the population prior").all()
    assert specific_verdicts(pd.DataFrame()) == {}
