"""``leam.study.stats`` against slow references: plain loops over rows, brute-force test statistics
(every permutation or sign flip for small samples, the textbook normal approximation otherwise)."""

from __future__ import annotations

import itertools
import math
import statistics

import numpy as np
import pandas as pd
import pytest

from leam.metrics.regions import identity_summary
from leam.study import stats as S

# ------------------------------------------------------------------------------ reference tests


def ref_u(a, b) -> float:
    """U of ``a``: how often a value of ``a`` beats one of ``b`` (ties count half)."""
    return sum(1.0 if x > y else 0.5 if x == y else 0.0 for x in a for y in b)


def ref_mann_whitney_p(a, b) -> float:
    """Two-sided p: exact by every assignment of the pooled values to the two samples when small and
    tie-free, else the normal approximation with tie and continuity corrections."""
    a, b = list(a), list(b)
    n1, n2 = len(a), len(b)
    u = ref_u(a, b)
    pooled = a + b
    if (n1 <= 8 or n2 <= 8) and len(set(pooled)) == len(pooled):
        extreme = max(u, n1 * n2 - u)
        us = [ref_u([pooled[i] for i in idx], [pooled[i] for i in range(n1 + n2) if i not in idx])
              for idx in itertools.combinations(range(n1 + n2), n1)]
        return min(1.0, 2 * sum(x >= extreme for x in us) / len(us))
    n = n1 + n2
    ties = sum(c**3 - c for c in pd.Series(pooled).value_counts())
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))))
    z = (abs(u - n1 * n2 / 2) - 0.5) / sigma
    return min(1.0, math.erfc(z / math.sqrt(2)))


def ref_wilcoxon_p(x, y) -> float:
    """Exact two-sided signed-rank p by all 2^n sign flips (no ties, no zero differences)."""
    d = [a - b for a, b in zip(x, y)]
    ranks = pd.Series([abs(v) for v in d]).rank().tolist()
    w = sum(r for r, v in zip(ranks, d) if v > 0)
    dist = [sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product((0, 1), repeat=len(d))]
    lo, hi = sum(v <= w for v in dist), sum(v >= w for v in dist)
    return min(1.0, 2 * min(lo, hi) / len(dist))


def at_threshold(table: pd.DataFrame, threshold: float) -> pd.DataFrame:
    return table[table["threshold"].isna()] if math.isnan(threshold) else table[table["threshold"] == threshold]


def ref_describe(values):
    v = [x for x in values if not math.isnan(x)]
    return (statistics.fmean(v) if v else math.nan, statistics.stdev(v) if len(v) > 1 else math.nan, len(v))


@pytest.mark.parametrize("n1, n2, decimals", [(4, 5, 6), (6, 3, 6), (20, 25, 1), (12, 30, 6)])
def test_mann_whitney_matches_reference(n1, n2, decimals):
    rng = np.random.default_rng(n1 * 100 + n2)
    a, b = rng.normal(0.3, 1, n1).round(decimals), rng.normal(0, 1, n2).round(decimals)
    u, p = S.mann_whitney(a, b)
    assert u == ref_u(a, b)
    assert p == pytest.approx(ref_mann_whitney_p(a, b), rel=1e-9)


def test_mann_whitney_drops_nan_and_needs_both_samples():
    assert S.mann_whitney([1.0, math.nan, 2.0], [3.0, 4.0]) == S.mann_whitney([1.0, 2.0], [3.0, 4.0])
    assert all(math.isnan(v) for v in S.mann_whitney([], [1.0, 2.0]))


def test_wilcoxon_matches_exact_enumeration():
    rng = np.random.default_rng(3)
    x = rng.normal(0.05, 0.02, 11)
    y = rng.normal(0.03, 0.02, 11)
    assert S.wilcoxon_paired(x, y) == pytest.approx(ref_wilcoxon_p(x, y), rel=1e-12)
    assert math.isnan(S.wilcoxon_paired([0.1, 0.2], [0.1, 0.2]))  # no pair differs


# ------------------------------------------------------------------------------ map similarity


