"""``explore``: a study's run folder → a static site to browse its people (``SITE/index.html``, one page per
identity under ``SITE/people/``, pictures under ``SITE/img/``), from the run's tables and stored maps only.

Two passes over the identity units, in ``workers`` spawned processes (``leam.explore.tasks``): the first sums
every unit's maps (for the population priors), the second computes each person's numbers and draws the pictures
the site's manifest does not list as current (``leam.explore.plan``). Nothing here loads or runs a model.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from leam._io import folder_lock, write_file
from leam._paths import MARKER, check_outputs, claim_outputs, marked_files
from leam.errors import LeamError
from leam.explore import maps, pages, people, plan, render, tasks
from leam.explore.jobs import Job, file_stem, population_unit
from leam.explore.jobs import jobs as jobs_of
from leam.explore.tasks import Workers
from leam.report.html import glance_section
from leam.report.page import esc
from leam.report.tables import glance_summaries
from leam.study import faithfulness_stats
from leam.study.run_tables import RunTables, scan_of
from leam.study.scan import per_chunk
from leam.study.store import RunStore

Progress = Callable[[int, int], None]
LOCK = ".explore.lock"  # in the site folder: held by the one ``explore`` writing it
INTRO = ("<p>Every identity of the run: per model, its <b>consensus map</b> (the mean of its photos' aggregate "
         "maps), the distance of that map from the <b>population prior</b> (the mean map of every other person's "
         "photos; EMD in pixels of the aligned face, on a {grid}×{grid} grid), the face regions of the consensus "
         "map's top 1 % pixels read on the person's own photos, the variability of their photos' region shares "
         "(Σ std / Σ mean of the top {var} shares), and the occlusion drop of LEAM's top {occ} pixels minus as "
         "many random ones. <b>unusual</b>: the mean over models of the percentile rank of EMD (1: the farthest "
         "from the population under every model); the table starts with the most unusual people. Click a "
         "column to sort by it; choose a model to see its columns only.</p>")


@dataclass(frozen=True)
class ExploreResult:
    """What ``explore`` wrote: the site folder and its index, how many people, how many (identity, model) jobs
    had pictures drawn and how many picture files, and how long it took."""

    site: Path
    index: Path
    people: int
    drawn: int
    files: int
    seconds: float


def explore(run_dir: str | Path, out: str | Path | None = None, workers: int = 1,
            progress: Progress | None = None) -> ExploreResult:
    """Write the explorer of the run in ``run_dir`` to the folder ``out`` (default ``RUN/explore``); a later call
    draws only the pictures whose inputs changed. ``progress(done, total)`` is called as units are read and
    drawn, and pages written."""
    start = time.perf_counter()
    store = RunStore(run_dir)
    manifest = store.read_manifest()
    if manifest is None:
        raise LeamError(f"{run_dir}: no run.json; expected the folder of a `leam study` run")
    site = Path(out) if out is not None else Path(run_dir) / "explore"
    if site.exists() and not site.is_dir():
        raise LeamError(f"{site}: is a file; give --out the folder to write the explorer in")
    check_site_folder(site, run_dir, manifest.get("config", {}).get("data"))
    check_outputs([site / "index.html", site / plan.MANIFEST], run=run_dir)  # a clash is named before any work
    if "images" not in store.tables():  # once made, a run's tables stay: this holds under the lock too
        raise LeamError(f"{run_dir}: the run has no tables yet; run `leam study` on it to the end first")
    with store.reading(), folder_lock(site / LOCK, "writing this explorer site"):  # one writer; tables kept
        return _write_site(store, manifest, site, workers, progress, start)


def _write_site(store: RunStore, manifest: dict, site: Path, workers: int, progress: Progress | None,
                start: float) -> ExploreResult:
    """``explore`` once its outputs are checked, holding the site's lock and the run's tables'."""
    run_dir = store.root
    tables = store.tables()
    images, failures = tables["images"], tables.get("failures", pd.DataFrame())
    models = [str(m) for m in manifest.get("config", {}).get("models", [])]
    names = people.people(images, failures)
    every = jobs_of(images, models)
    digests = {j.key: d for j in every if (d := store.marker_digest(j.unit)) is not None}
    jobs = [j for j in every if j.key in digests]  # a unit without a whole done marker has no maps to show
    steps = Steps(progress, 2 * len(jobs) + len(names))

    with Workers(workers) as pool:
        totals = population_sums(str(run_dir), jobs, pool, steps)
        layers = {m: people.model_layers(manifest, m) for m in models}
        priors = {j.key for j in jobs if totals[j.model].count > len(j.explained)}
        people_of = population_people(store, models)  # model -> {identity: k} of its specific maps
        specific = {j.key for j in jobs if j.key in priors and j.identity in people_of.get(j.model, {})}
        old = plan.load(site)
        todo = plan.plan(site, old, jobs, digests, layers, {m: plan.population_key(t) for m, t in totals.items()},
                         priors, specific)
        links = {n: pages.Link(n, f"people/{file_stem(n)}.html") for n in names}
        planned = [site / "index.html", site / plan.MANIFEST, *(site / link.href for link in links.values()),
                   *(site / f for f in todo.files()),
                   *(site / f for m in todo.population for f in render.population_files(m))]
        claim_outputs(check_outputs(planned, run=run_dir))
        plan.remove(site, todo.stale)
        for m in todo.population:
            render.draw_population(site, m, totals[m])
        numbers, files = person_numbers(str(run_dir), site, jobs, layers, totals, todo.draw, pool, steps,
                                        plan.Checkpoints(site, old, todo), people_of)
    with_prior = {(j.identity, j.model) for j in jobs if j.key in priors}
    views = specific_views(tables, {j.model for j in jobs if j.key in specific})
    with_specific = {(j.identity, j.model): views[j.model] for j in jobs if j.key in specific}
    index = write_pages(site, manifest, tables, models, names, jobs, numbers, links, layers, with_prior, steps,
                        with_specific)
    plan.save(site, todo.manifest)
    return ExploreResult(site, index, len(names), len(todo.draw), files, time.perf_counter() - start)


