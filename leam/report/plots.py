"""The report's figures, drawn from summaries and stored maps only (matplotlib, Agg).

Every function returns a ``matplotlib.figure.Figure``; ``png_bytes`` turns one into PNG bytes and
closes it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import NullLocator  # noqa: E402

from leam.report.render import label_overlay, legend_handles, overlay, shares_bar_chart  # noqa: E402

KIND_COLOURS = {"map": "#c0392b", "random": "#7f8c8d", "random_face": "#2980b9", "same": "#2e86c1",
                "different": "#e67e22"}
KIND_LABELS = {"map": "LEAM top pixels", "random": "random pixels", "random_face": "random pixels in the face"}
DPI = 90


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def threshold_label(t: float) -> str:
    return "full map" if t is None or (isinstance(t, float) and math.isnan(t)) else f"top {t:g}%"


def _text_colour(cmap: str, value: float, vmin: float, vmax: float) -> str:
    """Black or white, whichever reads better on the colour ``value`` takes in ``cmap``."""
    r, g, b, _ = matplotlib.colormaps[cmap]((value - vmin) / (vmax - vmin) if vmax > vmin else 0.0)
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def literal(text) -> str:
    """User-named text (attribute names and values) for a matplotlib label: "$" would start mathtext."""
    return str(text).replace("$", r"\$")


def _sem(std: float, n: float) -> float:
    return std / math.sqrt(n) if n and n > 1 and np.isfinite(std) else 0.0


# ------------------------------------------------------------------------------- map similarity


def similarity_figure(pairs: pd.DataFrame, model: str, metric: str) -> Figure | None:
    """Box plots of ``metric`` ("bc" or "emd") over same- vs different-identity pairs: one panel per
    threshold, the layers (those with values) along x. None when the model has no values."""
    t = pairs[(pairs["model"] == model) & pairs[metric].notna()]
    if t.empty:
        return None
    thresholds = list(pd.unique(t["threshold"]))
    layers = list(dict.fromkeys(t["layer"]))
    width = max(6.0, 1.0 + 1.6 * len(thresholds)) if len(layers) == 1 else 13.0
    ncols = len(thresholds) if len(layers) == 1 else 1
    nrows = 1 if len(layers) == 1 else len(thresholds)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, 2.4 * nrows + 0.9), squeeze=False)
    for ax, threshold in zip(axes.ravel(), thresholds):
        sel = t[t["threshold"].isna()] if _isnan(threshold) else t[t["threshold"] == threshold]
        for k, kind in enumerate(("same", "different")):
            data = [sel[(sel["layer"] == layer) & (sel["kind"] == kind)][metric].to_numpy() for layer in layers]
            pos = np.arange(len(layers)) + (k - 0.5) * 0.36
            box = ax.boxplot([d if len(d) else [np.nan] for d in data], positions=pos, widths=0.3, patch_artist=True,
                             showfliers=True, flierprops={"markersize": 2}, medianprops={"color": "black"})
            for patch in box["boxes"]:
                patch.set_facecolor(KIND_COLOURS[kind])
                patch.set_alpha(0.75)
        ax.set_xticks(np.arange(len(layers)), layers, rotation=20 if len(layers) > 3 else 0, ha="right", fontsize=7)
        ax.set_title(threshold_label(threshold), fontsize=9)
        ax.set_ylabel("BC" if metric == "bc" else "EMD (px)", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    name = "Bhattacharyya coefficient" if metric == "bc" else "Earth Mover's Distance"
    _title_and_legend(fig, f"{model}: {name} between maps of pairs of photos",
                      [plt.Rectangle((0, 0), 1, 1, color=KIND_COLOURS[k], alpha=0.75) for k in ("same", "different")],
                      ["same identity", "different identities"])
    return fig


def _title_and_legend(fig: Figure, title: str, handles: list, labels: list[str]) -> None:
    """A left-aligned title with the legend on the line below it, above the panels."""
    height = fig.get_figheight()
    fig.suptitle(title, fontsize=10, x=0.01, y=1 - 0.08 / height, ha="left", va="top")
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(0.005, 1 - 0.3 / height), fontsize=8,
               ncol=len(labels), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.52 / height))


def _isnan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


# ------------------------------------------------------------------------------------ occlusion


def occlusion_figure(summary: pd.DataFrame) -> Figure:
    """Mean drop of cosine similarity vs the percentage of pixels blacked out (± standard error), one
    panel per model: LEAM's top pixels, random pixels, random pixels in the face."""
    models = list(dict.fromkeys(summary["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(4.4 * len(models) + 0.6, 3.4), squeeze=False)
    for ax, model in zip(axes.ravel(), models):
        t = summary[(summary["model"] == model) & (summary["layer"] == "aggregate")].sort_values("percent")
        for kind in ("map", "random", "random_face"):
            if t[f"{kind}_mean"].notna().any():
                err = [_sem(s, n) for s, n in zip(t[f"{kind}_std"], t["images"])]
                ax.errorbar(t["percent"], t[f"{kind}_mean"], yerr=err, marker="o", ms=4, capsize=2,
                            color=KIND_COLOURS[kind], label=KIND_LABELS[kind])
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(t["percent"], [f"{p:g}" for p in t["percent"]])
        ax.set_xlabel("pixels blacked out (%)", fontsize=8)
        ax.set_ylabel("drop of cosine similarity", fontsize=8)
        ax.set_title(model, fontsize=9)
        ax.axhline(0, color="black", lw=0.5)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------- transfer


def transfer_figure(summary: pd.DataFrame) -> Figure:
    """One heatmap per percent: mean drop when source model's maps occlude the target model's input,
    with the target's random baselines as the last rows."""
    percents = sorted(summary["percent"].unique())
    models = list(dict.fromkeys([*summary["source_model"], *summary["target_model"]]))
    rows = [*models, "random", "random in face"]
    ncols = min(len(percents), 2 if len(models) > 2 else 4 if len(models) == 1 else 2)
    nrows = -(-len(percents) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.6 + ncols * (0.6 + 1.15 * len(models)),
                                                    nrows * (0.9 + 0.42 * len(rows))), squeeze=False)
    for ax in axes.ravel()[len(percents):]:
        ax.axis("off")
    vmax = np.nanmax(summary[["drop_mean", "random_mean", "random_face_mean"]].to_numpy(dtype=float))
    for ax, p in zip(axes.ravel(), percents):
        t = summary[summary["percent"] == p]
        grid = np.full((len(rows), len(models)), np.nan)
        for _, r in t.iterrows():
            j = models.index(r["target_model"])
            grid[models.index(r["source_model"]), j] = r["drop_mean"]
            grid[-2, j], grid[-1, j] = r["random_mean"], r["random_face_mean"]
        top = vmax if np.isfinite(vmax) and vmax > 0 else 1.0
        ax.imshow(grid, cmap="magma_r", vmin=0, vmax=top, aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=9,
                        color=_text_colour("magma_r", v, 0, top))
        ax.axhline(len(models) - 0.5, color="white", lw=3)
        ax.set_xticks(range(len(models)), models, fontsize=8)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.set_xlabel("occluded model (target)", fontsize=8)
        ax.set_title(f"top {p:g}% pixels", fontsize=9)
    for ax in axes[:, 0]:
        ax.set_ylabel("maps of (source)", fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------- face regions


def region_bars_png(summary: pd.DataFrame, model: str, layer: str = "aggregate") -> bytes:
    """PNG of the mean (± std) share of the top-p % pixels per class and threshold for one layer
    (``leam.report.render.shares_bar_chart``)."""
    t = summary[(summary["model"] == model) & (summary["layer"] == layer) & (summary["measure"] == "share")]
    classes = list(dict.fromkeys(t["class"]))
    means = {p: dict(zip(g["class"], g["mean"])) for p, g in t.groupby("threshold", sort=True)}
    errors = {p: dict(zip(g["class"], g["std"].fillna(0))) for p, g in t.groupby("threshold", sort=True)}
    n = int(t["images"].max()) if len(t) else 0
    buf = io.BytesIO()
    shares_bar_chart(means, classes, f"{model}: {layer} map, mean ± std over {n} photos", buf, errors)
    return buf.getvalue()


def layer_class_heatmap(table: pd.DataFrame, title: str) -> Figure:
    """Layers × classes heatmap of mean shares (from ``stats.share_table``), annotated."""
    fig, ax = plt.subplots(figsize=(1.6 + 0.62 * table.shape[1], 1.0 + 0.32 * table.shape[0]))
    ax.imshow(table.to_numpy(dtype=float), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for (i, j), v in np.ndenumerate(table.to_numpy(dtype=float)):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color=_text_colour("viridis", v, 0, 1))
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(table.shape[0]), table.index, fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------- groups


def group_bars(
    split: pd.DataFrame, x: str, series: Sequence[str], series_col: str, title: str, ylabel: str = "mean"
) -> Figure:
    """Bars of every group's mean (± standard error) along ``x``, one panel per model; ``series``
    values of ``series_col`` (e.g. occlusion kinds) are drawn side by side, each group after the first
    hatched. ``split`` is a ``group_split`` table: one row per two groups (an attribute with three values
    gives three rows per ``x``), from which each group's own mean, std and count are taken."""
    models = list(dict.fromkeys(split["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(4.6 * len(models) + 0.4, 3.3), squeeze=False)
    hatches = [None, "//", "..", "xx", "\\\\", "oo"]
    for ax, model in zip(axes.ravel(), models):
        t = split[split["model"] == model]
        xs = list(pd.unique(t[x]))
        sides = [t[[x, series_col, f"group_{g}", f"{g}_mean", f"{g}_std", f"{g}_n"]].set_axis(
            [x, series_col, "group", "mean", "std", "n"], axis=1) for g in ("a", "b")]
        per_group = pd.concat(sides, ignore_index=True).drop_duplicates([x, series_col, "group"])
        groups = list(dict.fromkeys(sorted(per_group["group"].dropna().tolist())))
        slots = [(s, g) for s in series for g in groups]
        width = 0.8 / max(len(slots), 1)
        for k, (s, g) in enumerate(slots):
            sel = per_group[(per_group[series_col] == s) & (per_group["group"] == g)].set_index(x).reindex(xs)
            if sel.empty or sel["mean"].isna().all():
                continue
            err = [_sem(sd, n) for sd, n in zip(sel["std"], sel["n"])]
            i = groups.index(g)
            ax.bar(np.arange(len(xs)) + (k - (len(slots) - 1) / 2) * width, sel["mean"], width, yerr=err,
                   capsize=2, color=KIND_COLOURS.get(s, "#888888"), alpha=0.9 if i == 0 else 0.55,
                   hatch=hatches[i % len(hatches)], edgecolor="black", linewidth=0.4,
                   label=f"{KIND_LABELS.get(s, s)} · {literal(g)}")
        ax.set_xticks(np.arange(len(xs)), [threshold_label(v) if x == "threshold" else f"{v:g}%" for v in xs],
                      fontsize=8)
        ax.set_title(model, fontsize=9)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=6.5)
    fig.suptitle(literal(title), fontsize=10, x=0.01, y=1 - 0.06 / fig.get_figheight(), ha="left", va="top")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / fig.get_figheight()))
    return fig


# ------------------------------------------------------------------------------------- examples


def examples_figure(examples: list[dict], models: Sequence[str]) -> Figure:
    """One row per example identity; per model: the aligned chip, the aggregate map over it, and the
    face parsing over it. ``examples``: {"identity", "image", model: {"chip", "aggregate", "labels_rgb",
    "classes"}} (a model may be missing)."""
    cols = 3 * len(models)
    fig, axes = plt.subplots(len(examples), cols, figsize=(1.75 * cols, 1.95 * len(examples) + 0.5), squeeze=False)
    classes: dict[str, None] = {}
    for r, ex in enumerate(examples):
        for m, model in enumerate(models):
            panels = axes[r, 3 * m : 3 * m + 3]
            item = ex.get(model)
            for ax in panels:
                ax.axis("off")
            if item is None:
                panels[1].text(0.5, 0.5, "no map", ha="center", va="center", fontsize=8)
                continue
            classes.update(dict.fromkeys(item["classes"]))
            panels[0].imshow(item["chip"])
            panels[1].imshow(overlay(item["chip"], item["aggregate"]))
            panels[2].imshow(label_overlay(item["chip"], item["labels_rgb"]))
            if r == 0:
                for ax, name in zip(panels, ("aligned face", "aggregate map", "face regions")):
                    ax.set_title(f"{model}\n{name}", fontsize=7)
        axes[r, 0].text(-0.08, 0.5, _short(ex["identity"]), transform=axes[r, 0].transAxes, rotation=90,
                        ha="right", va="center", fontsize=7, parse_math=False)
    if classes:
        fig.legend(handles=legend_handles(list(classes)), loc="lower center", ncol=min(10, len(classes)), fontsize=7)
    fig.tight_layout(rect=(0.02, 0.045, 1, 1))
    return fig


def _short(name: str, n: int = 24) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"
