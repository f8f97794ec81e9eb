"""The explorer's HTML: ``index.html`` (the study at a glance, then every identity in a sortable, filterable
table) and one page per identity. Pages over ``leam.report.page`` (its stylesheet, ``esc`` and tables) with the
explorer's own style and scripts inlined (``leam.explore.assets``); pictures are files under ``img/``, linked
and lazy-loaded. Everything a user named (identities, photos, attribute values, model and layer names) is
escaped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

import pandas as pd

from leam.explore import render
from leam.explore.assets import CSS, INDEX_JS, PERSON_JS, script_json
from leam.explore.jobs import Job
from leam.explore.maps import Person
from leam.report.html import html_table as study_table
from leam.report.page import esc, html_table, note, page, shown
from leam.report.tables import format_value

THUMB = 96  # px, the width thumbnails are shown at (the files are the chips' own size)
MODEL_COLUMNS = (  # per model in the index: (column, header, what it is)
    ("emd", "EMD", "Earth Mover's Distance (pixels of the aligned face) of the person's consensus map from the "
                   "population prior: the default order, largest first"),
    ("bc", "BC", "Bhattacharyya coefficient of the consensus map and the population prior (1: the same)"),
    ("variability", "variability", "how much the region shares vary over the person's photos (Σ std / Σ mean)"),
    ("gain", "LEAM − random", "mean drop of cosine similarity when LEAM's top pixels are blacked out, minus as "
                              "many random pixels"),
    ("regions", "top-1 % regions", "face regions of the consensus map's top 1 % pixels"),
)


@dataclass(frozen=True)
class Link:
    """A person's page: their name and the page's path relative to the site."""

    name: str
    href: str


def _number(value: object) -> str:
    """A numeric cell with its sort key (``data-v``: empty for missing, sorted last)."""
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    return f'<td data-v="{"" if missing else repr(float(value))}">{esc(format_value(value))}</td>'


def index_page(title: str, intro: str, glance: str, people: pd.DataFrame, per_model: pd.DataFrame,
               models: Sequence[str], attributes: Sequence[str], links: dict[str, Link]) -> bytes:
    """``index.html``: ``glance`` (HTML), then a table of ``people`` (identity, photos, ``attr_<a>`` for each ``a``
    of ``attributes``, unusual; in the order shown first) with ``per_model``'s columns for each of ``models``."""
    general = [("person", "text"), ("photos", "number"), *((a, "text") for a in attributes), ("unusual", "number")]
    head1 = f'<th colspan="{len(general)}"></th>' + "".join(
        f'<th class=t colspan="{len(MODEL_COLUMNS)}" data-model="{k}">{esc(m)}</th>' for k, m in enumerate(models))
    head2 = "".join(f'<th class=t data-type="{kind}">{esc(name)}</th>' for name, kind in general)
    for k in range(len(models)):
        head2 += "".join(f'<th{" class=t" if c == "regions" else ""} data-model="{k}" '
                         f'data-type="{"text" if c == "regions" else "number"}" title="{esc(what)}">{esc(header)}</th>'
                         for c, header, what in MODEL_COLUMNS)
    cells = {(r.identity, r.model): r for r in per_model.itertuples(index=False)}
    body = []
    for row in people.to_dict("records"):  # not itertuples: it renames columns that are no Python names
        identity = row["identity"]
        have = [k for k, m in enumerate(models) if (identity, m) in cells]
        values = [row.get(f"attr_{a}") for a in attributes]
        attrs = "".join(f' data-a{j}="{esc(json.dumps(_values(v)))}"' for j, v in enumerate(values))
        tds = [f'<td class=t><a href="{quote(links[identity].href)}">{esc(identity)}</a></td>',
               _number(row["photos"]), *(f"<td class=t>{esc(v or '')}</td>" for v in values),
               _number(row["unusual"])]
        for k, m in enumerate(models):
            c = cells.get((identity, m))
            for col, _, _ in MODEL_COLUMNS:
                value = getattr(c, col) if c is not None else None
                tds.append(f'<td class=t data-model="{k}">{esc(value or "")}</td>' if col == "regions"
                           else _number(value).replace("<td ", f'<td data-model="{k}" ', 1))
        body.append(f"<tr data-m=\"{esc(json.dumps(have))}\"{attrs}>{''.join(tds)}</tr>")
    meta = {"sort": len(general) - 1, "models": list(models),
            "distance": [len(general) + k * len(MODEL_COLUMNS) for k in range(len(models))]}
    table = (f'<table id="people"><thead><tr>{head1}</tr><tr>{head2}</tr></thead>'
             f"<tbody>{''.join(body)}</tbody></table>")
    html = (CSS + intro + glance + "<h2 id=people-list>People</h2>" + _controls(people, models, attributes)
            + table + f'<script type="application/json" id="explore-meta">{script_json(meta)}</script>' + INDEX_JS)
    return page(title, html)


