"""The report's "Faithfulness" section, from the summaries of ``leam.study.faithfulness_stats`` only:
mean deletion/insertion curves with 95 % bands, areas per ranking best first, pixels to un-match, the
default map against the baselines, person-specificity, and one plain sentence per model."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from leam.report.page import esc, html_table, img, note  # noqa: E402
from leam.report.plots import png_bytes, threshold_label  # noqa: E402
from leam.study import faithfulness_stats as fstats  # noqa: E402

SHOWN = ("default", "random", "random_face", "centre_prior", "population_prior")  # curves drawn beside the best
COLOURS = {"default": "#c0392b", "best": "#8e44ad", "random": "#7f8c8d", "random_face": "#2980b9",
           "centre_prior": "#27ae60", "population_prior": "#e67e22", "consensus": "#16a085", "other_person": "#d35400",
           "specific": "#2c3e50", "specific_other": "#95a5a6"}
INTRO = ("Deletion: the ranked pixels of the aligned face are removed in order (shown as the fill) and the cosine "
         "similarity to the reference is measured at 0–50 % of the chip; insertion: they are revealed in order on "
         "a removed face. Area: under the cosine curve (clipped to [0, 1]) over the fraction axis scaled to [0, 1]; "
         "a lower deletion area and a higher insertion area mean the ranking finds what the model relies on. "
         "Pixels to un-match: the fraction of pixels whose deletion makes the pair fail the model's verification "
         "threshold (censored at 50 %). Fills change deletion results (out-of-distribution artefacts, ROAD): a "
         "conclusion counts only if it holds under every fill. Baselines: random pixels, random pixels in the face, "
         "a centre prior, and the population prior (the mean default map of all other identities); "
         "person-specificity compares the photo's own map and the person's consensus (mean map of their other "
         "photos) with another person's map and the population prior.")


SPECIFIC_INTRO = ("The specific map of a person is their consensus map (the mean of their other photos' maps) "
                  "less the population prior (the mean map of everyone else), clipped at 0 and normalised: where the "
                  "model looks for this person more than for people in general. It is validated on each scored "
                  "photo, which is left out of its own consensus: deleting the specific map's top pixels must lower "
                  "the cosine to the person's reference more than deleting the prior's, and lower it more for this "
                  "person than the same pixels lower it for another person's photo. Where it fails, the map is "
                  "not what sets the person apart.")


def faithfulness_body(summaries: dict[str, pd.DataFrame]) -> str:
    """The section's HTML (without its heading), or a note when the run has no faithfulness phase."""
    if "faithfulness_rankings" not in summaries:
        return note("No faithfulness results in this run (`leam study ... --faithfulness` adds them, also to a "
                    "finished run).")
    rankings, curves = summaries["faithfulness_rankings"], summaries["faithfulness_curves"]
    against = summaries.get("faithfulness_baselines", pd.DataFrame())
    specific = summaries.get("faithfulness_specificity", pd.DataFrame())
    body = [f"<p>{esc(INTRO)}</p>"]
    sentences = fstats.verdicts(against, specific)
    body.append("<ul>" + "".join(f"<li>{esc(s)}</li>" for s in sentences.values()) + "</ul>")
    for model in rankings["model"].unique():
        r = rankings[rankings["model"] == model]
        body.append(f"<h3>{esc(model)}</h3>")
        fig = curves_figure(curves[curves["model"] == model], r)
        if fig is not None:
            body.append(img(png_bytes(fig), f"{model}: mean deletion and insertion curves"))
        body.append(html_table(area_table(r), f"{model}: area per ranking (deletion: lower is better; insertion: "
                                              "higher), best first under the first fill"))
        fig = unmatch_figure(summaries["faithfulness_photos"], model)
        if fig is not None:
            body.append(img(png_bytes(fig), f"{model}: pixels to un-match"))
    if len(candidates := summaries.get("faithfulness_candidates", pd.DataFrame())):
        cols = ["model", "fill", "best", "best_auc", "default_auc", "vs_default_n", "vs_default_mean_diff",
                "vs_default_ci_low", "vs_default_ci_high", "vs_default_p_wilcoxon"]
        body.append(html_table(candidates[cols], "The LEAM map with the lowest deletion area per model, under the "
                                                 "black fill and the most conservative fill (where random pixels "
                                                 "lower the cosine least), vs the default on the same photos"))
    if len(aggregates := summaries.get("faithfulness_aggregates", pd.DataFrame())):
        cols = ["model", "fill", "ranking", "n", "mean_diff", "ci_low", "ci_high", "p_wilcoxon"]
        mine = aggregates[aggregates["versus"] == "default"]
        body.append(html_table(mine[cols], "Each aggregate map vs the run's own map on the same photos: paired "
                                           "difference of deletion area (negative: the aggregate's pixels matter "
                                           "more); against each baseline in faithfulness_aggregates.csv"))
    if len(against):
        cols = ["model", "fill", "baseline", "n", "mean_diff", "ci_low", "ci_high", "p_wilcoxon", "rank_biserial"]
        body.append(html_table(against[[c for c in cols if c in against]],
                               "Default map vs baselines: paired difference of deletion area (negative: the map's "
                               "pixels matter more), bootstrap 95 % CI, Wilcoxon p, rank-biserial r"))
    if len(specific):
        cols = ["model", "fill", "a", "b", "measure", "n", "mean_diff", "ci_low", "ci_high", "p_wilcoxon",
                "rank_biserial"]
        body.append(html_table(specific[[c for c in cols if c in specific]],
                               "Person-specificity by deletion: a vs b on the same photos (negative: a's pixels "
                               "matter more; auc: deletion area, unmatch: pixels to un-match)"))
    if len(validation := summaries.get("faithfulness_specific", pd.DataFrame())):
        body.append(f"<h3>What sets a person apart: the specific map</h3><p>{esc(SPECIFIC_INTRO)}</p>")
        body.append("<ul>" + "".join(f"<li>{esc(s)}</li>" for s in fstats.specific_verdicts(validation).values())
                    + "</ul>")
        cols = ["test", "model", "fill", "a", "b", "measure", "n", "mean_diff", "ci_low", "ci_high", "p_wilcoxon",
                "p_holm", "rank_biserial", "holds"]
        body.append(html_table(validation[cols], "The specific map on photos left out of the consensus: vs the "
                                                 "population prior (deletion area, negative: better) and on another "
                                                 "person's photo (mean cosine drop, positive: falls more for this "
                                                 "person); Holm over each test's model × fill cells"))
    if len(share := summaries.get("faithfulness_consensus", pd.DataFrame())):
        body.append(html_table(share, "Share of identities whose consensus map beats the population prior "
                                      "(mean deletion area over their scored photos)"))
    if len(bc := summaries.get("faithfulness_bc", pd.DataFrame())):
        bc = bc.assign(threshold=bc["threshold"].map(threshold_label))
        keep = [c for c in bc.columns if c in ("model", "threshold", "bc_consensus", "bc_population_prior",
                                               "bc_other_person") or c.endswith(("_mean_diff", "_p_wilcoxon", "_n"))]
        body.append(html_table(bc[keep], "Bhattacharyya coefficient of each scored photo's default map with the "
                                         "person's consensus, the population prior and another person's map "
                                         "(threshold: top-p %; blank: full map); consensus vs prior: paired test"))
    return "\n".join(body)


