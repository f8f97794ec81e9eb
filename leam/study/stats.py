"""Statistics over a study's tables: pure functions, DataFrames in, DataFrames out.

Each summary groups a table (as ``leam.study.run`` writes it) by its natural keys, optionally by
extra columns ``by`` (e.g. an image attribute joined with ``with_attribute``), and keeps the groups
in the order they first appear (models as configured, layers in forward order, "aggregate" last).

>>> summary = similarity_summary(tables["pairs"])            # doctest: +SKIP
>>> summary.query("layer == 'aggregate' and threshold == 1 and metric == 'bc'")  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import math
import re
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from leam.metrics.regions import identity_summary
from leam.study.scan import Scan, as_scan, per_chunk

SIMILARITY_METRICS = ("bc", "emd")
OCCLUSION_KINDS = ("map", "random", "random_face")
FAILURE_COLUMNS = ["model", "stage", "reason", "count"]


# ----------------------------------------------------------------------------------------- tests


def _finite(values) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    return v[np.isfinite(v)]


def mann_whitney(a, b) -> tuple[float, float]:
    """Two-sided Mann–Whitney U test of two samples (NaNs dropped): (U of ``a``, p-value); NaNs when
    a sample is empty."""
    a, b = _finite(a), _finite(b)
    if not len(a) or not len(b):
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all values equal: p is NaN, said as such
        r = stats.mannwhitneyu(a, b, alternative="two-sided")
    return float(r.statistic), float(r.pvalue)


def wilcoxon_paired(x, y) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired samples (pairs with a NaN dropped); NaN when
    no pair differs."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if not np.any(x != y):
        return math.nan
    return float(stats.wilcoxon(x, y, alternative="two-sided").pvalue)


def _describe(values, prefix: str) -> dict:
    v = _finite(values)
    return {
        f"{prefix}_mean": float(v.mean()) if len(v) else math.nan,
        f"{prefix}_std": float(v.std(ddof=1)) if len(v) > 1 else math.nan,
        f"{prefix}_n": int(len(v)),
    }


def _ratio(a: float, b: float) -> float:
    """a / b; NaN when b is not positive (a ratio to a zero or negative baseline says nothing)."""
    return a / b if b > 0 else math.nan


def _groups(table: pd.DataFrame, keys: Sequence[str]):
    """(key dict, rows) per group, in order of first appearance, NaN keys kept (NaN threshold = full map)."""
    for key, rows in table.groupby(list(keys), sort=False, dropna=False):
        yield dict(zip(keys, key if isinstance(key, tuple) else (key,))), rows


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame(columns=list(columns))


# ------------------------------------------------------------------------------ map similarity


def similarity_summary(pairs: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """Per model, layer, threshold (NaN: the full map) and metric ("bc", "emd"): mean, std and count
    over same-identity and different-identity pairs, the difference (same − different) and a two-sided
    Mann–Whitney U test of the two distributions. Metrics never computed for a layer are left out."""
    keys = ["model", "layer", "threshold", *by]
    columns = [*keys, "metric", "same_mean", "same_std", "same_n", "different_mean", "different_std",
               "different_n", "difference", "u", "p_value"]
    if pairs.empty:
        return _empty(columns)
    rows = []
    for key, g in _groups(pairs, keys):
        same, different = g[g["kind"] == "same"], g[g["kind"] == "different"]
        for metric in SIMILARITY_METRICS:
            if metric not in g or not np.isfinite(g[metric].to_numpy(dtype=np.float64)).any():
                continue
            row = {**key, "metric": metric, **_describe(same[metric], "same"),
                   **_describe(different[metric], "different")}
            row["difference"] = row["same_mean"] - row["different_mean"]
            row["u"], row["p_value"] = mann_whitney(same[metric], different[metric])
            rows.append(row)
    return pd.DataFrame(rows, columns=columns)


# ----------------------------------------------------------------------------------- occlusion


def occlusion_per_image(occlusion: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """One row per model, layer, percent and image with a column of drops per kind (map, random, ...), in order
    of first appearance."""
    index = ["model", "layer", "percent", *by, "identity", "image"]
    # dropna=False would reindex onto the product of every key's values (models × percents × identities ×
    # images: 1.9 GB for one chunk of the 5-model LFW run) before dropping the empty rows again
    wide = occlusion.pivot_table(index=index, columns="kind", values="drop", sort=False, dropna=True)
    wide = wide.dropna(how="all").reset_index()
    wide.columns.name = None
    for kind in OCCLUSION_KINDS:
        if kind not in wide:
            wide[kind] = math.nan
    return wide


def occlusion_summary(occlusion: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """Per model, layer and percent: mean drop of cosine similarity when the map's top pixels are
    blacked out ("map") vs as many random pixels ("random") and random pixels in the face
    ("random_face"); the ratios map/random and map/random_face (NaN when the baseline is not
    positive); two-sided Wilcoxon signed-rank tests of map vs each baseline, paired per image."""
    keys = ["model", "layer", "percent", *by]
    columns = [*keys, "images", "map_mean", "map_std", "random_mean", "random_std", "random_face_mean",
               "random_face_std", "ratio_random", "ratio_random_face", "p_random", "p_random_face"]
    if occlusion.empty:
        return _empty(columns)
    rows = []
    for key, g in _groups(occlusion_per_image(occlusion, by), keys):
        row = {**key, "images": int(g["map"].notna().sum())}
        for kind in OCCLUSION_KINDS:
            d = _describe(g[kind], kind)
            row[f"{kind}_mean"], row[f"{kind}_std"] = d[f"{kind}_mean"], d[f"{kind}_std"]
        row["ratio_random"] = _ratio(row["map_mean"], row["random_mean"])
        row["ratio_random_face"] = _ratio(row["map_mean"], row["random_face_mean"])
        row["p_random"] = wilcoxon_paired(g["map"], g["random"])
        row["p_random_face"] = wilcoxon_paired(g["map"], g["random_face"])
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


# ------------------------------------------------------------------------------------ transfer


def transfer_summary(transfer: pd.DataFrame, baselines: pd.DataFrame | None = None,
                     by: Sequence[str] = ()) -> pd.DataFrame:
    """Per source model (whose maps), target model (whose input is occluded) and percent: mean drop
    (diagonal included), std and count; with ``baselines`` (``random_baselines`` of the occlusion table),
    the target's random baselines at that percent and the ratio of the mean drop to them."""
    keys = ["source_model", "target_model", "percent", *by]
    columns = [*keys, "drop_mean", "drop_std", "drop_n", "random_mean", "random_face_mean", "ratio_random",
               "ratio_random_face"]
    if transfer.empty:
        return _empty(columns)
    rows = [{**key, **_describe(g["drop"], "drop")} for key, g in _groups(transfer, keys)]
    out = pd.DataFrame(rows)
    if baselines is not None and len(baselines):
        out = out.merge(baselines, how="left", left_on=["target_model", "percent", *by],
                        right_on=["model", "percent", *by]).drop(columns="model")
    for kind in ("random", "random_face"):
        if f"{kind}_mean" not in out:
            out[f"{kind}_mean"] = math.nan
        out[f"ratio_{kind}"] = [_ratio(a, b) for a, b in zip(out["drop_mean"], out[f"{kind}_mean"])]
    return out[columns]


