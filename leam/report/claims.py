"""The judges of the reference study's claims (``leam.report.scorecard``): each reads the run's summary tables
(``leam.report.tables.summarise_study``) and returns a ``Score`` per model (or one across models) with the
run's figure, its 95 % CI, a p-value where the summary has one, and a verdict by the claim's rules.

CIs are what the summaries' means, standard deviations and counts allow: mean ± 1.96 standard errors, and
differences and ratios of two means by the delta method, the two taken as independent (for paired samples,
such as one photo's LEAM and random drops, that is conservative when they are positively correlated).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from leam.report.tables import Spilled

REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_TESTABLE = "reproduced", "partly", "not reproduced", "not testable"
VERDICTS = (REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_TESTABLE)
ALPHA = 0.05
Z = 1.959964  # the normal quantile of a two-sided 95 % interval
TOP = 1.0  # the reference study's top-p % of pixels and occlusion percentage
ALL, ACROSS = "all models", "across models"
WOMEN, MEN = {"f", "female", "woman", "women", "w"}, {"m", "male", "man", "men"}
Summaries = Mapping[str, "pd.DataFrame | Spilled"]


@dataclass(frozen=True)
class Score:
    """One row of the scorecard before the claim's texts are added: a model's (or all models') figure."""

    model: str
    verdict: str
    detail: str = ""
    figure: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    p: float = math.nan
    why: str = ""  # the reason a claim is not testable; else the rule of the verdict


# ------------------------------------------------------------------------------------- numbers


def _se(std: float, n: float) -> float:
    return float(std) / math.sqrt(n) if n >= 2 and math.isfinite(std) else math.nan


def _ci(mean: float, se: float) -> tuple[float, float]:
    return mean - Z * se, mean + Z * se


def _diff(a: float, se_a: float, b: float, se_b: float) -> tuple[float, float, float]:
    """a − b and its 95 % CI."""
    return (a - b, *_ci(a - b, math.hypot(se_a, se_b)))


def _ratio(a: float, se_a: float, b: float, se_b: float) -> tuple[float, float, float]:
    """a / b and its 95 % CI (delta method); NaNs when b is not positive."""
    if not b > 0:
        return math.nan, math.nan, math.nan
    r = a / b
    return (r, *_ci(r, math.sqrt(se_a**2 + r**2 * se_b**2) / b))


def _overlaps(low: float, high: float, lo: float, hi: float) -> bool:
    return bool(low <= hi and high >= lo)


def _graded(agrees: bool, in_range: bool) -> str:
    """Reproduced: direction and significance agree and the magnitude is the reference's; partly: only the
    direction and significance; not reproduced: not even those."""
    return REPRODUCED if agrees and in_range else PARTLY if agrees else NOT_REPRODUCED


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Spearman's ρ and its two-sided p: exact (every permutation of ``y``'s ranks) for up to 8 values, else
    scipy's; NaNs when either holds one value only."""
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    if len(set(rx)) < 2 or len(set(ry)) < 2:
        return math.nan, math.nan
    rho = float(np.corrcoef(rx, ry)[0, 1])
    if len(rx) > 8:
        return rho, float(stats.spearmanr(x, y).pvalue)
    perms = [float(np.corrcoef(rx, p)[0, 1]) for p in itertools.permutations(ry)]
    return rho, float(np.mean([abs(r) >= abs(rho) - 1e-12 for r in perms]))


# ------------------------------------------------------------------------------------ the tables


def _table(summaries: Summaries, name: str, filters: list | None = None) -> pd.DataFrame:
    """A summary as a frame (empty when the run lacks it); a spilled one read with ``filters``."""
    t = summaries.get(name)
    if isinstance(t, Spilled):
        return pd.read_parquet(t.path, filters=filters)
    return t if t is not None else pd.DataFrame()


def _at(t: pd.DataFrame, column: str = "threshold", value: float = TOP) -> pd.Series:
    return pd.Series(np.isclose(pd.to_numeric(t[column], errors="coerce"), value), index=t.index)


def _untestable(model: str, why: str) -> list[Score]:
    return [Score(model, NOT_TESTABLE, why=why)]


def _shares(summaries: Summaries) -> pd.DataFrame:
    """The regions summary's shares of the top 1 % pixels."""
    regions = _table(summaries, "regions")
    return regions[(regions["measure"] == "share") & _at(regions)] if len(regions) else regions


# ---------------------------------------------------------------------------------------- judges


def _tv(p: pd.Series, q: pd.Series) -> float:
    """Total-variation distance of two region-share profiles (classes missing from one count as 0)."""
    classes = p.index.union(q.index)
    return 0.5 * float((p.reindex(classes, fill_value=0) - q.reindex(classes, fill_value=0)).abs().sum())