def make_pairs(rng) -> pd.DataFrame:
    rows = []
    for model in ("m1", "m2"):
        for k in range(14):
            kind = "same" if k < 7 else "different"
            for layer in ("conv", "aggregate"):
                for threshold in (math.nan, 1.0):
                    bc = rng.uniform(0.3, 0.9) + (0.1 if kind == "same" else 0.0)
                    emd = rng.uniform(5, 20) if layer == "aggregate" else math.nan
                    if k == 3 and layer == "conv":
                        bc = math.nan  # an all-zero map
                    rows.append({"model": model, "layer": layer, "threshold": threshold, "kind": kind,
                                 "identity_a": f"i{k % 3}", "image_a": f"a{k}", "identity_b": f"i{k % 3}",
                                 "image_b": f"b{k}", "bc": bc, "emd": emd})
    return pd.DataFrame(rows)


def test_similarity_summary_matches_a_loop():
    pairs = make_pairs(np.random.default_rng(0))
    got = S.similarity_summary(pairs)
    assert len(got) == 2 * (2 * 2 + 2)  # per model: bc on 2 layers x 2 thresholds, emd on aggregate only
    assert list(got["model"].unique()) == ["m1", "m2"] and list(got["layer"].unique()) == ["conv", "aggregate"]
    for _, row in got.iterrows():
        sel = pairs[(pairs["model"] == row["model"]) & (pairs["layer"] == row["layer"])]
        sel = at_threshold(sel, row["threshold"])
        same = sel[sel["kind"] == "same"][row["metric"]].tolist()
        diff = sel[sel["kind"] == "different"][row["metric"]].tolist()
        ms, ss, ns = ref_describe(same)
        md, sd, nd = ref_describe(diff)
        assert (row["same_n"], row["different_n"]) == (ns, nd)
        assert row["same_mean"] == pytest.approx(ms) and row["same_std"] == pytest.approx(ss)
        assert row["different_mean"] == pytest.approx(md) and row["different_std"] == pytest.approx(sd)
        assert row["difference"] == pytest.approx(ms - md)
        same, diff = [v for v in same if not math.isnan(v)], [v for v in diff if not math.isnan(v)]
        assert row["u"] == ref_u(same, diff)
        assert row["p_value"] == pytest.approx(ref_mann_whitney_p(same, diff), rel=1e-9)


def test_similarity_summary_by_group_and_empty():
    pairs = make_pairs(np.random.default_rng(1)).assign(attr_g=lambda t: np.where(t["image_a"] < "a5", "x", "y"))
    got = S.similarity_summary(pairs, by=["attr_g"])
    assert set(got["attr_g"]) == {"x", "y"}
    assert got["same_n"].sum() + got["different_n"].sum() == pairs[["bc", "emd"]].notna().sum().sum()
    assert S.similarity_summary(pd.DataFrame()).empty


# ----------------------------------------------------------------------------------- occlusion


def make_occlusion(rng, images=9) -> pd.DataFrame:
    rows = []
    for model, effect in (("m1", 0.02), ("m2", -0.01)):
        for i in range(images):
            for percent in (0.5, 1.0):
                for kind in ("map", "random", "random_face"):
                    drop = rng.normal(0.03 * percent, 0.01) + (effect if kind == "map" else 0.0)
                    rows.append({"model": model, "identity": f"id{i % 3}", "image": f"p{i}", "layer": "aggregate",
                                 "percent": percent, "kind": kind, "drop": drop})
    return pd.DataFrame(rows)


def test_occlusion_summary_matches_a_loop():
    occ = make_occlusion(np.random.default_rng(2))
    got = S.occlusion_summary(occ)
    assert list(zip(got["model"], got["percent"])) == [("m1", 0.5), ("m1", 1.0), ("m2", 0.5), ("m2", 1.0)]
    for _, row in got.iterrows():
        sel = occ[(occ["model"] == row["model"]) & (occ["percent"] == row["percent"])]
        drops = {k: sel[sel["kind"] == k].sort_values("image")["drop"].tolist() for k in S.OCCLUSION_KINDS}
        for kind, values in drops.items():
            mean, std, _ = ref_describe(values)
            assert row[f"{kind}_mean"] == pytest.approx(mean) and row[f"{kind}_std"] == pytest.approx(std)
        assert row["images"] == 9
        assert row["ratio_random"] == pytest.approx(statistics.fmean(drops["map"]) / statistics.fmean(drops["random"]))
        assert row["p_random"] == pytest.approx(ref_wilcoxon_p(drops["map"], drops["random"]), rel=1e-12)
        assert row["p_random_face"] == pytest.approx(ref_wilcoxon_p(drops["map"], drops["random_face"]), rel=1e-12)


