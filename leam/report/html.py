"""``write_report``: a study's run folder → one self-contained HTML page (figures as PNG data URIs, no
remote resources, no JavaScript) and its tables as CSV and Markdown beside it (``report_tables/``).

The report reads stored results only: the run's tables, ``run.json`` and the maps in its unit
folders. It never loads or runs a model. Everything a user named (identities, file names, attribute
values, paths) is escaped.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from leam._io import write_file
from leam._paths import check_outputs, claim_outputs
from leam.errors import LeamError
from leam.report import page as pages
from leam.report import plots
from leam.report.examples import examples_body
from leam.report.faithfulness import faithfulness_body
from leam.report.page import esc, img, note
from leam.report.scorecard import model_sizes, scorecard, scorecard_body
from leam.report.tables import format_value, summarise_study, table_files, write_tables
from leam.study import stats
from leam.study.run_tables import RunTables
from leam.study.store import RunStore

IDENTITY_ROWS = 60  # the identities table is shown in the page up to this many identities
SECTIONS = {
    "scorecard": "Scorecard: claims of the reference study",
    "glance": "At a glance", "setup": "Set-up", "similarity": "Map similarity: same vs different identities",
    "occlusion": "Validation by occlusion", "transfer": "Transfer across models", "regions": "Face regions",
    "faithfulness": "Faithfulness", "groups": "Groups", "examples": "Example identities", "failures": "Failures",
    "tables": "Tables",
}



def write_report(run_dir: str | Path, out_path: str | Path | None = None) -> Path:
    """Write the report of the run in ``run_dir`` to ``out_path`` (default ``RUN/report.html``) and its
    tables to ``report_tables/`` beside it; returns the HTML file's path."""
    store = RunStore(run_dir)
    manifest = store.read_manifest()
    if manifest is None:
        raise LeamError(f"{run_dir}: no run.json; expected the folder of a `leam study` run")
    out = Path(out_path) if out_path else Path(run_dir) / "report.html"
    if out.is_dir():
        raise LeamError(f"{out}: is a folder; give --out the HTML file to write, e.g. {out / 'report.html'}")
    check_outputs([out], run=run_dir)  # before reading the tables: a clash is named at once
    with store.reading():  # no consolidation rewrites the tables while the report reads them
        return _write_report(store, run_dir, manifest, out)


def _write_report(store: RunStore, run_dir: str | Path, manifest: dict, out: Path) -> Path:
    """``write_report`` once its output is checked, under the tables' lock."""
    tables = store.tables()
    if "images" not in tables:
        raise LeamError(f"{run_dir}: the run has no tables yet; run `leam study` on it to the end first")
    timings = store.timings()  # the done markers, checked like the tables before anything is written
    with tempfile.TemporaryDirectory(prefix="leam-report-") as spill:
        summaries = summarise_study(tables, Path(spill))
        summaries = {"scorecard": scorecard(summaries, model_sizes(manifest)), **summaries}
        planned = [out, *(f for name in summaries for f in table_files(name, out.parent / "report_tables"))]
        claim_outputs(check_outputs(planned, run=run_dir))
        files = write_tables(summaries, out.parent / "report_tables")
    small = {"images": tables["images"], "failures": tables.get("failures", pd.DataFrame())}
    with warnings.catch_warnings():  # names in scripts the font lacks (東京) are boxes in figures; tables show them
        warnings.filterwarnings("ignore", r"Glyph \d+ .* missing from font", UserWarning)
        parts = [
            section("scorecard", scorecard_body(summaries["scorecard"])),
            glance_section(summaries),
            _setup(manifest, tables, small, summaries, timings),
            _similarity(tables, summaries),
            _occlusion(summaries),
            _transfer(summaries, manifest),
            _regions(summaries),
            section("faithfulness", faithfulness_body(summaries)),
            _groups(small, summaries),
            section("examples", examples_body(store, small, manifest)),
            _failures(summaries),
            _table_links(files, out.parent),
        ]
    nav = " ".join(f'<a href="#{k}">{esc(v)}</a>' for k, v in SECTIONS.items())
    data = str(manifest.get("config", {}).get("data", "?"))
    head = (f"<p class=note>Run <code>{esc(Path(run_dir).resolve())}</code> · data <code>{esc(data)}</code></p>"
            f"<nav>{nav}</nav>\n")
    write_file(out, pages.page(f"leam study report · {data}", head + "\n".join(parts), "leam study report"))
    return out