def _mean_tv(profiles: Sequence[pd.Series]) -> float:
    return float(np.mean([_tv(a, b) for a, b in itertools.combinations(profiles, 2)]))


def judge_layers_and_models(summaries: Summaries, sizes: Mapping[str, float]) -> list[Score]:
    """Claim 1, per model: mean total-variation distance of the top-1 % region shares between its single layers ÷ that
    between the models' aggregate maps."""
    shares = _shares(summaries)
    profiles = {k: g.set_index("class")["mean"] for k, g in shares.groupby(["model", "layer"], sort=False)} \
        if len(shares) else {}
    models = list(dict.fromkeys(m for m, _ in profiles))
    aggregates = [profiles[(m, "aggregate")] for m in models if (m, "aggregate") in profiles]
    if len(aggregates) < 2:
        return _untestable(ALL, "needs two or more models with region shares of the top 1 % pixels")
    between_models, out = _mean_tv(aggregates), []
    for m in models:
        layers = [p for (mm, layer), p in profiles.items() if mm == m and layer != "aggregate"]
        if len(layers) < 2:
            out += _untestable(m, "fewer than two single layers with region shares of the top 1 % pixels")
            continue
        between_layers = _mean_tv(layers)
        ratio = between_layers / between_models if between_models > 0 else math.nan
        out.append(Score(m, REPRODUCED if between_layers > between_models else NOT_REPRODUCED,
                         f"its {len(layers)} layers differ by {between_layers:.3f}, the models' aggregate maps by "
                         f"{between_models:.3f} (mean total-variation distance of region shares)", ratio))
    return out


def judge_bc(summaries: Summaries, sizes: Mapping[str, float]) -> list[Score]:
    """Claim 2, per model: BC of aggregate maps at the top 1 %, same ÷ different identities."""
    sim = _table(summaries, "similarity")
    if sim.empty:
        return _untestable(ALL, "the run has no map pairs")
    t = sim[(sim["layer"] == "aggregate") & (sim["metric"] == "bc") & _at(sim)]
    if t.empty:
        return _untestable(ALL, "the run has no BC of pairs at the top 1 % (pair threshold 1)")
    out = []
    for r in t.itertuples():
        if r.same_n < 2 or r.different_n < 2:
            out += _untestable(r.model, "fewer than two pairs of the same or of different identities")
            continue
        se_s, se_d = _se(r.same_std, r.same_n), _se(r.different_std, r.different_n)
        ratio, low, high = _ratio(r.same_mean, se_s, r.different_mean, se_d)
        agrees = bool(r.same_mean > r.different_mean and r.p_value < ALPHA)
        same, diff = _ci(r.same_mean, se_s), _ci(r.different_mean, se_d)
        out.append(Score(r.model, _graded(agrees, _overlaps(low, high, 3, 8)),
                         f"same {r.same_mean:.3f} [{same[0]:.3f}, {same[1]:.3f}] (n {r.same_n}) vs different "
                         f"{r.different_mean:.3f} [{diff[0]:.3f}, {diff[1]:.3f}] (n {r.different_n})",
                         ratio, low, high, r.p_value))
    return out


def judge_nose(summaries: Summaries, sizes: Mapping[str, float]) -> list[Score]:
    """Claim 3, per model: the nose's share of the aggregate map's top 1 % pixels, against its share of all pixels."""
    regions = _table(summaries, "regions")
    if regions.empty:
        return _untestable(ALL, "the run has no face-region table")
    nose = regions[(regions["layer"] == "aggregate") & (regions["measure"] == "share") & (regions["class"] == "nose")]
    out = []
    for model in dict.fromkeys(regions["model"]):
        mine = nose[nose["model"] == model]
        top, whole = mine[_at(mine)], mine[_at(mine, value=100)]
        if top.empty or top["images"].iloc[0] < 2:
            out += _untestable(model, "no nose share of the top 1 % pixels over two or more photos")
            continue
        r = top.iloc[0]
        se = _se(r["std"], r["images"])
        low, high = _ci(r["mean"], se)
        chance = ""
        above = False
        if len(whole):
            w = whole.iloc[0]
            _, d_low, _ = _diff(r["mean"], se, w["mean"], _se(w["std"], w["images"]))
            above, chance = bool(d_low > 0), f"; the nose's share of all pixels {w['mean']:.1%}"
        verdict = REPRODUCED if _overlaps(low, high, 0.189, 0.297) else PARTLY if above else NOT_REPRODUCED
        out.append(Score(model, verdict, f"{r['mean']:.1%} [{low:.1%}, {high:.1%}] of the top 1 %{chance}",
                         r["mean"], low, high))
    return out