BASELINE_KEYS = ["model", "percent"]


def random_baselines(occlusion: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """Per model and percent: the mean drop of the random baselines ("random_mean", "random_face_mean") of
    the aggregate map's occlusion rows (every row when the table has no layer column)."""
    occ = occlusion[occlusion["layer"] == "aggregate"] if "layer" in occlusion else occlusion
    keys = [*BASELINE_KEYS, *by]
    occ = occ[occ["kind"].isin(["random", "random_face"])]
    if occ.empty:
        return _empty(keys)
    base = occ.pivot_table(index=keys, columns="kind", values="drop", aggfunc="mean", sort=False)
    base.columns = [f"{c}_mean" for c in base.columns]
    return base.reset_index()


def transfer_matrix(summary: pd.DataFrame, percent: float, value: str = "drop_mean") -> pd.DataFrame:
    """Source models × target models of ``value`` at one percent (from ``transfer_summary``)."""
    t = summary[np.isclose(summary["percent"].astype(float), percent)]
    models = list(dict.fromkeys([*t["source_model"], *t["target_model"]]))
    m = t.pivot_table(index="source_model", columns="target_model", values=value, sort=False, dropna=False)
    return m.reindex(index=models, columns=models).rename_axis(index="source \\ target", columns=None)


# --------------------------------------------------------------------------------- face regions


def region_summary(regions: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """Per model, layer, class, measure ("share" per threshold, "mass" with threshold NaN): mean, std
    and count over images."""
    keys = ["model", "layer", "class", "measure", "threshold", *by]
    columns = [*keys, "mean", "std", "images"]
    if regions.empty:
        return _empty(columns)
    rows = []
    for key, g in _groups(regions, keys):
        d = _describe(g["value"], "v")
        rows.append({**key, "mean": d["v_mean"], "std": d["v_std"], "images": d["v_n"]})
    return pd.DataFrame(rows, columns=columns)


def share_table(summary: pd.DataFrame, model: str, threshold: float | None, measure: str = "share") -> pd.DataFrame:
    """Layers × classes of mean shares at one threshold (``measure="mass"``: threshold ``None``), as the
    reference study tabulates them; from ``region_summary``."""
    t = summary[(summary["model"] == model) & (summary["measure"] == measure)]
    t = t[t["threshold"].isna()] if threshold is None else t[np.isclose(t["threshold"].astype(float), threshold)]
    return t.pivot_table(index="layer", columns="class", values="mean", sort=False).rename_axis(columns=None)


def identity_variability(regions: pd.DataFrame) -> pd.DataFrame:
    """Per model and identity (``leam.metrics.regions.identity_summary``): mean, std and coefficient of
    variation of every region measure over the identity's photos; identities in order of first appearance
    (as every summary here), each identity's rows as ``identity_summary`` orders them."""
    frames = []
    for m, g in regions.groupby("model", sort=False):
        per = identity_summary(g)
        first = {name: i for i, name in enumerate(pd.unique(g["identity"]))}
        order = np.argsort(per["identity"].map(first).to_numpy(), kind="stable")
        frames.append(per.iloc[order].assign(model=m))
    if not frames:
        return _empty(["model", "identity", "layer", "class", "measure", "threshold", "images", "mean", "std", "cv"])
    out = pd.concat(frames, ignore_index=True)
    return out[["model", *[c for c in out.columns if c != "model"]]]


def variability_summary(per_identity: pd.DataFrame) -> pd.DataFrame:
    """Per model, layer, class, measure and threshold: mean and median coefficient of variation over
    the identities that have one (from ``identity_variability``)."""
    keys = ["model", "layer", "class", "measure", "threshold"]
    rows = []
    for key, g in _groups(per_identity, keys):
        cv = _finite(g["cv"])
        rows.append({**key, "cv_mean": float(cv.mean()) if len(cv) else math.nan,
                     "cv_median": float(np.median(cv)) if len(cv) else math.nan, "identities": int(len(cv))})
    return pd.DataFrame(rows, columns=[*keys, "cv_mean", "cv_median", "identities"])


# -------------------------------------------------------------------------------------- groups


def attribute_names(images: pd.DataFrame) -> list[str]:
    """The image attributes of a run (columns ``attr_<name>`` of the images table): their names."""
    return [c.removeprefix("attr_") for c in images.columns if c.startswith("attr_")]


def with_attribute(table: pd.DataFrame, images: pd.DataFrame, name: str) -> pd.DataFrame:
    """``table`` with a column ``attr_<name>`` looked up from the images table by identity and image.

    A pairs table (``image_a``, ``image_b``) gets the value both images share; a pair whose images
    differ in it gets NaN (it belongs to no group). Rows without the attribute, or with a blank value (an
    empty cell of the manifest: unknown), get NaN.
    """
    col = f"attr_{name}"
    if col not in images:
        raise KeyError(f"expected an image attribute {name!r}; the run has {attribute_names(images)}")
    lookup = images.drop_duplicates(["identity", "image"]).set_index(["identity", "image"])[col]
    lookup = lookup.where(lookup.isna() | (lookup.astype(str).str.strip() != ""))
    out = table.copy()
    if "image_a" in table:
        a = lookup.reindex(pd.MultiIndex.from_arrays([table["identity_a"], table["image_a"]])).to_numpy()
        b = lookup.reindex(pd.MultiIndex.from_arrays([table["identity_b"], table["image_b"]])).to_numpy()
        out[col] = np.where(pd.notna(a) & (a == b), a, None)
    else:
        out[col] = lookup.reindex(pd.MultiIndex.from_arrays([table["identity"], table["image"]])).to_numpy()
    return out


def group_split(table: pd.DataFrame, value: str, group: str, keys: Sequence[str]) -> pd.DataFrame:
    """For each ``keys`` group and each two values ``a`` < ``b`` of column ``group``: mean, std and
    count of ``value`` in each, the difference (a − b) and a two-sided Mann–Whitney U test."""
    columns = [*keys, "group_a", "group_b", "a_mean", "a_std", "a_n", "b_mean", "b_std", "b_n", "difference",
               "u", "p_value"]
    t = table[table[group].notna()] if group in table else table.iloc[0:0]
    rows = []
    for key, g in _groups(t, keys) if len(t) else ():
        samples = {v: s[value] for v, s in g.groupby(group, sort=True)}
        for a, b in itertools.combinations(samples, 2):
            row = {**key, "group_a": a, "group_b": b, **_describe(samples[a], "a"), **_describe(samples[b], "b")}
            row["difference"] = row["a_mean"] - row["b_mean"]
            row["u"], row["p_value"] = mann_whitney(samples[a], samples[b])
            rows.append(row)
    return pd.DataFrame(rows, columns=columns)


SPLITS = (  # statistic, table, value, keys
    ("occlusion drop", "occlusion", "drop", ["model", "layer", "percent", "kind"]),
    ("transfer drop", "transfer", "drop", ["source_model", "target_model", "percent"]),
    *((f"pairs {metric}", "pairs", metric, ["model", "layer", "threshold", "kind"]) for metric in SIMILARITY_METRICS),
    ("region share", "regions", "value", ["model", "layer", "class", "measure", "threshold"]),
)
PAIR_IMAGES = ["identity_a", "image_a", "identity_b", "image_b"]


def group_splits(tables: Mapping[str, pd.DataFrame | Scan], name: str) -> dict[str, pd.DataFrame]:
    """Every statistic split by the image attribute ``name``: occlusion drops, transfer drops, BC and
    EMD of pairs (pairs within one group), region shares and masses. {statistic: ``group_split``}. The
    tables may be frames or scans (``leam.study.scan``): a scan is read a chunk of whole groups at a time."""
    images = tables["images"]
    images = images if isinstance(images, pd.DataFrame) else images.frame()
    col, out = f"attr_{name}", {}
    for statistic, table, value, keys in SPLITS:
        if table not in tables or (scan := as_scan(tables[table])).empty or value not in scan.columns:
            continue
        where = [*PAIR_IMAGES] if table == "pairs" else ["identity", "image"]
        def one(t: pd.DataFrame, value: str = value, keys: list[str] = keys) -> pd.DataFrame:
            return group_split(with_attribute(t, images, name), value, col, keys)

        split = per_chunk(scan, keys, one, columns=[*keys, *where, value])
        out[statistic] = split[split["a_n"] + split["b_n"] > 0] if table == "pairs" else split
    return out


# ------------------------------------------------------------------------------------ failures


def failure_counts(failures: pd.DataFrame) -> pd.DataFrame:
    """Failures per model, stage and reason (the photo's own name taken out of the reason, so that
    photos failing alike are counted together), most frequent first."""
    if failures.empty:
        return _empty(FAILURE_COLUMNS)
    reasons = [_general_reason(str(r), str(i)) for r, i in zip(failures["reason"], failures["image"])]
    t = failures.assign(reason=reasons)
    counts = t.groupby(["model", "stage", "reason"], sort=False).size().rename("count").reset_index()
    return counts.sort_values(["model", "count"], ascending=[True, False], kind="stable").reset_index(drop=True)


def _general_reason(reason: str, image: str) -> str:
    """'…/Ann/Ann_0002.jpg: no face found' → 'no face found'; the photo's name elsewhere, box coordinates and
    counts of inputs ('3 of 64 inputs') → '…'."""
    if image and image in reason:
        before, after = reason.split(image, 1)
        at_start = " " not in before and after.startswith(":")  # '<path of the photo>: why'
        reason = after.lstrip(": ") if at_start else reason.replace(image, "…")
    reason = re.sub(r"\b\d+ of \d+ inputs\b", "… inputs", reason)
    return re.sub(r"\(\d+,\d+,\d+,\d+\)(, \(\d+,\d+,\d+,\d+\))*", "…", reason)