# ---------------------------------------------------------------------------------- page pieces


def html_table(df: pd.DataFrame, caption: str | None = None, index: bool = False) -> str:
    """``page.html_table`` with the study's cells: thresholds as "top p%", percentages with "%"."""
    return pages.html_table(df, caption, index, _cell)


def _cell(column, v) -> str:
    if column in ("percent", "threshold") and isinstance(v, (int, float, np.number)):
        return plots.threshold_label(float(v)) if column == "threshold" else f"{float(v):g}%"
    return format_value(v, column)


def figure(fig, alt: str) -> str:
    return "" if fig is None else img(plots.png_bytes(fig), alt)


def section(key: str, body: str) -> str:
    return f'<section id="{key}"><h2>{esc(SECTIONS[key])}</h2>\n{body}\n</section>'


# ------------------------------------------------------------------------------------- sections


def compute_table(timings: pd.DataFrame) -> pd.DataFrame:
    """Per kind of unit: how many are done, how many of those recorded their time, and the sums of their
    wall and CPU seconds (units run at once overlap: wall seconds add up to more than the elapsed time)."""
    t = timings[timings["kind"] != "data"]
    if t.empty:
        return pd.DataFrame(columns=["units", "done", "timed", "unit hours", "CPU hours"])
    g = t.groupby("kind", sort=False)
    out = pd.DataFrame({"done": g.size(), "timed": g["seconds"].count(), "unit hours": g["seconds"].sum() / 3600,
                        "CPU hours": g["cpu_seconds"].sum() / 3600})
    out.loc["all"] = out.sum()
    return out.rename_axis("units").reset_index()


def sessions_table(manifest: dict) -> pd.DataFrame:
    """One row per ``leam study`` invocation on the run (``run.json``'s "sessions")."""
    rows = [{"started": s.get("started"), "finished": s.get("finished") or "interrupted or running",
             "elapsed (h)": s["seconds"] / 3600 if s.get("seconds") is not None else None,
             "units to do": s.get("units_pending"), "workers": s.get("workers"), "engine": s.get("engine"),
             "device": s.get("device")} for s in manifest.get("sessions", []) if isinstance(s, dict)]
    return pd.DataFrame(rows)


def _setup(manifest: dict, tables: RunTables, small: dict[str, pd.DataFrame], summaries: dict[str, pd.DataFrame],
           timings: pd.DataFrame) -> str:
    config = manifest.get("config", {})
    cfg = pd.DataFrame({"setting": list(config), "value": [_plain(v) for v in config.values()]})
    specs = manifest.get("models", {})
    models = pd.DataFrame([{"model": m, "description": s.get("description", ""),
                            "input": "×".join(str(v) for v in s.get("input_size", [])),
                            "embedding": s.get("embedding_size"),
                            "layers": ", ".join(config.get("layers", {}).get(m) or s.get("default_layers", []))}
                           for m, s in specs.items()])
    images, failures = small["images"], small["failures"]
    counts = []
    for m in config.get("models", []):
        im = images[images["model"] == m] if len(images) else images
        fm = failures[failures["model"] == m] if len(failures) else failures
        counts.append({"model": m, "identities explained": int(im["identity"].nunique()) if len(im) else 0,
                       "photos explained": int((im["role"] == "explained").sum()) if len(im) else 0,
                       "reference photos": int((im["role"] == "reference").sum()) if len(im) else 0,
                       "failures": len(fm)})
    finished = "finished" if manifest.get("finished") else "not finished (tables of the units done so far)"
    rows = ", ".join(f"{k}: {tables.rows(k)}" for k in tables)
    ids = summaries["identities"]
    if ids["identity"].nunique() <= IDENTITY_ROWS:
        wide = ids.pivot_table(index="identity", columns="model", values=["explained", "failures"], sort=False,
                               aggfunc="sum")
        wide.columns = [f"{m}: {what}" for what, m in wide.columns]
        per_identity = html_table(wide.reset_index(), "Photos per identity")
    else:
        per_identity = note(f"{ids['identity'].nunique()} identities: photos per identity in report_tables/"
                            "identities.csv")
    body = [
        f"<p>leam {esc(str(manifest.get('leam_version', '?')))} · run {esc(finished)} · "
        f"{manifest.get('identities', '?')} identities, {manifest.get('photos', '?')} photos in the data · "
        f"table rows: {esc(rows)}.</p>",
        html_table(pd.DataFrame(counts), "Photos per model"),
        html_table(models, "Models"),
        f"<div class=row>{html_table(cfg, 'Configuration (run.json)')}{per_identity}</div>",
    ]
    compute = compute_table(timings)
    if len(compute):
        body.append(html_table(compute, "Compute: time recorded by the units (units done before leam recorded "
                                        "it are not timed)"))
    sessions = sessions_table(manifest)
    if len(sessions):
        body.append(html_table(sessions, "Sessions: each leam study invocation on this run"))
    return section("setup", "\n".join(body))


