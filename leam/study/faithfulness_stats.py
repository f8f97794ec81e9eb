"""Statistics of a study's faithfulness phase, from its tables only (``faithfulness``, ``specificity``):
per-photo curve areas and pixels to un-match, rankings best first, the default map against the baselines,
person-specificity, and one plain sentence per model.

A ranking is (method, map, objective) (``leam.study.faithfulness``). Deletion: a lower area (the cosine
falls sooner) and fewer pixels to un-match mean a more faithful ranking; insertion: a higher area.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leam.metrics.faithfulness import curve_auc, pixels_to_unmatch
from leam.metrics.paired import holm, paired_comparison
from leam.study.scan import Scan, as_scan, per_chunk

RANKING = ["method", "map", "objective"]
PHOTO = ["model", "identity", "image"]
CURVE_KEYS = ["model", "fill", "direction", *RANKING, "fraction"]
BASELINES = ("random", "random_face", "centre_prior", "population_prior")
ALPHA = 0.05
# person-specificity: (better if person-specific, than) on the same photos
SPECIFICITY_PAIRS = (("default", "other_person"), ("default", "population_prior"),
                     ("consensus", "other_person"), ("consensus", "population_prior"))


def ranking_label(method: str, map_name: str = "", objective: str = "") -> str:
    """A ranking as people read it: ``leam mean``, ``gradcam early (similarity)``, ``random_face``."""
    text = " ".join(t for t in (method, map_name) if t and t != "aggregate")
    return f"{text} (similarity)" if objective == "similarity" else text


def per_photo(faithfulness: pd.DataFrame) -> pd.DataFrame:
    """One row per photo, ranking, fill and direction: ``auc`` (``curve_auc``), and for deletion ``drop`` (the
    cosine at fraction 0 less the area: the mean fall of the cosine along the curve, comparable across photos
    that start apart) and ``unmatch`` (the fraction of pixels whose deletion makes the pair fail verification)
    with ``censored`` (never failed up to the last fraction)."""
    keys = [*PHOTO, *RANKING, "fill", "direction"]
    if faithfulness is None or faithfulness.empty:
        return pd.DataFrame(columns=[*keys, "auc", "drop", "unmatch", "censored"])
    table = faithfulness.sort_values([*keys, "fraction"], kind="stable")
    rows = []
    for key, g in table.groupby(keys, sort=False, dropna=False):
        fractions, cos = g["fraction"].to_numpy(float), g["cosine"].to_numpy(float)
        row = dict(zip(keys, key))
        row["auc"] = curve_auc(fractions, cos)
        if row["direction"] == "deletion":
            row["drop"] = cos[0] - row["auc"] if fractions[0] == 0 else np.nan
            row["unmatch"], row["censored"] = pixels_to_unmatch(fractions, g["match"].to_numpy(bool))
        else:
            row["drop"], row["unmatch"], row["censored"] = np.nan, np.nan, False
        rows.append(row)
    return pd.DataFrame(rows)


def ranking_summary(photos: pd.DataFrame) -> pd.DataFrame:
    """Per model, fill, direction and ranking: photos, mean area with a 95 % interval (± 1.96 standard errors),
    and for deletion the median pixels to un-match and the share censored; best first within each group."""
    if photos.empty:
        return pd.DataFrame()
    g = photos.groupby(["model", "fill", "direction", *RANKING], sort=False)
    out = g.agg(photos=("auc", "count"), auc=("auc", "mean"), auc_sd=("auc", "std"),
                unmatch_median=("unmatch", "median"), censored=("censored", "mean")).reset_index()
    half = 1.96 * out["auc_sd"].fillna(0) / np.sqrt(out["photos"].clip(lower=1))
    out["auc_low"], out["auc_high"] = out["auc"] - half, out["auc"] + half
    out["ranking"] = [ranking_label(m, n, o) for m, n, o in out[RANKING].itertuples(index=False)]
    out["order"] = np.where(out["direction"] == "deletion", out["auc"], -out["auc"])
    out = out.sort_values(["model", "fill", "direction", "order"], kind="stable").drop(columns=["order", "auc_sd"])
    out["rank"] = out.groupby(["model", "fill", "direction"]).cumcount() + 1
    return out.reset_index(drop=True)


def _paired(photos: pd.DataFrame, a: str, b: str, value: str, direction: str = "deletion") -> dict:
    """``paired_comparison`` of ``value`` between rankings ``a`` and ``b`` (method names) on the same photos."""
    sel = photos[photos["direction"] == direction]
    left = sel[sel["method"] == a].set_index(PHOTO)[value]
    right = sel[sel["method"] == b].set_index(PHOTO)[value]
    both = pd.concat([left.rename("a"), right.rename("b")], axis=1, join="inner").dropna()
    return paired_comparison(both["a"].to_numpy(float), both["b"].to_numpy(float), rng=np.random.default_rng(0))


def versus_baselines(photos: pd.DataFrame, ranking: str = "default") -> pd.DataFrame:
    """Per model and fill: the ``ranking``'s deletion area against each baseline's on the same photos (a
    negative difference: the ranking's pixels matter more), with the Wilcoxon p and a bootstrap 95 % CI."""
    rows = []
    for (model, fill), g in photos.groupby(["model", "fill"], sort=False):
        for base in BASELINES:
            if base in set(g["method"]) and ranking in set(g["method"]):
                rows.append({"model": model, "fill": fill, "ranking": ranking, "baseline": base,
                             **_paired(g, ranking, base, "auc")})
    return pd.DataFrame(rows)


# the aggregates a default could be: ``leam.maps.AGGREGATIONS``, copied (the report's modules import no torch)
AGGREGATE_MAPS = ("mean", "max", "early")


def aggregates_versus(photos: pd.DataFrame) -> pd.DataFrame:
    """Per model and fill: each LEAM aggregate map (``AGGREGATE_MAPS`` in both objectives) against the run's own
    map (``default``) and each baseline, deletion area on the same photos (a negative difference: the aggregate's
    pixels matter more): the evidence for choosing a default map."""
    rows = []
    deletion = photos[photos["direction"] == "deletion"]
    for (model, fill), g in deletion.groupby(["model", "fill"], sort=False):
        others = g[g["method"].isin(("default", *BASELINES))]
        versus = list(dict.fromkeys(others["method"]))
        for name in AGGREGATE_MAPS:
            for objective in ("loss", "similarity"):
                mine = g[(g["method"] == "leam") & (g["map"] == name) & (g["objective"] == objective)]
                if mine.empty:
                    continue
                label = ranking_label("leam", name, objective)
                both = pd.concat([mine.assign(method=label), others])
                rows += [{"model": model, "fill": fill, "ranking": label, "versus": b,
                          **_paired(both, label, b, "auc")} for b in versus]
    return pd.DataFrame(rows)


def specificity(photos: pd.DataFrame) -> pd.DataFrame:
    """Person-specificity by deletion: per model and fill, each pair of ``SPECIFICITY_PAIRS`` compared on the
    deletion area and on pixels to un-match (paired, same photos)."""
    rows = []
    for (model, fill), g in photos.groupby(["model", "fill"], sort=False):
        for a, b in SPECIFICITY_PAIRS:
            if not {a, b} <= set(g["method"]):
                continue
            for value in ("auc", "unmatch"):
                rows.append({"model": model, "fill": fill, "a": a, "b": b, "measure": value,
                             **_paired(g, a, b, value)})
    return pd.DataFrame(rows)


def consensus_share(photos: pd.DataFrame) -> pd.DataFrame:
    """Per model and fill: the share of identities whose consensus map's deletion area (mean over their
    scored photos) is below the population prior's."""
    sel = photos[(photos["direction"] == "deletion") & photos["method"].isin(["consensus", "population_prior"])]
    if sel.empty:
        return pd.DataFrame(columns=["model", "fill", "identities", "consensus_better"])
    per = sel.groupby(["model", "fill", "identity", "method"])["auc"].mean().unstack("method").dropna()
    better = (per["consensus"] < per["population_prior"]).groupby(["model", "fill"])
    return pd.DataFrame({"identities": better.size(), "consensus_better": better.mean()}).reset_index()


def specificity_bc(table: pd.DataFrame) -> pd.DataFrame:
    """The Bhattacharyya reading: per model and threshold, the mean BC of each photo's default map with the
    person's consensus, the population prior and another person's map, and the paired test of consensus vs
    population prior (a positive difference: the consensus is closer)."""
    if table is None or table.empty:
        return pd.DataFrame()
    rows = []
    for (model, threshold), g in table.groupby(["model", "threshold"], sort=False, dropna=False):
        wide = g.pivot_table(index=PHOTO, columns="versus", values="bc")
        row = {"model": model, "threshold": threshold}
        for col in ("consensus", "population_prior", "other_person"):
            row[f"bc_{col}"] = wide[col].mean() if col in wide else np.nan
        if {"consensus", "population_prior"} <= set(wide):
            both = wide[["consensus", "population_prior"]].dropna()
            test = paired_comparison(both["consensus"].to_numpy(float), both["population_prior"].to_numpy(float),
                                     rng=np.random.default_rng(0))
            row.update({f"consensus_vs_prior_{k}": v for k, v in test.items()})
        rows.append(row)
    return pd.DataFrame(rows)


# the specific map's validation: (test, a, b, measure, a better when a − b is …) on the same left-out photos
SPECIFIC_TESTS = (
    ("beats the population prior", "specific", "population_prior", "auc", "negative"),  # deletion falls sooner
    ("identity-specific", "specific", "specific_other", "drop", "positive"),  # falls more for this person
)


def specific_validation(photos: pd.DataFrame) -> pd.DataFrame:
    """Per test of ``SPECIFIC_TESTS``, model and fill: the paired comparison on the photos left out of their
    person's consensus, with Holm's correction over the model × fill cells of the test (``p_holm``) and
    ``holds``: the difference has the better sign and p_holm < ``ALPHA``."""
    rows = []
    for test, a, b, measure, sign in SPECIFIC_TESTS:
        cells = []
        for (model, fill), g in photos.groupby(["model", "fill"], sort=False):
            if {a, b} <= set(g["method"]):
                cells.append({"test": test, "model": model, "fill": fill, "a": a, "b": b, "measure": measure,
                              "better": sign, **_paired(g, a, b, measure)})
        if cells:
            adjusted = holm([c["p_wilcoxon"] for c in cells])
            for c, p in zip(cells, adjusted):
                right = c["mean_diff"] < 0 if sign == "negative" else c["mean_diff"] > 0
                rows.append({**c, "p_holm": p, "holds": bool(right and p < ALPHA)})
    return pd.DataFrame(rows)


SPECIFIC_METHODS = tuple(dict.fromkeys(m for _, a, b, _, _ in SPECIFIC_TESTS for m in (a, b)))


def specific_validation_of(faithfulness: pd.DataFrame | Scan | None) -> pd.DataFrame:
    """``specific_validation`` of a run's ``faithfulness`` table (a frame or a scan), reading only the deletion
    rows of the rankings it compares: the same table as the report's ``faithfulness_specific``."""
    if faithfulness is None or (scan := as_scan(faithfulness)).empty:
        return specific_validation(pd.DataFrame(columns=[*PHOTO, "method", "fill"]))
    photos = per_chunk(scan, PHOTO, lambda chunk: per_photo(chunk[chunk["method"].isin(SPECIFIC_METHODS)]),
                       where={"direction": "deletion"}, sort=True)
    return specific_validation(photos)


def specific_verdicts(validation: pd.DataFrame) -> dict[str, str]:
    """One plain sentence per model: under which fills the specific map passes both tests (Holm-corrected)."""
    out = {}
    if validation is None or validation.empty:
        return out
    cells = int(validation.groupby("test").size().max())
    for model, g in validation.groupby("model", sort=False):
        every = list(dict.fromkeys(g["fill"]))
        passed = [f for f in every if g[(g["fill"] == f)]["holds"].sum() == len(SPECIFIC_TESTS)]
        said = "; ".join(f"{test} {_fills_said(list(g[(g['test'] == test) & g['holds']]['fill']), every)}"
                         for test in dict.fromkeys(g["test"]))
        head = (f"the specific map is validated {_fills_said(passed, every)}" if passed
                else "the specific map is not validated: do not read it as what sets this person apart")
        out[model] = (f"{model}: {head} ({said}; paired Wilcoxon on left-out photos, Holm-corrected over the "
                      f"{cells} model × fill cells of each test, p < {ALPHA}).")
    return out


def _won_in(table: pd.DataFrame) -> pd.Series:
    """Rows where the first ranking's deletion area is lower than the second's with Wilcoxon p < ``ALPHA``."""
    return (table["mean_diff"] < 0) & (table["p_wilcoxon"] < ALPHA)


def _fills_said(fills: list[str], every: list[str]) -> str:
    if len(fills) == len(every):
        return "under every fill"
    return f"under {', '.join(fills)} only" if fills else "under no fill"


def verdicts(against: pd.DataFrame, specific: pd.DataFrame) -> dict[str, str]:
    """One plain sentence per model: which baselines its default map beats under every fill (deletion area,
    paired Wilcoxon p < ``ALPHA``) and under which fills the others, and whether its maps are person-specific
    (the own map and the consensus beat another person's map and the population prior under every fill)."""
    out = {}
    for model in dict.fromkeys([*against.get("model", []), *specific.get("model", [])]):
        parts = []
        a = against[against["model"] == model] if len(against) else against
        if len(a):
            every = list(dict.fromkeys(a["fill"]))
            won = a[_won_in(a)]
            by_base = {b: list(won[won["baseline"] == b]["fill"]) for b in dict.fromkeys(a["baseline"])}
            always = [b for b, f in by_base.items() if len(f) == len(every)]
            rest = [f"{b} {_fills_said(f, every)}" for b, f in by_base.items() if len(f) < len(every)]
            if not rest:
                parts.append(f"its default map beats all {len(always)} baselines under every fill")
            else:
                head = f"its default map beats {', '.join(always)} under every fill" if always else \
                    "its default map beats no baseline under every fill"
                parts.append(f"{head} (beats {'; '.join(rest)})")
        s = specific[(specific["model"] == model) & (specific["measure"] == "auc")] if len(specific) else specific
        if len(s):
            every = list(dict.fromkeys(s["fill"]))
            won = s[_won_in(s)]
            pairs = {(r.a, r.b) for r in s.itertuples()}
            said = [f"{x} beats {y} {_fills_said(list(won[(won['a'] == x) & (won['b'] == y)]['fill']), every)}"
                    for x, y in SPECIFICITY_PAIRS if (x, y) in pairs]
            if len(won) == len(s):
                parts.append("its maps are person-specific: the own map and the person's consensus beat another "
                             "person's map and the population prior under every fill")
            else:
                parts.append(f"person-specificity not shown ({'; '.join(said)})")
        out[model] = f"{model}: " + "; ".join(parts) + f" (deletion area, paired Wilcoxon p < {ALPHA})." if parts \
            else f"{model}: no faithfulness rows."
    return out


def mean_curves(faithfulness: pd.DataFrame) -> pd.DataFrame:
    """Per model, fill, direction, ranking and fraction: photos, mean cosine with a 95 % band (± 1.96
    standard errors) and the share of pairs still matching."""
    if faithfulness is None or faithfulness.empty:
        return pd.DataFrame()
    g = faithfulness.groupby(CURVE_KEYS, sort=False)
    out = g.agg(photos=("cosine", "count"), cosine=("cosine", "mean"), sd=("cosine", "std"),
                match=("match", "mean")).reset_index()
    half = 1.96 * out["sd"].fillna(0) / np.sqrt(out["photos"].clip(lower=1))
    out["low"], out["high"] = out["cosine"] - half, out["cosine"] + half
    out["ranking"] = [ranking_label(m, n, o) for m, n, o in out[RANKING].itertuples(index=False)]
    return out.drop(columns="sd")


def summarise(faithfulness: pd.DataFrame | Scan | None, specificity_table: pd.DataFrame | None
              ) -> dict[str, pd.DataFrame]:
    """The report's faithfulness summaries by name (``faithfulness_*``); none without faithfulness rows. The
    faithfulness table may be a scan (``leam.study.scan``): read a chunk of whole photos (whole curves) at a
    time."""
    if faithfulness is None or (scan := as_scan(faithfulness)).empty:
        return {}
    photos = per_chunk(scan, PHOTO, per_photo, sort=True)  # per_photo orders photos by their keys
    curves = per_chunk(scan, CURVE_KEYS, mean_curves)
    out = {"faithfulness_curves": curves, "faithfulness_photos": photos,
           "faithfulness_rankings": ranking_summary(photos), "faithfulness_baselines": versus_baselines(photos),
           "faithfulness_specificity": specificity(photos), "faithfulness_consensus": consensus_share(photos),
           "faithfulness_candidates": default_candidates(photos), "faithfulness_aggregates": aggregates_versus(photos),
           "faithfulness_specific": specific_validation(photos)}
    if specificity_table is not None and not specificity_table.empty:
        out["faithfulness_bc"] = specificity_bc(specificity_table)
    return out


def conservative_fill(photos: pd.DataFrame, model: str) -> str | None:
    """The fill under which deleting random pixels lowers the model's cosine least (the highest deletion area of
    the ``random`` baseline): the fill that disturbs the model least by itself, so the one whose results owe
    least to out-of-distribution artefacts."""
    sel = photos[(photos["model"] == model) & (photos["method"] == "random") & (photos["direction"] == "deletion")]
    if sel.empty:
        return None
    return str(sel.groupby("fill")["auc"].mean().idxmax())


def default_candidates(photos: pd.DataFrame) -> pd.DataFrame:
    """Per model, under the reference study's black fill and the most conservative fill (``conservative_fill``):
    the LEAM ranking with the lowest mean deletion area, and how it compares with the default on the same
    photos (paired; a negative difference: the candidate's pixels matter more)."""
    rows = []
    deletion = photos[(photos["direction"] == "deletion") & (photos["method"] == "leam")]
    for model in dict.fromkeys(photos["model"]):
        fills = list(dict.fromkeys(f for f in ("black", conservative_fill(photos, model)) if f is not None))
        for fill in fills:
            sel = deletion[(deletion["model"] == model) & (deletion["fill"] == fill)]
            if sel.empty:
                continue
            means = sel.groupby(["map", "objective"])["auc"].mean().sort_values()
            map_name, objective = means.index[0]
            best = sel[(sel["map"] == map_name) & (sel["objective"] == objective)].set_index(PHOTO)["auc"]
            base = photos[(photos["model"] == model) & (photos["fill"] == fill) & (photos["direction"] == "deletion")
                          & (photos["method"] == "default")].set_index(PHOTO)["auc"]
            both = pd.concat([best.rename("a"), base.rename("b")], axis=1, join="inner").dropna()
            test = paired_comparison(both["a"].to_numpy(float), both["b"].to_numpy(float), rng=np.random.default_rng(0))
            rows.append({"model": model, "fill": fill, "conservative": fill != "black" or len(fills) == 1,
                         "best": ranking_label("leam", map_name, objective), "best_auc": means.iloc[0],
                         "default_auc": float(both["b"].mean()) if len(both) else np.nan,
                         **{f"vs_default_{k}": v for k, v in test.items()}})
    return pd.DataFrame(rows)
