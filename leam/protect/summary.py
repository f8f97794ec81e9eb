"""Summaries of protection results: match rates before and after, per method, budget, model, seen.

``results`` rows (``leam.protect.study`` and ``leam.protect.api``) hold one evaluation of one photo
by one model: method "none" is the unprotected photo; every other row a protected version
(``ensemble``, ``method``, ``budget``, ``seen``: whether the model was in the ensemble).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

KEYS = ["identity", "image", "model"]
SUMMARY_KEYS = ["method", "budget", "model", "seen"]
MEANS = ["match_before", "match", "match_any_before", "match_any", "face_found", "cosine_before", "cosine",
         "drop", "ssim", "psnr", "ssim_face", "psnr_face", "l2", "changed_pixels", "seconds"]


def with_before(results: pd.DataFrame) -> pd.DataFrame:
    """The protected rows with the unprotected photo's ``cosine_before``, ``match_before``,
    ``match_any_before`` beside them, and ``drop`` = cosine_before − cosine."""
    if results.empty:
        return results
    before = results[results["method"] == "none"][KEYS + ["cosine", "match", "match_any"]]
    before = before.rename(columns={"cosine": "cosine_before", "match": "match_before",
                                    "match_any": "match_any_before"})
    after = results[results["method"] != "none"].merge(before, on=KEYS, how="left")
    after["drop"] = after["cosine_before"] - after["cosine"]
    return after


def summarise_protection(results: pd.DataFrame, keys: list[str] | None = None) -> pd.DataFrame:
    """Means over photos (and ensembles) of every ``MEANS`` column per ``keys`` (default: method, budget,
    model, seen), with ``n`` the rows averaged. PSNR means skip identical photos (infinite PSNR)."""
    keys = keys or SUMMARY_KEYS
    rows = with_before(results)
    if rows.empty:
        return pd.DataFrame(columns=keys + ["n"] + MEANS)
    rows = rows.copy()
    for col in ("psnr", "psnr_face"):
        rows[col] = rows[col].replace([np.inf, -np.inf], np.nan)
    for col in ("match_any", "match_any_before", "face_found"):
        rows[col] = rows[col].astype(float)
    present = [c for c in MEANS if c in rows]
    out = rows.groupby(keys, sort=True, dropna=False)[present].mean()
    out.insert(0, "n", rows.groupby(keys, sort=True, dropna=False).size())
    return out.reset_index()


def seen_table(summary: pd.DataFrame, value: str = "match") -> pd.DataFrame:
    """Methods x budgets of ``value`` averaged over models, for seen and unseen models (columns)."""
    if summary.empty:
        return summary
    t = summary.groupby(["method", "budget", "seen"])[value].mean().unstack("seen")
    t.columns = [("seen" if c else "unseen") for c in t.columns]
    return t.reset_index()