def glance_section(summaries: dict[str, pd.DataFrame]) -> str:
    """Per model: BC of aggregate maps same vs different at the smallest top-p %, and the occlusion drop
    of LEAM's pixels vs random ones at 1 % (or the nearest percentage the run has)."""
    rows: dict[str, dict] = {}
    sim = summaries.get("similarity", pd.DataFrame())
    bc = sim[(sim["layer"] == "aggregate") & (sim["metric"] == "bc") & sim["threshold"].notna()] if len(sim) else sim
    if len(bc):
        t = bc["threshold"].min()
        for _, r in bc[bc["threshold"] == t].iterrows():
            rows.setdefault(r["model"], {"model": r["model"]}).update({
                f"BC same (top {t:g}%)": r["same_mean"], f"BC different (top {t:g}%)": r["different_mean"],
                "BC p": r["p_value"]})
    occ = summaries.get("occlusion", pd.DataFrame())
    occ = occ[occ["layer"] == "aggregate"] if len(occ) else occ
    if len(occ):
        p = min(occ["percent"].unique(), key=lambda v: (abs(np.log(v)), v))  # 1 % when the run has it
        for _, r in occ[occ["percent"] == p].iterrows():
            rows.setdefault(r["model"], {"model": r["model"]}).update({
                f"drop LEAM ({p:g}%)": r["map_mean"], f"drop random ({p:g}%)": r["random_mean"],
                f"drop random in face ({p:g}%)": r["random_face_mean"], "LEAM / random": r["ratio_random"],
                "occlusion p": r["p_random"]})
    if not rows:
        return section("glance", note("Nothing measured yet."))
    return section("glance", note("Aggregate maps. BC: Bhattacharyya coefficient of pairs of maps; drop: mean drop "
                                  "of cosine similarity when the pixels are blacked out; p: Mann–Whitney (BC) and "
                                  "Wilcoxon signed-rank (occlusion), both two-sided. Details in the sections below.")
                   + html_table(pd.DataFrame(list(rows.values()))))


def _plain(v) -> str:
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_plain(x)}" for k, x in v.items()) or "(defaults)"
    if isinstance(v, (list, tuple)):
        return ", ".join("full map" if x is None else str(x) for x in v)
    return str(v)


def _similarity(tables: RunTables, summaries: dict[str, pd.DataFrame]) -> str:
    if "similarity" not in summaries:
        return section("similarity", note("No map pairs in this run."))
    s = summaries["similarity"]
    intro = ("Each map is taken as a distribution over the pixels of the aligned face (summed to 1), either whole "
             "(“full map”) or kept only at its top-p % pixels. BC: Bhattacharyya coefficient (1 = identical "
             "distributions); EMD: Earth Mover's Distance in pixels of the aligned frame. Pairs of photos of the "
             "same person vs of different people, sampled with the run's seed; p: two-sided Mann–Whitney U test.")
    agg = s[s["layer"] == "aggregate"]
    cols = ["model", "threshold", "metric", "same_mean", "same_std", "same_n", "different_mean", "different_std",
            "different_n", "difference", "p_value"]
    body = [f"<p>{esc(intro)}</p>", html_table(agg[cols], "Aggregate maps")]
    bc = s[(s["metric"] == "bc") & s["threshold"].notna()]
    if len(bc):
        smallest = bc["threshold"].min()
        per_layer = bc[bc["threshold"] == smallest][["model", "layer", "same_mean", "different_mean", "difference",
                                                     "p_value"]]
        body.append(html_table(per_layer, f"BC per layer, top {smallest:g}% pixels"))
        body.append(note("A layer with a coarse feature map (a few cells, e.g. 2×2) upsamples to flat plateaus: "
                         "its top-p % pixels are then ties, taken in raster order, and its top-p BC (up to 1 for "
                         "every pair) says little; the command leam layers shows each layer's resolution."))
    for model in dict.fromkeys(s["model"]):
        pairs = tables.scan("pairs").frame(["model", "layer", "threshold", "kind", "bc", "emd"],
                                           where={"model": model})  # one model's pairs, the columns drawn
        for metric in ("bc", "emd"):
            fig = plots.similarity_figure(pairs, model, metric)
            body.append(figure(fig, f"{model}: {metric} of same vs different pairs"))
    return section("similarity", "\n".join(body))