OCCLUSION_RATIO = 0.1148 / 0.0286  # the reference study's LEAM / random drop at 1 %


def judge_occlusion(summaries: Summaries, sizes: Mapping[str, float]) -> list[Score]:
    """Claim 4, per model: the drop at 1 % occlusion, LEAM ÷ random, aggregate map."""
    occ = _table(summaries, "occlusion")
    if occ.empty:
        return _untestable(ALL, "the run has no occlusion table")
    t = occ[(occ["layer"] == "aggregate") & _at(occ, "percent")]
    if t.empty:
        return _untestable(ALL, "the run did not occlude 1 % of the pixels (--occlusion-percents 1)")
    out = []
    for r in t.itertuples():
        if r.images < 2:
            out += _untestable(r.model, "fewer than two photos occluded")
            continue
        se_m, se_r = _se(r.map_std, r.images), _se(r.random_std, r.images)
        ratio, low, high = _ratio(r.map_mean, se_m, r.random_mean, se_r)
        agrees = bool(r.map_mean > r.random_mean and r.p_random < ALPHA)
        out.append(Score(r.model, _graded(agrees, low <= OCCLUSION_RATIO <= high),
                         f"LEAM {r.map_mean:.4f} vs random {r.random_mean:.4f} (n {r.images})",
                         ratio, low, high, r.p_random))
    return out


def _transfer_at_top(summaries: Summaries) -> pd.DataFrame:
    tr = _table(summaries, "transfer")
    return tr[_at(tr, "percent")] if len(tr) else tr


def judge_transfer(summaries: Summaries, sizes: Mapping[str, float]) -> list[Score]:
    """Claim 5a, per occluded model: the other models' maps whose drop at 1 % lies above its random baseline."""
    tr = _transfer_at_top(summaries)
    t = tr[tr["source_model"] != tr["target_model"]] if len(tr) else tr
    if t.empty:
        return _untestable(ALL, "no transfer between two models at 1 % (one model, or transfer switched off)")
    out = []
    for target, g in t.groupby("target_model", sort=False):
        base = float(g["random_mean"].iloc[0])
        if not math.isfinite(base):
            out += _untestable(target, "no random baseline at 1 % for the occluded model")
            continue
        lows = [_ci(r.drop_mean, _se(r.drop_std, r.drop_n))[0] for r in g.itertuples()]
        k, n = sum(low > base for low in lows), len(lows)
        out.append(Score(target, REPRODUCED if k == n else PARTLY if k else NOT_REPRODUCED,
                         f"{k} of {n} other models' maps lower its cosine more than {base:.4f}, its random baseline "
                         "(95 % CI above it); figure: their mean drop ÷ random", float(g["ratio_random"].mean())))
    return out


def judge_size(summaries: Summaries, sizes: Mapping[str, float]) -> list[Score]:
    """Claim 5b, across models: Spearman ρ of parameters with the mean drop at 1 % under every model's maps."""
    tr = _transfer_at_top(summaries)
    if tr.empty:
        return _untestable(ACROSS, "the run has no transfer at 1 % (one model, or transfer switched off)")
    drops = tr.groupby("target_model", sort=False)["drop_mean"].mean()
    known = [m for m in drops.index if sizes.get(m)]
    if len(known) < 5:
        return _untestable(ACROSS, f"model sizes known for {len(known)} of the run's models: no ordering of fewer "
                                   "than five reaches p < 0.05")
    rho, p = spearman([sizes[m] for m in known], [drops[m] for m in known])
    listing = ", ".join(f"{m} ({sizes[m] / 1e6:.1f} M) {drops[m]:.4f}" for m in known)
    return [Score(ACROSS, REPRODUCED if rho < 0 and p < ALPHA else NOT_REPRODUCED,
                  f"mean drop when occluded by every model's maps: {listing}", rho, p=p)]


def _gender_split(summaries: Summaries) -> pd.DataFrame | None:
    for name, table in summaries.items():
        if not (name.startswith("groups_") and name.endswith("_occlusion_drop")):
            continue
        if name.removeprefix("groups_").removesuffix("_occlusion_drop").strip().lower() in ("gender", "sex"):
            return table
    return None


def _sex(value: object) -> str | None:
    """"women" or "men" for a gender attribute's value (F/M, female/male, ...), else None."""
    v = str(value).strip().lower()
    return "women" if v in WOMEN else "men" if v in MEN else None


