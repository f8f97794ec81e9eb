"""Region statistics against a slow, obvious implementation and on maps whose answer is known."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pandas as pd
import pytest

from leam.errors import LeamError
from leam.metrics.regions import (
    DEFAULT_THRESHOLDS,
    check_thresholds,
    identity_summary,
    region_mass,
    region_shares,
    region_table,
    share_pivot,
    top_count,
    top_mask,
)
from leam.parse import CLASSES, UNLABELLED, LabelMap


def slow_top_indices(values: np.ndarray, percent: float) -> set[int]:
    """Sort every pixel in Python: by value descending, then by raster index ascending."""
    flat = [float(v) for v in values.ravel()]
    k = max(1, math.ceil(len(flat) * percent / 100 - 1e-9))
    return set(sorted(range(len(flat)), key=lambda i: (-flat[i], i))[:k])


def slow_shares(values: np.ndarray, labels: LabelMap, percent: float) -> dict[str, float]:
    top = slow_top_indices(values, percent)
    flat_labels = labels.labels.ravel().tolist()
    names = {CLASSES.index(c): c for c in labels.classes} | {UNLABELLED: "unlabelled"}
    counts: dict[str, int] = {}
    for i in top:
        counts[names[flat_labels[i]]] = counts.get(names[flat_labels[i]], 0) + 1
    return {c: counts.get(c, 0) / len(top) for c in labels.categories}


def random_labels(rng: np.random.Generator, shape: tuple[int, int], classes: tuple[str, ...]) -> LabelMap:
    values = [CLASSES.index(c) for c in classes] + [UNLABELLED]
    return LabelMap(rng.choice(values, size=shape).astype(np.uint8), classes, "test")


MAPS = {
    "uniform": lambda rng: rng.random((23, 17)),
    "quantised-ties": lambda rng: rng.integers(0, 4, (23, 17)).astype(float),
    "constant": lambda rng: np.full((23, 17), 0.5),
    "one-hot": lambda rng: np.eye(23, 17),
    "negative": lambda rng: -rng.random((23, 17)),
    "heavy-tail": lambda rng: rng.pareto(0.5, (23, 17)),
}


@pytest.mark.parametrize("kind", MAPS)
@pytest.mark.parametrize("percent", [0.1, 1, 5, 10, 25, 50, 99.9, 100])
def test_top_mask_matches_the_slow_sort(kind: str, percent: float) -> None:
    values = MAPS[kind](np.random.default_rng(0))
    mask = top_mask(values, percent)
    assert set(np.flatnonzero(mask).tolist()) == slow_top_indices(values, percent)


@pytest.mark.parametrize("kind", MAPS)
def test_shares_match_the_slow_count(kind: str) -> None:
    rng = np.random.default_rng(1)
    values = MAPS[kind](rng)
    labels = random_labels(rng, values.shape, ("skin", "nose", "l_eye", "r_eye"))
    got = region_shares(values, labels, [1, 5, 10, 25, 50, 100])
    for p, shares in got.items():
        assert shares == pytest.approx(slow_shares(values, labels, p), abs=1e-12)
        assert sum(shares.values()) == pytest.approx(1.0)


def test_top_count_literals() -> None:
    assert [top_count(22500, p) for p in (1, 5, 10, 25, 50, 100)] == [225, 1125, 2250, 5625, 11250, 22500]
    assert top_count(10, 1) == 1  # never empty
    assert top_count(3, 50) == 2  # ceil
    for bad in (0, -1, 101):
        with pytest.raises(ValueError, match="threshold"):
            top_count(10, bad)


def test_ties_are_broken_by_raster_order() -> None:
    values = np.array([[1.0, 2.0, 2.0], [2.0, 0.0, 1.0]])
    # 50 % of 6 = 3 pixels: the three 2.0s; 1 pixel: the first 2.0 in raster order
    assert top_mask(values, 50).tolist() == [[False, True, True], [True, False, False]]
    assert np.flatnonzero(top_mask(values, 1)).tolist() == [1]


def test_nan_maps_are_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        top_mask(np.array([[np.nan, 1.0]]), 50)


def test_a_map_that_is_one_on_the_nose_puts_its_top_pixels_there() -> None:
    labels = np.full((40, 40), CLASSES.index("skin"), np.uint8)
    labels[10:20, 15:25] = CLASSES.index("nose")  # 100 pixels = 6.25 %
    labels[:5] = UNLABELLED
    lm = LabelMap(labels, ("skin", "nose"), "test")
    values = (labels == CLASSES.index("nose")).astype(float)
    shares = region_shares(values, lm, [1, 5, 6.25, 10, 100])
    assert shares[1.0]["nose"] == 1.0 and shares[5.0]["nose"] == 1.0 and shares[6.25]["nose"] == 1.0
    assert shares[10.0]["nose"] == pytest.approx(100 / 160)
    assert shares[100.0] == pytest.approx({"skin": 1300 / 1600, "nose": 100 / 1600, "unlabelled": 200 / 1600})
    assert region_mass(values, lm) == {"skin": 0.0, "nose": 1.0, "unlabelled": 0.0}


def test_only_the_parsers_classes_are_reported() -> None:
    labels = np.full((8, 8), CLASSES.index("nose"), np.uint8)
    lm = LabelMap(labels, ("nose", "skin"), "test")
    table = region_table({"aggregate": np.random.default_rng(2).random((8, 8))}, lm, [10])
    assert set(table["class"]) == {"nose", "skin"}  # no hair, no background, no "unlabelled"
    assert table.loc[table["class"] == "skin", "value"].eq(0).all()


def test_mass_against_numpy_and_zero_maps() -> None:
    rng = np.random.default_rng(3)
    values = rng.random((30, 30))
    lm = random_labels(rng, values.shape, ("skin", "hair"))
    mass = region_mass(values, lm)
    for c in ("skin", "hair"):
        assert mass[c] == pytest.approx(values[lm.labels == CLASSES.index(c)].sum() / values.sum())
    assert sum(mass.values()) == pytest.approx(1.0)
    assert all(math.isnan(v) for v in region_mass(np.zeros((30, 30)), lm).values())


def test_shape_mismatch_is_refused() -> None:
    lm = LabelMap(np.zeros((4, 4), np.uint8), ("background",), "test")
    with pytest.raises(ValueError, match="differs"):
        region_shares(np.zeros((5, 4)), lm, [1])


def test_identity_summary_mean_std_cv_against_statistics() -> None:
    rng = np.random.default_rng(4)
    rows = []
    for identity in ("a", "b"):
        for image in range(4):
            for c in ("nose", "skin"):
                rows.append(("aggregate", c, "share", 1.0, float(rng.random()), identity, f"{image}.jpg"))
    table = pd.DataFrame(rows, columns=["layer", "class", "measure", "threshold", "value", "identity", "image"])
    summary = identity_summary(table)
    for (identity, c), group in table.groupby(["identity", "class"]):
        row = summary[(summary["identity"] == identity) & (summary["class"] == c)].iloc[0]
        vals = group["value"].tolist()
        assert row["images"] == 4
        assert row["mean"] == pytest.approx(statistics.mean(vals))
        assert row["std"] == pytest.approx(statistics.stdev(vals))
        assert row["cv"] == pytest.approx(statistics.stdev(vals) / statistics.mean(vals))


def test_cv_is_nan_when_a_class_is_never_hit() -> None:
    table = pd.DataFrame(
        [("aggregate", "nose", "share", 1.0, 0.0, "a", f"{i}.jpg") for i in range(3)],
        columns=["layer", "class", "measure", "threshold", "value", "identity", "image"],
    )
    assert math.isnan(identity_summary(table)["cv"].iloc[0])


def test_share_pivot_layout() -> None:
    lm = LabelMap(np.full((10, 10), CLASSES.index("skin"), np.uint8), ("skin", "nose"), "test")
    table = region_table({"aggregate": np.ones((10, 10))}, lm, [1, 50])
    pivot = share_pivot(table)
    assert list(pivot.columns) == ["top 1%", "top 50%", "mass"]
    assert list(pivot.index) == ["skin", "nose"]
    assert pivot.loc["skin"].tolist() == [1.0, 1.0, 1.0]


def test_check_thresholds_keeps_good_ones_in_order() -> None:
    assert check_thresholds([50, 0.5, 100]) == (50.0, 0.5, 100.0)
    assert check_thresholds(DEFAULT_THRESHOLDS) == tuple(map(float, DEFAULT_THRESHOLDS))
    assert check_thresholds(p for p in (1e-9, 100)) == (1e-9, 100.0)  # any iterable; the open end near 0 is in


@pytest.mark.parametrize(("given", "message"), [
    ([0], r"--t: expected top-p percentages in \(0, 100\] \(e\.g\. 1 5 10 25 50 100\), got 0$"),
    ([5, -1, 100.5], r"got -1, 100\.5$"),
    ([float("nan"), float("inf")], r"got nan, inf$"),
    ([5, 5, 1, 1], r"--t: 1, 5 given twice; give each percentage once$"),
    ([], r"--t: expected one or more top-p percentages"),
    (["x"], r"--t: expected numbers"),
], ids=["zero", "negative-and-over", "nan-inf", "twice", "empty", "not-a-number"])
def test_check_thresholds_refuses(given, message) -> None:
    with pytest.raises(LeamError, match=message):
        check_thresholds(given, "--t")