def _values(text: object) -> list[str]:
    """An identity's attribute values (``people.attributes`` joins them with ", ") as a page shows them
    (``shown``): the filter compares a row's values with its options' values, which ``esc`` writes so."""
    return [shown(v) for v in str(text or "").split(", ") if v]


def _controls(people: pd.DataFrame, models: Sequence[str], attributes: Sequence[str]) -> str:
    parts = ['<label>search <input id="search" type="search" placeholder="name"></label>',
             '<label>model <select id="model"><option value="">all models</option>'
             + "".join(f'<option value="{k}">{esc(m)}</option>' for k, m in enumerate(models)) + "</select></label>"]
    for j, a in enumerate(attributes):
        column = f"attr_{a}"
        options = sorted({v for text in people[column] for v in _values(text)}) if column in people else []
        parts.append(f'<label>{esc(a)} <select data-attr="{j}"><option value="">all</option>'
                     + "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in options) + "</select></label>")
    parts.append(f'<span class=note>shown: <span id="shown">{len(people)} of {len(people)}</span></span>')
    return f"<div class=controls>{''.join(parts)}</div>"


# ----------------------------------------------------------------------------------------------- a person


def thumb(chip: str, overlay: str | None, title: str, size: tuple[int, int], width: int = THUMB) -> str:
    """A chip (site-relative path), with a map laid over it at half opacity, as a link that enlarges it (its
    file without JavaScript); both pictures lazy-loaded."""
    h, w = size
    dims = f'width="{width}" height="{round(width * h / w)}"'
    top = "" if overlay is None else f'<img class=map loading="lazy" src="../{quote(overlay)}" {dims} alt="">'
    return (f'<a class="ov zoom" href="../{quote(overlay or chip)}" title="{esc(title)}">'
            f'<img loading="lazy" src="../{quote(chip)}" {dims} alt="{esc(title)}">{top}</a>')


def person_page(identity: str, facts: str, prev: Link | None, next_: Link | None, summary: pd.DataFrame,
                sections: Sequence[str], failures: pd.DataFrame) -> bytes:
    """One identity's page: links to the index and the previous and next person (in the index's first order),
    ``facts`` (HTML), the ``summary`` table per model, each model's section and the person's failures."""
    nav = ['<a href="../index.html">all people</a>']
    if prev:
        nav.append(f'previous: <a href="../{quote(prev.href)}">{esc(prev.name)}</a>')
    if next_:
        nav.append(f'next: <a href="../{quote(next_.href)}">{esc(next_.name)}</a>')
    fails = (html_table(failures[["model", "image", "stage", "reason"]]) if len(failures)
             else "<p>No photo of this person failed.</p>")
    body = [CSS, f"<nav>{' · '.join(nav)}</nav>", facts, html_table(summary, "Per model"), *sections,
            f'<section id="failures"><h2>Failures</h2>{fails}</section>', PERSON_JS]
    return page(f"{identity} · leam explorer", "\n".join(body), identity)


def model_section(k: int, model: str, job: Job | None, person: Person | None, photos: pd.DataFrame,
                  occlusion: pd.DataFrame, layers: Sequence[str], size: tuple[int, int], prior: bool,
                  specific: SpecificView | None = None) -> str:
    """A model's part of a person's page: consensus, population and (with a ``prior``) difference pictures,
    (with ``specific``) the consensus, the prior and the specific map side by side with its validation, region
    shares against the population's, occlusion drops (the person's rows of ``people.occlusion``), and every
    photo with its aggregate and layer maps (``photos``: the person's image rows of the model; ``job`` None: no
    pictures of the model)."""
    head = f'<section id="model-{k}"><h2>{esc(model)}</h2>'
    if job is None or person is None:
        return head + note("No maps of this person under this model (every photo failed, or the run's parts/ "
                           "folder lacks the unit).") + "</section>"
    parts = [head, _pictures(job, model, size, prior)]
    if specific is not None and prior:
        parts.append(_specific(job, specific, size))
    parts.append(_shares(person))
    if len(occlusion):
        drops = occlusion.sort_values("percent")[["percent", "map", "random", "random_face", "photos"]]
        parts.append(study_table(drops.rename(columns={"map": "LEAM", "random_face": "random in face"}),
                                 "Mean drop of cosine similarity when the top pixels are blacked out (aggregate map)"))
    parts.append(_photos(job, photos, layers, size))
    return "\n".join(parts) + "</section>"


def _pictures(job: Job, model: str, size: tuple[int, int], prior: bool) -> str:
    face = render.person_file(job, render.FACE)
    pop_map, pop_face = render.population_files(model)
    figures = [
        (thumb(face, render.person_file(job, render.CONSENSUS), "consensus map", size, 160),
         "Consensus: the mean of the person's aggregate maps, over their mean face (scaled to its own range)"),
        (thumb(pop_face, pop_map, "population map", size, 160),
         "Population: the mean aggregate map of every person's photos, over the mean face"),
    ]
    if prior:
        figures.append((thumb(render.person_file(job, render.DIFFERENCE), None, "difference from the population "
                              "prior", size, 160),
                        "Difference from the population prior (the other people's mean map), each summed to 1: "
                        "red where the person's maps weigh more, blue less"))
    return "<div class=pics>" + "".join(f"<figure>{p}<figcaption>{esc(c)}</figcaption></figure>"
                                        for p, c in figures) + "</div>"


@dataclass(frozen=True)
class SpecificView:
    """What a person's page says of a model's specific map (``specific_view``)."""

    validated: str  # "every": under every fill scored; "some": under some; "": not validated
    sentence: str  # the model's verdict (``faithfulness_stats.specific_verdicts``), or why there is none
    numbers: pd.DataFrame  # per test and fill: photos, mean difference, its 95 % CI, p (Holm), holds


VALIDATION_COLUMNS = {"test": "test", "fill": "fill", "n": "photos", "mean_diff": "mean difference",
                      "ci_low": "95 % CI low", "ci_high": "95 % CI high", "p_holm": "Holm p", "holds": "holds"}


def specific_view(model: str, validation: pd.DataFrame, sentence: str | None) -> SpecificView:
    """The ``SpecificView`` of ``model`` from the run's ``faithfulness_stats.specific_validation`` rows and the
    model's sentence; validated where both tests hold under a fill (as ``specific_verdicts`` says)."""
    rows = validation[validation["model"] == model] if len(validation) else validation
    if rows.empty or sentence is None:
        return SpecificView("", f"{model}: the run has no validation of the specific map for this model (no "
                                "faithfulness rows of it): not validated", pd.DataFrame())
    fills = list(dict.fromkeys(rows["fill"]))
    passed = [f for f in fills if rows[rows["fill"] == f]["holds"].all()
              and rows[rows["fill"] == f]["test"].nunique() == rows["test"].nunique()]
    validated = "every" if len(passed) == len(fills) else "some" if passed else ""
    numbers = rows[list(VALIDATION_COLUMNS)].rename(columns=VALIDATION_COLUMNS)
    return SpecificView(validated, sentence, numbers.assign(holds=numbers["holds"].map({True: "yes", False: "no"})))


def _specific(job: Job, view: SpecificView, size: tuple[int, int]) -> str:
    """The consensus, the prior it is compared with and the specific map, over the person's mean face; the map
    named "what sets this person apart" only where the faithfulness phase validated it."""
    face = render.person_file(job, render.FACE)
    if view.validated:
        title = "what sets this person apart" + ("" if view.validated == "every"
                                                  else " (validated under some fills only)")
        caption = ("Specific map: where the model looks for this person more than for people in general (the "
                   "consensus less the prior, clipped at 0, scaled to [0, 1])")
    else:
        title = "consensus − prior (not validated)"
        caption = ("consensus − prior, clipped at 0 (not validated: not shown as what sets this person apart; "
                   "deleting its top pixels did not pass the faithfulness phase's tests)")
    figures = [
        (thumb(face, render.person_file(job, render.CONSENSUS), "consensus map", size, 160),
         "Consensus: the mean of the person's maps (scaled to [0, 1])"),
        (thumb(face, render.person_file(job, render.PRIOR), "population prior", size, 160),
         "Population prior: the mean map of every other person's photos (scaled to [0, 1])"),
        (thumb(face, render.person_file(job, render.SPECIFIC), title, size, 160), caption),
    ]
    pics = "".join(f"<figure>{p}<figcaption>{esc(c)}</figcaption></figure>" for p, c in figures)
    cls = "specific" if view.validated else "specific unvalidated"
    table = (study_table(view.numbers, "The specific map's validation by deletion on photos left out of the "
                         "person's consensus (paired Wilcoxon, Holm-corrected)") if len(view.numbers) else "")
    return (f'<div class="{cls}"><h3>{esc(title[:1].upper() + title[1:])}</h3><div class=pics>{pics}</div>'
            f"<p>{esc(view.sentence)}</p>{table}</div>")


def _shares(person: Person) -> str:
    rows = []
    for c, (mine, theirs) in person.shares.items():
        if mine == 0 and not theirs > 0:
            continue  # a region neither map's top pixels touch
        pop = "" if math.isnan(theirs) else (f'<span class="bar pop" style="width:{200 * theirs:.0f}px"></span> '
                                             f"{100 * theirs:.1f}%")
        rows.append(f'<tr><td class=t>{esc(c)}</td><td class=t><span class="bar me" style="width:{200 * mine:.0f}px">'
                    f"</span> {100 * mine:.1f}%</td><td class=t>{pop}</td></tr>")
    return ("<table class=bars><caption>Face regions of the top 1 % pixels, read on this person's photos (mean over "
            "them): the consensus map vs the population prior</caption><thead><tr><th class=t>region</th>"
            "<th class=t>consensus</th><th class=t>population prior</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _photos(job: Job, photos: pd.DataFrame, layers: Sequence[str], size: tuple[int, int]) -> str:
    head = "<tr><th class=t>photo</th><th class=t>aligned face</th><th class=t>aggregate</th>" + "".join(
        f"<th class=t>{esc(n)}</th>" for n in layers) + "</tr>"
    rows = []
    for r in photos.sort_values("array_index").itertuples(index=False):
        i = int(r.array_index)
        short = str(r.image).rsplit("/", 1)[-1]  # the file's name; its path in DATA as the cell's title
        what = short if r.role == "explained" else f"{short} (the reference)"
        cos = f"<br><small>cosine to the reference {r.cosine:.3f}</small>" if r.role == "explained" else ""
        chip = render.chip_file(job, i)
        cells = [f"<td class='t photo' title='{esc(r.image)}'>{esc(what)}{cos}</td>",
                 f"<td class=t>{thumb(chip, None, f'{r.image}: aligned face', size)}</td>"]
        if r.role == "explained":
            maps = [(render.map_file(job, i, None), "aggregate"),
                    *((render.map_file(job, i, n), layer) for n, layer in enumerate(layers))]
            cells += [f"<td class=t>{thumb(chip, f, f'{r.image}: {name}', size)}</td>" for f, name in maps]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (f"<table><caption>Photos: aligned faces and maps (click one to enlarge)</caption><thead>{head}</thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")