def test_occlusion_ratio_is_nan_for_a_non_positive_baseline():
    occ = pd.DataFrame({"model": "m", "identity": "i", "image": ["a", "a", "b", "b"], "layer": "aggregate",
                        "percent": 1.0, "kind": ["map", "random"] * 2, "drop": [0.1, -0.01, 0.2, -0.02]})
    row = S.occlusion_summary(occ).iloc[0]
    assert row["map_mean"] == pytest.approx(0.15) and row["random_mean"] == pytest.approx(-0.015)
    assert math.isnan(row["ratio_random"]) and math.isnan(row["random_face_mean"])


# ------------------------------------------------------------------------------------ transfer


def test_transfer_summary_and_matrix():
    rng = np.random.default_rng(4)
    models = ("m1", "m2", "m3")
    rows = [{"identity": "i", "image": f"p{k}", "source_model": s, "target_model": t, "percent": p,
             "drop": rng.uniform(0, 0.2)}
            for s in models for t in models for p in (1.0, 5.0) for k in range(5)]
    transfer = pd.DataFrame(rows)
    occ = make_occlusion(rng)
    got = S.transfer_summary(transfer, S.random_baselines(occ))
    assert len(got) == 3 * 3 * 2
    for _, row in got.iterrows():
        sel = transfer[(transfer["source_model"] == row["source_model"])
                       & (transfer["target_model"] == row["target_model"]) & (transfer["percent"] == row["percent"])]
        mean, std, n = ref_describe(sel["drop"].tolist())
        assert (row["drop_mean"], row["drop_n"]) == (pytest.approx(mean), n)
        base = occ[(occ["model"] == row["target_model"]) & (occ["percent"] == row["percent"])]
        if len(base):
            random = statistics.fmean(base[base["kind"] == "random"]["drop"])
            assert row["random_mean"] == pytest.approx(random)
            assert row["ratio_random"] == pytest.approx(mean / random)
        else:  # m3 has no occlusion rows here
            assert math.isnan(row["random_mean"]) and math.isnan(row["ratio_random"])
    matrix = S.transfer_matrix(got, 5.0)
    assert list(matrix.index) == list(matrix.columns) == list(models)
    for s, t in itertools.product(models, models):
        sel = transfer[(transfer["source_model"] == s) & (transfer["target_model"] == t) & (transfer["percent"] == 5)]
        assert matrix.loc[s, t] == pytest.approx(sel["drop"].mean())


# --------------------------------------------------------------------------------- face regions


def make_regions(rng) -> pd.DataFrame:
    rows = []
    for model in ("m1", "m2"):
        for identity in ("ann", "bob"):
            for k in range(3):
                for layer in ("conv", "aggregate"):
                    shares = rng.dirichlet([2, 1, 1])
                    for threshold in (1.0, 5.0):
                        for cls, share in zip(("skin", "nose", "l_eye"), shares):
                            rows.append({"layer": layer, "class": cls, "measure": "share", "threshold": threshold,
                                         "value": share, "model": model, "identity": identity,
                                         "image": f"{identity}/{k}.jpg"})
                    for cls, m in zip(("skin", "nose", "l_eye"), shares):
                        rows.append({"layer": layer, "class": cls, "measure": "mass", "threshold": math.nan,
                                     "value": m, "model": model, "identity": identity, "image": f"{identity}/{k}.jpg"})
    return pd.DataFrame(rows)