def check_site_folder(site: Path, run_dir: str | Path, data: str | None) -> None:
    """Refuse (``LeamError``) a site folder among the photos it shows (the run's data folder or in it), and one
    in the run folder other than a folder of its own directly in it (the default ``RUN/explore``; not the run
    folder, nor its ``tables/`` or ``parts/``). Links are followed: ``SITE/people`` or ``SITE/img`` may not
    lead there either."""
    real, run = _real(site), _real(run_dir)
    photos = _real(data) if data is not None else None
    for folder in (site, site / "people", site / "img"):
        r = _real(folder)
        if photos is not None and (r == photos or photos in r.parents):
            raise LeamError(f"{folder}: the run's data folder {data} or in it; the explorer goes outside the "
                            "photos it shows: choose another --out")
    if (real == run or run in real.parents) and (real.parent != run or (real.exists() and not _is_site(real))):
        raise LeamError(f"{site}: the run folder, or one of its folders; in the run folder the explorer goes in a "
                        f"new folder directly in it (the default: {Path(run_dir) / 'explore'}): choose another "
                        "--out")
    for sub in ("people", "img"):
        r = _real(site / sub)
        if (r == run or run in r.parents) and r != real / sub:
            raise LeamError(f"{site / sub}: leads into the run folder {run_dir}, where the explorer writes only "
                            "its own folder: choose another --out")


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(path))


def _is_site(folder: Path) -> bool:
    """Whether ``folder`` holds an explorer site leam wrote (its marker lists the index), or nothing but what a
    stopped first run left (its lock, a marker)."""
    return "index.html" in marked_files(folder) or {p.name for p in folder.iterdir()} <= {LOCK, MARKER}


