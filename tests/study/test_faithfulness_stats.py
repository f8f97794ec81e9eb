"""The faithfulness statistics on tables whose answers are known: curves built so that one ranking is
clearly better, and a null case where nothing differs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leam.metrics.faithfulness import FRACTIONS, curve_auc
from leam.study import faithfulness_stats as fs


def _table(slopes: dict[str, float], photos: int = 30, fills=("black", "blur"), noise: float = 0.01,
           seed: int = 0) -> pd.DataFrame:
    """Deletion curves cos = 0.8 - slope * fraction (+ noise) per method; insertion mirrors them; the pair
    matches while cos >= 0.5."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(photos):
        for fill in fills:
            for method, slope in slopes.items():
                jitter = rng.normal(0, noise, len(FRACTIONS))
                for direction in ("deletion", "insertion"):
                    for f, e in zip(FRACTIONS, jitter):
                        cos = 0.8 - slope * f + e if direction == "deletion" else 0.2 + slope * f + e
                        rows.append({"model": "m", "identity": f"id{i % 10}", "image": f"p{i}", "method": method,
                                     "map": "mean" if method in ("leam", "default") else "", "objective": "",
                                     "fill": fill, "direction": direction, "fraction": f, "cosine": cos,
                                     "match": cos >= 0.5})
    return pd.DataFrame(rows)


STRONG = {"default": 1.2, "random": 0.2, "random_face": 0.3, "centre_prior": 0.25, "population_prior": 0.4,
          "consensus": 1.0, "other_person": 0.35}


def test_per_photo_areas_and_unmatch_are_the_metric_functions():
    t = _table({"default": 1.2, "random": 0.2}, photos=3)
    photos = fs.per_photo(t)
    assert len(photos) == 3 * 2 * 2 * 2
    row = photos[(photos["image"] == "p1") & (photos["method"] == "default") & (photos["fill"] == "blur")
                 & (photos["direction"] == "deletion")].iloc[0]
    curve = t[(t["image"] == "p1") & (t["method"] == "default") & (t["fill"] == "blur")
              & (t["direction"] == "deletion")]
    assert row["auc"] == pytest.approx(curve_auc(curve["fraction"].to_numpy(), curve["cosine"].to_numpy()))
    first_fail = curve[~curve["match"]]["fraction"].min()  # 0.8 - 1.2 f < 0.5 from f = 0.25: first at 0.30
    assert row["unmatch"] == pytest.approx(first_fail) and not row["censored"]
    slow = photos[(photos["method"] == "random") & (photos["direction"] == "deletion")]
    assert slow["censored"].all() and (slow["unmatch"] == FRACTIONS[-1]).all()  # 0.8 - 0.1 never below 0.5
    assert photos[photos["direction"] == "insertion"]["unmatch"].isna().all()


def test_rankings_best_first_and_verdict_when_the_map_wins():
    photos = fs.per_photo(_table(STRONG))
    ranked = fs.ranking_summary(photos)
    deletion = ranked[(ranked["fill"] == "black") & (ranked["direction"] == "deletion")]
    assert deletion["method"].tolist()[:2] == ["default", "consensus"] and deletion["rank"].tolist()[0] == 1
    insertion = ranked[(ranked["fill"] == "black") & (ranked["direction"] == "insertion")]
    assert insertion["method"].iloc[0] == "default"
    assert (deletion["auc_low"] < deletion["auc"]).all() and (deletion["auc"] < deletion["auc_high"]).all()
    against = fs.versus_baselines(photos)
    assert len(against) == 2 * 4 and (against["mean_diff"] < 0).all() and (against["p_wilcoxon"] < 1e-5).all()
    specific = fs.specificity(photos)
    assert set(zip(specific["a"], specific["b"])) == set(fs.SPECIFICITY_PAIRS)
    sentence = fs.verdicts(against, specific)["m"]
    assert "beats all 4 baselines under every fill" in sentence and "are person-specific" in sentence
    share = fs.consensus_share(photos)
    assert share["consensus_better"].tolist() == [1.0, 1.0] and share["identities"].tolist() == [10, 10]


def test_null_case_claims_nothing():
    same = {name: 0.5 for name in STRONG}
    photos = fs.per_photo(_table(same, noise=0.02, seed=3))
    against = fs.versus_baselines(photos)
    assert (against["p_wilcoxon"] > 0.001).all()
    sentence = fs.verdicts(against, fs.specificity(photos))["m"]
    assert "beats no baseline under every fill" in sentence and "person-specificity not shown" in sentence
    assert "default beats other_person under no fill" in sentence


