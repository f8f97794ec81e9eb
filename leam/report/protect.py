"""Self-contained HTML pages for ``leam protect`` and ``leam protect-eval``: figures as PNG data URIs, no
remote resources, no JavaScript, every user-named string (paths, identities, model names) escaped.
Pages read results only (a ``ProtectResult`` or a run folder); they never run a model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import NullLocator  # noqa: E402

from leam._io import write_file as atomic_write_bytes  # noqa: E402
from leam.protect.methods import list_methods, method_spec  # noqa: E402
from leam.report.page import esc, html_table, img, page  # noqa: E402
from leam.report.plots import literal, png_bytes  # noqa: E402

# the methods' labels, colours and notes from their registry (which loads no model); "resaved" is
# protect-eval's control, not a method
METHOD_LABELS = {**{m: method_spec(m).label for m in list_methods()}, "resaved": "unprotected, re-encoded"}
COLOURS = {m: method_spec(m).colour for m in list_methods()}
METHOD_NOTES = "; ".join([*(f"{m}: {method_spec(m).note}" for m in list_methods()),
                          "resaved: the unprotected photo written the same way."])


def _pct(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * float(v):.1f} %"


def _num(v, digits: int = 3) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{float(v):.{digits}f}"


def _summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    cols = {"method": summary["method"], "budget %": summary["budget"].map(lambda b: f"{b:g}"),
            "model": summary["model"], "in ensemble": summary["seen"].map(lambda s: "seen" if s else "unseen"),
            "n": summary["n"],
            "match before": summary["match_before"].map(_pct), "match after": summary["match"].map(_pct),
            "any ref. before": summary["match_any_before"].map(_pct), "any ref. after": summary["match_any"].map(_pct),
            "face found": summary["face_found"].map(_pct), "cosine before": summary["cosine_before"].map(_num),
            "cosine after": summary["cosine"].map(_num), "drop": summary["drop"].map(_num),
            "SSIM": summary["ssim"].map(_num), "PSNR dB": summary["psnr"].map(lambda v: _num(v, 1)),
            "SSIM face": summary["ssim_face"].map(_num), "PSNR face dB": summary["psnr_face"].map(lambda v: _num(v, 1))}
    return pd.DataFrame(cols)


# ------------------------------------------------------------------------------------ leam protect


def write_protect_report(result, out: str | Path) -> Path:
    """``out/report.html``, ``out/results.csv`` (every evaluation) and ``out/summary.csv``."""
    out = Path(out)
    summary = result.summary()
    atomic_write_bytes(out / "results.csv", result.rows.to_csv(index=False).encode())
    atomic_write_bytes(out / "summary.csv", summary.to_csv(index=False).encode())
    c = result.config
    setup = pd.DataFrame({"setting": ["ensemble", "evaluated with", "budget", "mask", "epsilon", "steps", "objective",
                                      "seed", "references", "thresholds (same person)", "JPEG quality"],
                          "value": [", ".join(result.ensemble), ", ".join(result.eval_models),
                                    f"{result.budget:g} % of the face box", result.mask,
                                    "any content" if c.epsilon >= 255 else f"{c.epsilon:g} grey levels", str(c.steps),
                                    c.objective, str(c.seed), "; ".join(result.references),
                                    "; ".join(f"{k}: {v}" for k, v in result.thresholds.items()),
                                    str(c.jpeg_quality)]})
    parts = [html_table(setup, "Set-up"),
             "<p class=note>Every figure is measured on the photos as written: decoded again, the face detected "
             "again (dlib HOG) and aligned for each model. Match: the share of (photo, reference photo) pairs the "
             "model verifies at its own threshold; any ref.: at least one reference verifies. Photo metadata: "
             "only what cannot hold a picture of the unprotected face is kept (ICC profile, DPI, short EXIF "
             "fields with orientation 1, a short comment or PNG text); thumbnails, XMP, Photoshop/IPTC and MPF "
             "images are dropped; see <code>leam/protect/save.py</code>.</p>",
             html_table(_summary_table(summary), "Before and after, per model")]
    for p in result.photos:
        parts.append(f"<h3>{esc(str(p.source))}</h3>")
        parts.append(img(png_bytes(_versions_figure(p)), f"versions of {p.source}"))
    parts.append(f"<p class=note>{esc(METHOD_NOTES)}</p>")
    path = out / "report.html"
    atomic_write_bytes(path, page("leam protect", "\n".join(parts)))
    return path


def _versions_figure(p) -> plt.Figure:
    keys = list(p.versions)
    fig, axes = plt.subplots(2, len(keys) + 1, figsize=(2.6 * (len(keys) + 1), 5.4), squeeze=False)
    crop = _box_slice(p.original.shape, p.box)
    axes[0, 0].imshow(p.original[crop])
    axes[0, 0].set_title("original", fontsize=9)
    axes[1, 0].axis("off")
    for k, key in enumerate(keys, start=1):
        _, pixels, mask = p.versions[key]
        axes[0, k].imshow(pixels[crop])
        axes[0, k].set_title(literal(METHOD_LABELS.get(key, key)), fontsize=8)
        diff = np.abs(pixels.astype(np.int16) - p.original.astype(np.int16)).max(axis=2)[crop]
        axes[1, k].imshow(diff, cmap="magma", vmin=0, vmax=max(1, int(diff.max())))
        axes[1, k].set_title(f"|change| (max {int(diff.max())}), {int(mask.sum())} px", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def _box_slice(shape, box, pad: float = 0.35) -> tuple[slice, slice]:
    left, top, right, bottom = box
    m = int(pad * max(right - left, bottom - top))
    return slice(max(0, top - m), min(shape[0], bottom + m)), slice(max(0, left - m), min(shape[1], right + m))


# ------------------------------------------------------------------------------- leam protect-eval


def write_eval_report(run: str | Path, out: str | Path | None = None) -> Path:
    """The report of a ``leam protect-eval`` run folder (default ``RUN/report.html``)."""
    from leam.protect.runs import read_run
    from leam.protect.summary import seen_table

    manifest, tables, examples = read_run(run)
    results, summary = tables["results"], tables["summary"]
    config = manifest["config"]
    out = Path(out) if out else Path(run) / "report.html"
    prot = config["protect"]
    setup = pd.DataFrame({"setting": ["data", "identities", "photos protected per identity", "models", "ensembles",
                                      "budgets", "methods", "epsilon", "steps", "objective", "seed", "JPEG quality"],
                          "value": [config["data"], f"{len(manifest['done'])} done of {len(manifest['identities'])}",
                                    str(config["photos"]), ", ".join(config["models"]), config["ensembles"],
                                    ", ".join(f"{b:g} %" for b in config["budgets"]), ", ".join(config["methods"]),
                                    "any content" if prot["epsilon"] >= 255 else f"{prot['epsilon']:g} grey levels",
                                    str(prot["steps"]), prot["objective"], str(prot["seed"]),
                                    str(prot["jpeg_quality"])]})
    parts = [html_table(setup, "Set-up"), "<p class=note>" + esc(
        "Budgets are percentages of the face box's pixels (dlib's detection rectangle). Every protected photo is "
        "written as its original's format, decoded, its face detected and aligned again, and embedded by every "
        "model; seen: the model was in the ensemble optimised against, unseen: it was left out (transfer). "
        "Match: the share of (photo, other photo of the person) pairs the model verifies at its own threshold. "
        "Rates are means over photos, then over models.") + "</p>"]
    if summary.empty:
        parts.append("<p>No identity is done yet.</p>")
    else:
        before = summary.groupby("model")["match_before"].mean().mean()
        captions = {"match": f"Match rate after protection, mean over models (before: {_pct(before)})",
                    "drop": "Cosine drop (cosine to the mean reference, before − after), mean over models"}
        for value, caption in captions.items():
            t = seen_table(summary[summary["method"] != "resaved"], value)
            fmt = _pct if value == "match" else _num
            shown = t.assign(budget=t["budget"].map(lambda b: f"{b:g} %"),
                             **{c: t[c].map(fmt) for c in t.columns if c in ("seen", "unseen")})
            parts.append(html_table(shown[[c for c in ("method", "budget", "seen", "unseen") if c in shown]], caption))
        parts.append(img(png_bytes(_curves(summary, "match", "match rate after")), "match rate after protection"))
        parts.append(img(png_bytes(_curves(summary, "drop", "cosine drop")), "cosine drop"))
        parts.append(html_table(_visible(results), "Visible change, mean over photos (whole photo and face box)"))
        parts.append(html_table(_summary_table(summary), "Per method, budget, model, seen / unseen"))
    if examples:
        parts.append(img(png_bytes(_examples_figure(examples, config)), "examples"))
    if len(tables["failures"]):
        parts.append(html_table(tables["failures"], "Photos and identities left out"))
    parts.append(f"<p class=note>{esc(METHOD_NOTES)}</p>")
    parts.append(f"<p class=note>Configuration: <code>{esc(json.dumps(config))}</code></p>")
    atomic_write_bytes(out, page(f"leam protect-eval · {Path(config['data']).name}", "\n".join(parts)))
    return out


def _curves(summary: pd.DataFrame, value: str, label: str) -> plt.Figure:
    models = sorted(summary["model"].unique())
    fig, axes = plt.subplots(2, len(models), figsize=(3.6 * len(models), 6), squeeze=False, sharey=True)
    data = summary[~summary["method"].isin(["resaved"])]
    for j, model in enumerate(models):
        for i, seen in enumerate((True, False)):
            ax = axes[i, j]
            part = data[(data["model"] == model) & (data["seen"] == seen)]
            for method, g in part.groupby("method"):
                g = g.sort_values("budget")
                ax.plot(g["budget"], g[value], marker="o", color=COLOURS.get(method, "k"),
                        label=METHOD_LABELS.get(method, method))
            if value == "match" and len(part):
                ax.axhline(part["match_before"].mean(), color="k", ls=":", lw=1, label="before")
            ax.set_xscale("log")
            budgets = sorted(data["budget"].unique())
            ax.set_xticks(budgets, [f"{b:g}" for b in budgets])
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_title(f"{literal(model)}, {'seen' if seen else 'unseen'}", fontsize=9)
            ax.set_xlabel("budget, % of the face box")
            if j == 0:
                ax.set_ylabel(label)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def _visible(results: pd.DataFrame) -> pd.DataFrame:
    rows = results[results["method"] != "none"].drop_duplicates(["identity", "image", "ensemble", "method", "budget"])
    rows = rows.replace([np.inf, -np.inf], np.nan)
    t = rows.groupby(["method", "budget"])[["ssim", "psnr", "ssim_face", "psnr_face", "l2", "changed_pixels"]].mean()
    t = t.reset_index()
    def digits(n):
        return lambda v: _num(v, n)

    return pd.DataFrame({"method": t["method"], "budget %": t["budget"].map(lambda b: f"{b:g}"),
                         "SSIM": t["ssim"].map(_num), "PSNR dB": t["psnr"].map(digits(1)),
                         "SSIM face": t["ssim_face"].map(_num), "PSNR face dB": t["psnr_face"].map(digits(1)),
                         "L2": t["l2"].map(digits(0)), "pixels changed": t["changed_pixels"].map(digits(0))})


def _examples_figure(examples: dict, config: dict, rows: int = 6) -> plt.Figure:
    budgets = config["budgets"]
    budget = max([b for b in budgets if b <= 2] or [min(budgets)])
    methods = [m for m in config["methods"]]
    names = list(examples)[:rows]
    fig, axes = plt.subplots(len(names), len(methods) + 1, figsize=(1.9 * (len(methods) + 1), 2.0 * len(names)),
                             squeeze=False)
    for i, name in enumerate(names):
        ex = examples[name]
        key = f"{budget:g}"
        panels = [("original", ex["original"])] + [(m, ex[f"{m}/{key}"]) for m in methods if f"{m}/{key}" in ex]
        for j, ax in enumerate(axes[i]):
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(panels):
                ax.imshow(panels[j][1])
                if i == 0:
                    ax.set_title(literal(panels[j][0]), fontsize=8)
            else:
                ax.axis("off")
        axes[i, 0].set_ylabel(literal(name[:18]), fontsize=7)
    fig.suptitle(f"First protected photo of each identity, budget {budget:g} %, first ensemble", fontsize=9)
    fig.tight_layout()
    return fig