class Steps:
    """Counts the steps done and calls ``progress(done, total)``."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def __call__(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)


# ------------------------------------------------------------------------------------------ the two passes


def population_sums(run_dir: str, jobs: list[Job], workers: Workers, step: Callable[[], None]
                    ) -> dict[str, maps.Sums]:
    """Per model: the ``Sums`` of every job's explained photos (exact: the order they arrive in does not
    matter)."""
    totals: dict[str, maps.Sums] = {}
    for k, s in workers.run(tasks.unit_sums, [(run_dir, j) for j in jobs]):
        model = jobs[k].model
        t = totals.get(model)
        totals[model] = s if t is None else maps.Sums(t.count + s.count, t.maps + s.maps, t.chips + s.chips)
        step()
    return totals


def person_numbers(run_dir: str, site: Path, jobs: list[Job], layers: dict[str, list[str]],
                   totals: dict[str, maps.Sums], draw: dict[str, set[str]], workers: Workers,
                   step: Callable[[], None], checkpoints: plan.Checkpoints,
                   people_of: dict[str, dict[str, int]] | None = None
                   ) -> tuple[dict[tuple[str, str], maps.Person], int]:
    """({(identity, model): numbers}, picture files written) of the second pass; each drawn job is told to
    ``checkpoints``. ``people_of``: ``population_people``, whose specific maps are drawn."""
    light = {m: maps.Sums(t.count, t.maps) for m, t in totals.items()}  # the workers need no chips
    people_of = people_of or {}
    todo = [(run_dir, site, j, layers[j.model], light[j.model], draw.get(j.key, set()),
             people_of.get(j.model, {}).get(j.identity)) for j in jobs]
    found, files = {}, 0
    for k, (person, written) in workers.run(tasks.person, todo):
        found[k] = person
        files += written
        checkpoints.done(jobs[k].key)
        step()
    return {(j.identity, j.model): found[k] for k, j in enumerate(jobs)}, files  # in the jobs' order


def population_people(store: RunStore, models: list[str]) -> dict[str, dict[str, int]]:
    """Per model whose population unit (``leam study --faithfulness``) is done: {identity: k} of the people
    whose specific map it holds (``specific/<k>``); models without one are left out."""
    out = {}
    for m in models:
        unit = population_unit(m)
        found = store.unit_arrays(unit) if store.is_done(unit) else None
        if found is None:
            continue
        with found:
            if "people" in found.files:
                out[m] = {str(p): k for k, p in enumerate(found["people"]) if f"specific/{k}" in found.files}
    return out


def specific_views(tables: RunTables, models: set[str]) -> dict[str, pages.SpecificView]:
    """Per model of ``models``: its specific map's validation (``faithfulness_stats.specific_validation_of`` of
    the run's faithfulness table, as the report summarises it) and verdict."""
    if not models:
        return {}
    validation = faithfulness_stats.specific_validation_of(scan_of(tables, "faithfulness")
                                                           if "faithfulness" in tables else None)
    said = faithfulness_stats.specific_verdicts(validation)
    return {m: pages.specific_view(m, validation, said.get(m)) for m in models}


# ------------------------------------------------------------------------------------------------- pages


def write_pages(site: Path, manifest: dict, tables: RunTables, models: list[str], names: list[str],
                jobs: list[Job], numbers: dict[tuple[str, str], maps.Person], links: dict[str, pages.Link],
                layers: dict[str, list[str]], priors: set[tuple[str, str]], step: Callable[[], None],
                specific: dict[tuple[str, str], pages.SpecificView] | None = None) -> Path:
    """Write every person's page and then ``index.html`` (``priors``: the (identity, model) pairs with a
    population prior; ``specific``: those with a specific map drawn, and its validation); returns the index's
    path."""
    specific = specific or {}
    images = tables["images"]
    failures = tables.get("failures", pd.DataFrame())
    variability, var_p = people.variability(_top_shares(tables, manifest))
    occlusion = pd.DataFrame()
    if "occlusion" in tables and not (scan := scan_of(tables, "occlusion")).empty:  # a person at a time
        occlusion = per_chunk(scan, ["model", "identity"], people.occlusion, where={"layer": "aggregate"})
    gain, occ_p = people.occlusion_gain(occlusion)
    per_model = people.per_model(numbers, variability, gain)
    table = people_table(images, names, per_model)
    attributes = [c.removeprefix("attr_") for c in table.columns if c.startswith("attr_")]
    data = str(manifest.get("config", {}).get("data", "?"))
    intro = INTRO.format(grid=maps.EMD_GRID, var=_percent(var_p), occ=_percent(occ_p))
    index = site / "index.html"  # written last: a site with an index is whole (a full disk stops it before)
    index_html = pages.index_page(f"leam explorer · {data}", intro, glance_section(_glance(tables)), table,
                                  per_model, models, attributes, links)
    by_job = {(j.identity, j.model): j for j in jobs}
    sizes = {m: tuple(manifest.get("models", {}).get(m, {}).get("input_size", (112, 112))) for m in models}
    photos = _groups(images, ["identity", "model"])
    drops = _groups(occlusion, ["identity", "model"])
    rows = _groups(per_model, ["identity"])
    fails = _groups(failures, ["identity"])
    empty = pd.DataFrame(columns=["model", "identity", "image", "stage", "reason"])
    order, facts = list(table["identity"]), table.set_index("identity")
    for k, name in enumerate(order):
        sections = [pages.model_section(i, m, by_job.get((name, m)), numbers.get((name, m)),
                                        photos.get((name, m), images.iloc[0:0]),
                                        drops.get((name, m), occlusion.iloc[0:0]), layers[m], sizes[m],
                                        (name, m) in priors, specific.get((name, m)))
                    for i, m in enumerate(models)]
        mine = fails.get((name,), empty)
        page = pages.person_page(name, _facts(facts.loc[name], attributes), links[order[k - 1]] if k else None,
                                 links[order[k + 1]] if k + 1 < len(order) else None,
                                 _summary(rows.get((name,), per_model.iloc[0:0]), mine), sections, mine)
        write_file(site / links[name].href, page)
        step()
    write_file(index, index_html)
    return index