def test_region_summary_and_share_table():
    regions = make_regions(np.random.default_rng(5))
    got = S.region_summary(regions)
    assert len(got) == 2 * 2 * 3 * 3  # models x layers x classes x (two thresholds + mass)
    for _, row in got.sample(10, random_state=0).iterrows():
        sel = regions[(regions["model"] == row["model"]) & (regions["layer"] == row["layer"])
                      & (regions["class"] == row["class"]) & (regions["measure"] == row["measure"])]
        sel = at_threshold(sel, row["threshold"])
        mean, std, n = ref_describe(sel["value"].tolist())
        assert (row["mean"], row["std"], row["images"]) == (pytest.approx(mean), pytest.approx(std), n)
    table = S.share_table(got, "m2", 1.0)
    assert list(table.index) == ["conv", "aggregate"] and list(table.columns) == ["skin", "nose", "l_eye"]
    np.testing.assert_allclose(table.sum(axis=1), 1.0)
    assert S.share_table(got, "m2", None, "mass").shape == (2, 3)


def test_identity_variability_reuses_identity_summary_per_model():
    regions = make_regions(np.random.default_rng(6))
    got = S.identity_variability(regions)
    for model in ("m1", "m2"):
        rows = regions[regions["model"] == model]
        expected = identity_summary(rows)  # identities sorted; identity_variability: as they first appear
        first = list(pd.unique(rows["identity"]))
        expected = expected.sort_values("identity", key=lambda c: c.map(first.index), kind="stable")
        mine = got[got["model"] == model].drop(columns="model").reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, expected.reset_index(drop=True))
    summary = S.variability_summary(got)
    row = summary[(summary["model"] == "m1") & (summary["layer"] == "conv") & (summary["class"] == "nose")
                  & (summary["threshold"] == 1.0)].iloc[0]
    cvs = []
    for identity in ("ann", "bob"):
        v = regions[(regions["model"] == "m1") & (regions["identity"] == identity) & (regions["layer"] == "conv")
                    & (regions["class"] == "nose") & (regions["threshold"] == 1.0)]["value"].tolist()
        cvs.append(statistics.stdev(v) / statistics.fmean(v))
    assert row["cv_mean"] == pytest.approx(statistics.fmean(cvs)) and row["identities"] == 2


# -------------------------------------------------------------------------------------- groups


def test_with_attribute_and_group_split_by_hand():
    images = pd.DataFrame({"model": "m", "identity": ["ann", "ann", "bob", "bob", "cy"],
                           "image": ["a1", "a2", "b1", "b2", "c1"], "attr_gender": ["F", "F", "M", "M", None]})
    occ = pd.DataFrame({"model": "m", "identity": images["identity"], "image": images["image"],
                        "layer": "aggregate", "percent": 1.0, "kind": "map", "drop": [0.10, 0.14, 0.08, 0.12, 0.5]})
    t = S.with_attribute(occ, images, "gender")
    assert t["attr_gender"].tolist()[:4] == ["F", "F", "M", "M"] and pd.isna(t["attr_gender"].iloc[4])
    split = S.group_split(t, "drop", "attr_gender", ["model", "percent"])
    assert len(split) == 1
    row = split.iloc[0]
    assert (row["group_a"], row["group_b"], row["a_n"], row["b_n"]) == ("F", "M", 2, 2)
    assert row["a_mean"] == pytest.approx(0.12) and row["b_mean"] == pytest.approx(0.10)
    assert row["difference"] == pytest.approx(0.02)
    assert row["u"] == ref_u([0.10, 0.14], [0.08, 0.12])
    assert row["p_value"] == pytest.approx(ref_mann_whitney_p([0.10, 0.14], [0.08, 0.12]))

    pairs = pd.DataFrame({"model": "m", "layer": "aggregate", "threshold": 1.0,
                          "kind": ["same", "different", "different"],
                          "identity_a": ["ann", "ann", "bob"], "image_a": ["a1", "a1", "b1"],
                          "identity_b": ["ann", "bob", "ann"], "image_b": ["a2", "b1", "a2"], "bc": [0.4, 0.2, 0.3]})
    t = S.with_attribute(pairs, images, "gender")
    assert t["attr_gender"].iloc[0] == "F" and t["attr_gender"].iloc[1:].isna().all()  # across groups: neither
    with pytest.raises(KeyError, match="age"):
        S.with_attribute(occ, images, "age")