def test_a_baseline_lost_under_one_fill_is_named():
    t = _table(STRONG)
    blur = (t["fill"] == "blur") & (t["method"] == "random_face")
    t.loc[blur & (t["direction"] == "deletion"), "cosine"] = 0.8 - 2.0 * t.loc[blur, "fraction"]
    sentence = fs.verdicts(fs.versus_baselines(fs.per_photo(t)), pd.DataFrame())["m"]
    assert "beats random, centre_prior, population_prior under every fill" in sentence
    assert "(beats random_face under black only)" in sentence


def test_bc_reading():
    rows = [{"model": "m", "identity": f"i{k}", "image": f"p{k}", "versus": v, "threshold": t, "bc": b + 0.01 * k}
            for k in range(12) for t in (np.nan, 1.0)
            for v, b in (("consensus", 0.6), ("population_prior", 0.4), ("other_person", 0.3))]
    bc = fs.specificity_bc(pd.DataFrame(rows))
    assert len(bc) == 2
    full = bc[bc["threshold"].isna()].iloc[0]
    assert full["bc_consensus"] == pytest.approx(0.6 + 0.055) and full["bc_other_person"] == pytest.approx(0.355)
    assert full["consensus_vs_prior_mean_diff"] == pytest.approx(0.2)
    assert full["consensus_vs_prior_p_wilcoxon"] < 0.001


def test_default_candidates_pick_the_best_leam_map_and_the_conservative_fill():
    t = _table({**STRONG, "leam": 1.2}, fills=("black", "blur", "mean"))
    early = t[t["method"] == "leam"].assign(map="early", cosine=lambda d: np.where(
        d["direction"] == "deletion", 0.8 - 1.6 * d["fraction"], d["cosine"]))
    blur_random = (t["method"] == "random") & (t["fill"] == "blur") & (t["direction"] == "deletion")
    t.loc[blur_random, "cosine"] += 0.05  # random pixels hurt least under blur: the conservative fill
    photos = fs.per_photo(pd.concat([t, early], ignore_index=True))
    assert fs.conservative_fill(photos, "m") == "blur"
    c = fs.default_candidates(photos)
    assert c["fill"].tolist() == ["black", "blur"] and c["best"].tolist() == ["leam early", "leam early"]
    assert (c["vs_default_mean_diff"] < 0).all() and (c["vs_default_p_wilcoxon"] < 1e-5).all()


def test_aggregates_versus_the_run_map_and_baselines_equal_a_direct_computation():
    """Each LEAM aggregate against the run's map and every baseline: the paired differences and the Wilcoxon p
    recomputed here from the photos' areas with NumPy and SciPy; a steeper aggregate wins, an equal one ties."""
    from scipy.stats import wilcoxon

    t = _table({**STRONG, "leam": 1.2})
    t.loc[t["method"] == "leam", "objective"] = "loss"
    steep = t[t["method"] == "leam"].assign(map="early", objective="similarity", cosine=lambda d: np.where(
        d["direction"] == "deletion", 0.8 - 1.6 * d["fraction"] + 0.01 * np.sin(np.arange(len(d))), d["cosine"]))
    photos = fs.per_photo(pd.concat([t, steep], ignore_index=True))
    got = fs.aggregates_versus(photos)
    assert set(got["ranking"]) == {"leam mean", "leam early (similarity)"}
    assert set(got["versus"]) == {"default", *fs.BASELINES} and set(got["fill"]) == {"black", "blur"}
    area = photos[photos["direction"] == "deletion"].set_index(["fill", "method", "map", "objective", "image"])["auc"]
    area = area.sort_index()
    for row in got.itertuples():
        mine = area.loc[(row.fill, "leam", *{"leam mean": ("mean", "loss"),
                                             "leam early (similarity)": ("early", "similarity")}[row.ranking])]
        theirs = area.loc[(row.fill, row.versus, "mean" if row.versus == "default" else "", "")]
        d = mine.sort_index().to_numpy() - theirs.sort_index().to_numpy()
        assert row.n == len(d) == 30 and row.mean_diff == pytest.approx(d.mean(), abs=1e-12)
        if np.any(d != 0):
            assert row.p_wilcoxon == pytest.approx(wilcoxon(d).pvalue, rel=1e-9)
    steep_vs_run = got[(got["ranking"] == "leam early (similarity)") & (got["versus"] == "default")]
    assert (steep_vs_run["mean_diff"] < 0).all() and (steep_vs_run["p_wilcoxon"] < 1e-5).all()


def test_the_aggregates_compared_are_the_engines():
    from leam.maps import AGGREGATIONS

    assert fs.AGGREGATE_MAPS == AGGREGATIONS