def people_table(images: pd.DataFrame, names: list[str], per_model: pd.DataFrame) -> pd.DataFrame:
    """One row per identity (photos, ``attr_<name>`` per attribute, unusual), most unusual first (then by name);
    an attribute may be called anything, ``photos`` or ``<i>g</i>`` too."""
    attrs = people.attributes(images)
    table = pd.DataFrame({"identity": names})
    table["photos"] = table["identity"].map(people.photo_counts(images)).fillna(0).astype(int)
    for a in attrs.columns:
        table[f"attr_{a}"] = table["identity"].map(attrs[a]).fillna("")
    table["unusual"] = table["identity"].map(people.unusualness(per_model))
    return table.sort_values(["unusual", "identity"], ascending=[False, True], na_position="last", kind="stable")


def _glance(tables: RunTables) -> dict[str, pd.DataFrame]:
    """The summaries the report's "At a glance" table reads, read out of core."""
    return glance_summaries({name: scan_of(tables, name) for name in ("pairs", "occlusion") if name in tables})


def _top_shares(tables: RunTables, manifest: dict) -> pd.DataFrame:
    """The region rows ``people.variability`` reads (the aggregate map's shares at the threshold nearest
    ``people.TOP_PERCENT`` of the run's thresholds), and no others: the full table is far larger."""
    if "regions" not in tables:
        return pd.DataFrame()
    p = people.nearest(manifest.get("config", {}).get("thresholds") or [], people.TOP_PERCENT)
    if p is None:
        return pd.DataFrame()
    return scan_of(tables, "regions").frame(where={"layer": "aggregate", "measure": "share", "threshold": p})


def _groups(table: pd.DataFrame, keys: list[str]) -> dict[tuple, pd.DataFrame]:
    """{key tuple: rows} of ``table`` grouped by ``keys`` (empty when the table lacks them)."""
    if table.empty or not set(keys) <= set(table.columns):
        return {}
    return {(k if isinstance(k, tuple) else (k,)): g for k, g in table.groupby(keys, sort=False)}


def _percent(p: float | None) -> str:
    return "–" if p is None else f"{p:g} %"


def _facts(row: pd.Series, attributes: list[str]) -> str:
    said = [f"{esc(a)}: {esc(row[f'attr_{a}'] or 'unknown')}" for a in attributes]
    return f"<p>{int(row['photos'])} photos · " + " · ".join(said) + "</p>" if said else \
        f"<p>{int(row['photos'])} photos</p>"


def _summary(rows: pd.DataFrame, failures: pd.DataFrame) -> pd.DataFrame:
    """The person's numbers per model, for the top of their page."""
    out = rows[["model", "photos", "emd", "bc", "variability", "drop_map", "drop_random", "gain"]].rename(columns={
        "photos": "photos explained", "emd": "EMD from the prior", "bc": "BC with the prior",
        "drop_map": "drop LEAM", "drop_random": "drop random", "gain": "LEAM − random"})
    counts = failures.groupby("model").size() if len(failures) else pd.Series(dtype=int)
    return out.assign(failures=out["model"].map(counts).fillna(0).astype(int))