def test_blank_attribute_values_belong_to_no_group():
    """An empty manifest cell (LFW's labels leave a few genders blank) is unknown, not a third group."""
    images = pd.DataFrame({"model": "m", "identity": ["ann", "bob", "cy", "dee"], "image": ["a", "b", "c", "d"],
                           "attr_gender": ["F", "M", "", "  "]})
    occ = images[["model", "identity", "image"]].assign(layer="aggregate", percent=1.0, kind="map",
                                                        drop=[0.1, 0.2, 0.3, 0.4])
    t = S.with_attribute(occ, images, "gender")
    assert t["attr_gender"].iloc[:2].tolist() == ["F", "M"] and t["attr_gender"].iloc[2:].isna().all()
    split = S.group_split(t, "drop", "attr_gender", ["model", "percent"])
    assert split[["group_a", "group_b", "a_n", "b_n"]].values.tolist() == [["F", "M", 1, 1]]


def test_group_splits_covers_every_statistic():
    rng = np.random.default_rng(7)
    occ = make_occlusion(rng)
    images = occ[["model", "identity", "image"]].drop_duplicates().assign(
        attr_gender=lambda t: np.where(t["identity"] == "id0", "F", "M"))
    regions = make_regions(rng).assign(identity="id1", image="p1")
    pairs = make_pairs(rng).assign(identity_a="id1", image_a="p1", identity_b="id2", image_b="p2")
    transfer = occ[occ["kind"] == "map"].rename(columns={"model": "target_model"}).assign(source_model="m1")
    splits = S.group_splits({"images": images, "occlusion": occ, "regions": regions, "pairs": pairs,
                             "transfer": transfer}, "gender")
    assert set(splits) == {"occlusion drop", "transfer drop", "pairs bc", "pairs emd", "region share"}
    occ_split = splits["occlusion drop"]
    row = occ_split[(occ_split["model"] == "m1") & (occ_split["percent"] == 1.0) & (occ_split["kind"] == "map")].iloc[0]
    sel = occ[(occ["model"] == "m1") & (occ["percent"] == 1.0) & (occ["kind"] == "map")]
    women, men = sel[sel["identity"] == "id0"]["drop"], sel[sel["identity"] != "id0"]["drop"]
    assert row["a_mean"] == pytest.approx(women.mean()) and row["b_mean"] == pytest.approx(men.mean())
    assert row["p_value"] == pytest.approx(ref_mann_whitney_p(women.tolist(), men.tolist()))
    assert splits["region share"].empty  # every region row is a man's: nothing to compare
    assert splits["pairs bc"].empty  # every pair crosses the groups


# ------------------------------------------------------------------------------------ failures


def test_failure_counts_merge_photos_failing_alike():
    failures = pd.DataFrame({
        "model": ["m", "m", "m", "m"], "identity": ["a", "b", "b", "c"],
        "image": ["a/1.jpg", "b/1.jpg", "b/2.jpg", ""],
        "stage": ["face", "face", "face", "identity"],
        "reason": ["a/1.jpg: no face found", "/data/b/1.jpg: no face found",
                   "b/2.jpg: 2 faces found at (left,top,right,bottom) (1,2,3,4), (5,6,7,8); use --largest-face",
                   "1 usable photo(s); at least 2 are needed for a reference"]})
    got = S.failure_counts(failures)
    assert got.to_dict("records") == [
        {"model": "m", "stage": "face", "reason": "no face found", "count": 2},
        {"model": "m", "stage": "face", "reason": "2 faces found at (left,top,right,bottom) …; use --largest-face",
         "count": 1},
        {"model": "m", "stage": "identity", "reason": "1 usable photo(s); at least 2 are needed for a reference",
         "count": 1},
    ]
    assert list(S.failure_counts(pd.DataFrame()).columns) == S.FAILURE_COLUMNS