def _occlusion(summaries: dict[str, pd.DataFrame]) -> str:
    if "occlusion" not in summaries:
        return section("occlusion", note("No occlusion results in this run."))
    s = summaries["occlusion"]
    intro = ("The drop of cosine similarity to the identity's reference when the aggregate map's top-p % pixels "
             "of the aligned face are blacked out, vs as many random pixels anywhere and random pixels in the "
             "face region (the harder baseline), averaged over the run's seeds. ratio: LEAM / random; p: "
             "two-sided Wilcoxon signed-rank test, paired per photo.")
    cols = ["model", "percent", "images", "map_mean", "random_mean", "random_face_mean", "ratio_random",
            "ratio_random_face", "p_random", "p_random_face"]
    agg = s[s["layer"] == "aggregate"]
    body = [f"<p>{esc(intro)}</p>", figure(plots.occlusion_figure(s), "occlusion curves"),
            html_table(agg[cols], "Mean drop of cosine similarity, aggregate map")]
    layers = s[s["layer"] != "aggregate"]
    if len(layers):  # the run occluded single layers' maps too (--occlusion-layers)
        body.append(f"<p>{esc('Each layer’s own map occluded the same way, best LEAM / random-in-face first:')}</p>")
        for p in sorted(s["percent"].unique()):
            t = s[s["percent"] == p].sort_values(["model", "ratio_random_face"], ascending=[True, False])
            body.append(html_table(t[["layer", *cols]], f"Per layer, top {p:g}% pixels"))
    return section("occlusion", "\n".join(body))


def _transfer(summaries: dict[str, pd.DataFrame], manifest: dict) -> str:
    if "transfer" not in summaries:
        why = "one model" if len(manifest.get("config", {}).get("models", [])) < 2 else "transfer switched off"
        return section("transfer", note(f"No transfer results in this run ({why})."))
    s = summaries["transfer"]
    intro = ("Maps of one model (source) occlude the input of another (target), carried through the photo from "
             "one model's aligned frame to the other's; the diagonal is each model's own maps. Last rows: the "
             "target's random baselines from the occlusion study.")
    body, matrices = [f"<p>{esc(intro)}</p>", figure(plots.transfer_figure(s), "transfer matrices")], []
    for p in sorted(s["percent"].unique()):
        matrix = stats.transfer_matrix(s, p)
        base = s[s["percent"] == p].drop_duplicates("target_model").set_index("target_model")
        matrix.loc["random"] = base["random_mean"].reindex(matrix.columns)
        matrix.loc["random in face"] = base["random_face_mean"].reindex(matrix.columns)
        matrices.append(html_table(matrix, f"Mean drop, top {p:g}% pixels", index=True))
    body.append(f"<div class=row>{''.join(matrices)}</div>")
    return section("transfer", "\n".join(body))