def judge_gender(summaries: Summaries, sizes: Mapping[str, float]) -> list[Score]:
    """Claim 6, per model: the drop at 1 % occlusion on women's photos − on men's, aggregate map."""
    split = _gender_split(summaries)
    if split is None or split.empty:
        return _untestable(ALL, "the data has no gender attribute (a manifest column gender or sex, F/M)")
    t = split[(split["layer"] == "aggregate") & (split["kind"] == "map") & _at(split, "percent")]
    out = []
    for model in dict.fromkeys(split["model"]):
        rows = [r for r in t[t["model"] == model].itertuples()
                if {_sex(r.group_a), _sex(r.group_b)} == {"women", "men"}]
        if not rows or min(rows[0].a_n, rows[0].b_n) < 2:
            out += _untestable(model, "no drop at 1 % over two or more photos each of women and men (F/M)")
            continue
        r = rows[0]
        a, b = (r.a_mean, r.a_std, r.a_n), (r.b_mean, r.b_std, r.b_n)
        (w, sw, nw), (m, sm, nm) = (a, b) if _sex(r.group_a) == "women" else (b, a)
        d, low, high = _diff(w, _se(sw, nw), m, _se(sm, nm))
        out.append(Score(model, REPRODUCED if d > 0 and r.p_value < ALPHA else NOT_REPRODUCED,
                         f"women {w:.4f} (n {nw}) vs men {m:.4f} (n {nm})", d, low, high, r.p_value))
    return out


CV_ABOVE = 0.8


def judge_variability(summaries: Summaries, sizes: Mapping[str, float]) -> list[Score]:
    """Claim 7, per model: the region whose mean within-person CV (top 1 % share) has the highest CI."""
    per = _table(summaries, "regions_identity", [("layer", "==", "aggregate"), ("measure", "==", "share")])
    t = per[(per["layer"] == "aggregate") & (per["measure"] == "share") & _at(per)] if len(per) else per
    t = t[np.isfinite(pd.to_numeric(t["cv"], errors="coerce"))] if len(t) else t
    if t.empty:
        return _untestable(ALL, "no identity with two or more photos and a share of the top 1 % pixels")
    out = []
    for model, g in t.groupby("model", sort=False):
        cv = g.groupby("class", sort=False)["cv"].agg(["mean", "std", "count"])
        cv = cv[cv["count"] >= 2]
        if cv.empty:
            out += _untestable(model, "fewer than two identities with a CV in any region")
            continue
        cv["low"] = cv["mean"] - Z * cv["std"] / np.sqrt(cv["count"])
        best = cv["low"].idxmax()
        above = list(cv.index[cv["low"] > CV_ABOVE])
        r = cv.loc[best]
        out.append(Score(model, REPRODUCED if above else NOT_REPRODUCED,
                         f"{best}: mean CV {r['mean']:.0%} over {int(r['count'])} identities; regions with a CI above "
                         f"80 %: {', '.join(map(str, above)) or 'none'}", r["mean"], r["low"],
                         r["mean"] + Z * r["std"] / math.sqrt(r["count"])))
    return out


def judge_hair(summaries: Summaries, sizes: Mapping[str, float]) -> list[Score]:
    """Claim 8, per model: hair's share of the top 1 % pixels, the earliest third of the layers − the later ones."""
    shares = _shares(summaries)
    hair = shares[(shares["class"] == "hair") & (shares["layer"] != "aggregate")] if len(shares) else shares
    if hair.empty:
        return _untestable(ALL, "the run's face parser labels no hair (e.g. --parser landmarks; bisenet does)")
    out = []
    for model in dict.fromkeys(shares["model"]):
        rows = hair[hair["model"] == model]  # layers in forward order, as the summaries keep them
        if len(rows) < 2:
            out += _untestable(model, "fewer than two single layers with a hair share")
            continue
        k = math.ceil(len(rows) / 3)
        parts = [(g["mean"].mean(), math.sqrt(sum(_se(s, n) ** 2 for s, n in zip(g["std"], g["images"]))) / len(g))
                 for g in (rows.iloc[:k], rows.iloc[k:])]
        d, low, high = _diff(*parts[0], *parts[1])
        if not math.isfinite(low):
            out += _untestable(model, "fewer than two photos in a layer's hair share")
            continue
        out.append(Score(model, REPRODUCED if low > 0 else NOT_REPRODUCED,
                         f"hair's share of the top 1 %: earliest {k} layer(s) ({', '.join(rows['layer'].iloc[:k])}) "
                         f"{parts[0][0]:.1%} vs the {len(rows) - k} later {parts[1][0]:.1%}", d, low, high))
    return out