def area_table(rankings: pd.DataFrame) -> pd.DataFrame:
    """Rows: rankings; columns: deletion and insertion areas per fill and the median pixels to un-match under
    the first fill; sorted by the deletion area under the first fill."""
    fills = list(dict.fromkeys(rankings["fill"]))
    wide = rankings.pivot_table(index="ranking", columns=["direction", "fill"], values="auc", aggfunc="first")
    wide.columns = [f"{d} {f}" for d, f in wide.columns]
    first = rankings[(rankings["fill"] == fills[0]) & (rankings["direction"] == "deletion")]
    unmatch = first.set_index("ranking")[["photos", "unmatch_median", "censored"]]
    out = wide.join(unmatch, how="left").reset_index()
    order = [f"deletion {f}" for f in fills] + [f"insertion {f}" for f in fills]
    cols = ["ranking", "photos", *[c for c in order if c in out], "unmatch_median", "censored"]
    return out[cols].sort_values(cols[2] if len(cols) > 2 else "ranking").reset_index(drop=True)


def curves_figure(curves: pd.DataFrame, rankings: pd.DataFrame) -> Figure | None:
    """Panels: direction (rows) × fill (columns); lines: the default, the best ranking by deletion area under
    that fill, and the baselines, each with its 95 % band."""
    if curves.empty:
        return None
    fills = list(dict.fromkeys(curves["fill"]))
    directions = [d for d in ("deletion", "insertion") if d in set(curves["direction"])]
    fig, axes = plt.subplots(len(directions), len(fills), figsize=(3.6 * len(fills), 2.8 * len(directions)),
                             squeeze=False, sharey=True)
    for col, fill in enumerate(fills):
        best = rankings[(rankings["fill"] == fill) & (rankings["direction"] == "deletion")]
        best_label = best.iloc[0]["ranking"] if len(best) else None
        for row, direction in enumerate(directions):
            ax = axes[row][col]
            sel = curves[(curves["fill"] == fill) & (curves["direction"] == direction)]
            for name in (*SHOWN, "best"):
                line = sel[sel["ranking"] == best_label] if name == "best" else sel[sel["method"] == name]
                if line.empty or (name == "best" and best_label == "default"):
                    continue
                line = line.sort_values("fraction")
                x = 100 * line["fraction"].to_numpy(float)
                label = f"best: {best_label}" if name == "best" else name
                ax.plot(x, line["cosine"], color=COLOURS[name], label=label, lw=1.4)
                ax.fill_between(x, line["low"], line["high"], color=COLOURS[name], alpha=0.15, lw=0)
            ax.set_title(f"{direction}, {fill} fill", fontsize=9)
            ax.set_xlabel("% of chip pixels", fontsize=8)
            if col == 0:
                ax.set_ylabel("cosine to reference", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=6, loc="best")
    fig.tight_layout()
    return fig


def unmatch_figure(photos: pd.DataFrame, model: str) -> Figure | None:
    """Box plots of pixels to un-match (deletion, first fill) per ranking: the default, person maps, baselines."""
    sel = photos[(photos["model"] == model) & (photos["direction"] == "deletion")]
    if sel.empty:
        return None
    fill = sel["fill"].iloc[0]
    sel = sel[sel["fill"] == fill]
    names = [m for m in ("default", "consensus", "other_person", *SHOWN[1:]) if m in set(sel["method"])]
    data = [100 * sel[sel["method"] == m]["unmatch"].dropna().to_numpy(float) for m in names]
    if not any(len(d) for d in data):
        return None
    fig, ax = plt.subplots(figsize=(7.5, 2.8))
    ax.boxplot([d if len(d) else np.array([np.nan]) for d in data], showfliers=False)
    ax.set_xticks(range(1, len(names) + 1), names, fontsize=7, rotation=15)
    ax.set_ylabel("% pixels to un-match", fontsize=8)
    ax.set_title(f"{model}: pixels whose deletion ({fill} fill) makes the pair fail (censored at 50 %)", fontsize=9)
    fig.tight_layout()
    return fig