def _regions(summaries: dict[str, pd.DataFrame]) -> str:
    if "regions" not in summaries:
        return section("regions", note("No face-region results in this run."))
    s = summaries["regions"]
    intro = ("Share of each map's top-p % pixels falling in each face region (mean over photos), per model and "
             "layer, as the reference study tabulates them; the full tables (every threshold, and the mass per "
             "region) are in report_tables/regions.csv. Variability within a person: the coefficient of variation "
             "(std / mean) of a share over the person's photos, averaged over identities.")
    body = [f"<p>{esc(intro)}</p>"]
    thresholds = sorted(s.loc[s["measure"] == "share", "threshold"].dropna().unique())
    first = thresholds[0] if thresholds else None
    variability = summaries.get("regions_variability", pd.DataFrame())
    for model in dict.fromkeys(s["model"]):
        body.append(f"<h3>{esc(model)}</h3>")
        body.append(img(plots.region_bars_png(s, model), f"{model}: region shares of the aggregate map"))
        if first is not None:
            table = stats.share_table(s, model, first)
            body.append(figure(plots.layer_class_heatmap(table, f"{model}: share of the top {first:g}% pixels"),
                               f"{model}: layer × region heatmap"))
            body.append(html_table(table, f"{model}: share of the top {first:g}% pixels, layer × region", index=True))
        if len(variability):
            v = variability[(variability["model"] == model) & (variability["layer"] == "aggregate")
                            & (variability["measure"] == "share")]
            cv = v.pivot_table(index="class", columns="threshold", values="cv_mean", sort=False)
            cv = cv.reindex([c for c in dict.fromkeys(s.loc[s["model"] == model, "class"]) if c in cv.index])
            cv.columns = [f"top {c:g}%" for c in cv.columns]
            body.append(html_table(cv, f"{model}: mean coefficient of variation within a person (aggregate map)",
                                   index=True))
    return section("regions", "\n".join(body))


def _groups(tables: dict[str, pd.DataFrame], summaries: dict[str, pd.DataFrame]) -> str:
    names = stats.attribute_names(tables["images"])
    if not names:
        return section("groups", note("The data has no image attributes (manifest.csv columns beside path and "
                                      "identity), so there are no groups to compare."))
    intro = ("Every statistic split by an image attribute of the data's manifest: the two groups' means, their "
             "difference (a − b) and a two-sided Mann–Whitney U test. Pairs count in a group when both photos are "
             "in it. All splits (transfer and region shares included) are in report_tables/groups_*.csv.")
    body = [f"<p>{esc(intro)}</p>"]
    cols = ["group_a", "group_b", "a_mean", "a_n", "b_mean", "b_n", "difference", "p_value"]
    for name in names:
        prefix = f"groups_{name}_"
        body.append(f"<h3>By {esc(name)}</h3>")
        occ = summaries.get(f"{prefix}occlusion_drop", pd.DataFrame())
        occ = occ[occ["layer"] == "aggregate"] if len(occ) else occ
        if len(occ):
            fig = plots.group_bars(occ, "percent", ["map", "random"], "kind", f"Occlusion drop by {name}",
                                   "mean drop of cosine similarity")
            body.append(figure(fig, f"occlusion drop by {name}"))
            body.append(html_table(occ[["model", "percent", "kind", *cols]], f"Occlusion drop by {name}"))
        bc = summaries.get(f"{prefix}pairs_bc", pd.DataFrame())
        bc = bc[bc["layer"] == "aggregate"] if len(bc) else bc
        if len(bc):
            body.append(html_table(bc[["model", "threshold", "kind", *cols]], f"BC of aggregate maps by {name}"))
        tr = summaries.get(f"{prefix}transfer_drop", pd.DataFrame())
        if len(tr):
            body.append(html_table(tr[["source_model", "target_model", "percent", *cols]],
                                   f"Transfer drop by {name}"))
    return section("groups", "\n".join(body))


def _failures(summaries: dict[str, pd.DataFrame]) -> str:
    counts = summaries["failures"]
    if counts.empty:
        return section("failures", "<p>No photo or identity failed.</p>")
    total = counts.groupby(["model", "stage"], sort=False)["count"].sum().reset_index()
    body = [note("Photos that could not be used (stage face: unreadable, no face, several faces; stage reference: "
                 "the photo equals its reference), identities left out (stage identity: fewer than two usable "
                 "photos) and entries of the data folder that could not be read (stage data: symbolic link loops, "
                 "broken links). Per photo in the run's failures table."),
            html_table(total, "Failures per model and stage"), html_table(counts, "Failures by reason")]
    return section("failures", "\n".join(body))


def _table_links(files: dict[str, tuple[Path, Path]], base: Path) -> str:
    items = []
    for name, (csv, md) in files.items():
        c, m = (quote(p.relative_to(base).as_posix()) for p in (csv, md))
        items.append(f'<li>{esc(name)}: <a href="{c}">CSV</a> · <a href="{m}">Markdown</a></li>')
    listing = f"<ul>{''.join(items)}</ul>"
    return section("tables", note("Every summary above, full precision, beside this page:") + listing)
