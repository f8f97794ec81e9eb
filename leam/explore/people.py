"""What the explorer reads from a study's tables: its people, their photos, attributes, variability within a
person, occlusion results and failures. Pure functions over ``RunStore.tables()``; no maps are opened here.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from leam.explore.maps import TOP_PERCENT, Person
from leam.study import stats


def people(images: pd.DataFrame, failures: pd.DataFrame) -> list[str]:
    """Every identity of the run (with photos or only failures), in the order the run lists them."""
    names = [*images.get("identity", []), *failures.get("identity", [])]
    return [n for n in dict.fromkeys(str(n) for n in names) if n]


def attributes(images: pd.DataFrame) -> pd.DataFrame:
    """Per identity (index), each image attribute (``attr_<name>`` columns, by ``<name>``): its values over the
    identity's photos, joined by ", " when they differ; blank when unknown."""
    names = stats.attribute_names(images)
    if images.empty or not names:
        return pd.DataFrame(index=pd.Index([], name="identity"))
    photos = images.drop_duplicates(["identity", "image"])

    def joined(values: pd.Series) -> str:
        kept = [str(v).strip() for v in values if pd.notna(v) and str(v).strip()]
        return ", ".join(dict.fromkeys(sorted(kept)))

    out = photos.groupby("identity", sort=False)[[f"attr_{n}" for n in names]].agg(joined)
    return out.set_axis(names, axis=1)


def photo_counts(images: pd.DataFrame) -> pd.Series:
    """Per identity: its distinct photos in the images table (explained or reference, any model)."""
    if images.empty:
        return pd.Series(dtype=int)
    return images.groupby("identity", sort=False)["image"].nunique()


def nearest(values, target: float) -> float | None:
    """Of ``values`` (percentages), the one nearest ``target`` on a log scale (the smaller on a tie)."""
    found = sorted({float(v) for v in values if pd.notna(v) and v > 0})
    return min(found, key=lambda v: (abs(math.log(v / target)), v)) if found else None


def variability(regions: pd.DataFrame) -> tuple[pd.DataFrame, float | None]:
    """Per model and identity, how much the aggregate map's region shares vary over the identity's photos:
    Σ std / Σ mean over the classes of the shares of the top p % pixels (p: ``TOP_PERCENT`` or the nearest
    threshold of the run), from ``stats.identity_variability``. As the shares of a photo sum to 1, this is the
    share-weighted mean of the classes' coefficients of variation; unlike their plain mean it does not blow up
    for a class that takes a sliver of the pixels. NaN for one photo. Returns (table, p)."""
    columns = ["model", "identity", "variability"]
    if regions.empty:
        return pd.DataFrame(columns=columns), None
    shares = regions[(regions["layer"] == "aggregate") & (regions["measure"] == "share")]
    p = nearest(shares["threshold"], TOP_PERCENT)
    if p is None:
        return pd.DataFrame(columns=columns), None
    per = stats.identity_variability(shares[shares["threshold"] == p])
    g = per.groupby(["model", "identity"], sort=False)
    out = (g["std"].sum(min_count=1) / g["mean"].sum()).rename("variability").reset_index()
    return out[columns], p


def occlusion(occlusion: pd.DataFrame) -> pd.DataFrame:
    """Per model, identity and percent: the mean drop of cosine similarity over the identity's photos (and
    seeds) when the aggregate map's top pixels are blacked out (``map``), or as many random pixels anywhere
    (``random``) or in the face (``random_face``); with the number of photos."""
    columns = ["model", "identity", "percent", *stats.OCCLUSION_KINDS, "photos"]
    if occlusion.empty:
        return pd.DataFrame(columns=columns)
    t = occlusion[occlusion["layer"] == "aggregate"]
    keys = ["model", "identity", "percent"]
    wide = t.pivot_table(index=keys, columns="kind", values="drop", aggfunc="mean", sort=False)
    wide["photos"] = t.groupby(keys, sort=False)["image"].nunique()
    out = wide.reset_index().rename_axis(columns=None)
    for kind in stats.OCCLUSION_KINDS:
        if kind not in out:
            out[kind] = np.nan
    return out[columns]


def occlusion_gain(per_identity: pd.DataFrame) -> tuple[pd.DataFrame, float | None]:
    """Per model and identity at 1 % (or the nearest percent of the run), from ``occlusion``: the mean drops of
    LEAM's pixels and of random ones, and their difference ``gain`` (LEAM − random: how much more LEAM's
    pixels matter than as many random ones). Returns (table, percent)."""
    columns = ["model", "identity", "drop_map", "drop_random", "gain"]
    p = nearest(per_identity["percent"], 1.0) if len(per_identity) else None
    if p is None:
        return pd.DataFrame(columns=columns), None
    t = per_identity[per_identity["percent"] == p]
    out = t[["model", "identity"]].assign(drop_map=t["map"], drop_random=t["random"])
    return out.assign(gain=out["drop_map"] - out["drop_random"])[columns].reset_index(drop=True), p


def model_layers(manifest: dict, model: str) -> list[str]:
    """The layers a run studied for ``model`` (its configuration, else the model's default layers)."""
    config = manifest.get("config", {})
    return [str(n) for n in (config.get("layers", {}).get(model) or manifest.get("models", {}).get(model, {})
                             .get("default_layers", []))]


def per_model(numbers: dict[tuple[str, str], Person], variability_table: pd.DataFrame,
              gain: pd.DataFrame) -> pd.DataFrame:
    """One row per identity and model with maps (``numbers``: {(identity, model): ``maps.Person``}): photos
    explained, EMD and BC of the consensus vs the prior, variability, occlusion drops and gain, and the
    consensus map's top regions as text."""
    rows = [{"identity": identity, "model": model, "photos": p.photos, "emd": p.emd, "bc": p.bc,
             "regions": top_regions(p.shares)} for (identity, model), p in numbers.items()]
    columns = ["identity", "model", "photos", "emd", "bc", "regions"]
    out = pd.DataFrame(rows, columns=columns)
    out = out.merge(variability_table, on=["model", "identity"], how="left")
    out = out.merge(gain, on=["model", "identity"], how="left")
    return out


def top_regions(shares: dict[str, tuple[float, float]], count: int = 3) -> str:
    """The ``count`` classes with the largest consensus shares, e.g. "nose 42% · skin 31% · l_eye 10%"."""
    best = sorted(shares.items(), key=lambda kv: -kv[1][0])[:count]
    return " · ".join(f"{c} {100 * v:.0f}%" for c, (v, _) in best if v >= 0.005)


def unusualness(per_model_table: pd.DataFrame) -> pd.Series:
    """Per identity: the mean over models of the percentile rank (0–1] of its EMD from the population prior
    among the model's identities; 1 = the farthest under every model. Ranks make models of other chip sizes
    (EMD in their own pixels) count alike."""
    if per_model_table.empty:
        return pd.Series(dtype=float, name="unusual")
    rank = per_model_table.groupby("model", sort=False)["emd"].rank(pct=True)
    return rank.groupby(per_model_table["identity"], sort=False).mean().rename("unusual")
