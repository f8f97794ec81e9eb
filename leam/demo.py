"""``leam demo``: explain every photo of a folder against another photo of the same person.

The output folder holds one sub-folder per photo (as written by ``write_explanation``) and an
``index.html`` page that shows them all; a re-run skips photos already done.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pandas as pd
from tqdm import tqdm

from leam._paths import check_outputs, claim_outputs, unique_names
from leam.dataset import identity_folders, text_name
from leam.errors import LeamError
from leam.explain import embed_faces, explain_face
from leam.face import align_file, align_photo
from leam.image import load_image
from leam.metrics.regions import DEFAULT_THRESHOLDS, identity_summary
from leam.models import FaceModel
from leam.outputs import atomic_write_bytes, explanation_files, write_explanation
from leam.parse import FaceParser, create_parser
from leam.regions import PARSE_FILES, REGIONS_FILES, explanation_regions, parse_face, write_parse, write_regions
from leam.render import shares_bar_chart


@dataclass
class DemoItem:
    identity: str
    image: Path
    reference: Path
    folder: str  # relative to the output root
    summary: dict | None = None
    error: str | None = None

    @property
    def identity_folder(self) -> str:
        """The identity's folder, relative to the output root."""
        return self.folder.rpartition("/")[0]


ROOT_FILES = ("index.html", "regions_all.csv", "regions_identity.csv", "regions_overall.png")
IDENTITY_CHART = "regions_identity.png"  # in each identity's folder


def plan_demo(data: str | Path, limit: int | None = None) -> list[DemoItem]:
    """Each image paired with the next image (cyclically) of the same identity; folder names unique by
    construction (``a.jpg`` and ``a.png``, identities that differ only in case, names of the output files)."""
    if limit is not None and limit < 1:
        raise LeamError(f"--limit is the number of photos to explain, at least 1; got {limit}")
    identities = {k: v for k, v in identity_folders(data).items() if len(v) >= 2}
    items = []
    for identity, folder in zip(identities, unique_names(list(identities), reserved=ROOT_FILES)):
        images = identities[identity]
        stems = unique_names([text_name(image.stem) for image in images], reserved=[IDENTITY_CHART])
        for i, (image, stem) in enumerate(zip(images, stems)):
            items.append(DemoItem(identity, image, images[(i + 1) % len(images)], f"{folder}/{stem}"))
    if not items:
        raise LeamError(f"{data}: no identity folder with at least two images (expected <identity>/<image files>)")
    return items[:limit] if limit else items


def demo_outputs(items: Sequence[DemoItem], out: Path, layers: Sequence[str]) -> list[Path]:
    """Every file ``run_demo`` writes for ``items`` into ``out``."""
    files = [out / name for name in ROOT_FILES]
    files += list(dict.fromkeys(out / Path(item.folder).parent / IDENTITY_CHART for item in items))
    for item in items:
        folder = out / item.folder
        files += [*explanation_files(folder, layers), *(folder / f for f in PARSE_FILES + REGIONS_FILES)]
    return files


def run_demo(
    model: FaceModel,
    data: str | Path,
    out: str | Path,
    layers: Sequence[str] | None = None,
    direction: str = "loss",
    limit: int | None = None,
    largest_face: bool = True,
    progress: bool = True,
    parser: FaceParser | None = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> list[DemoItem]:
    """Explain every planned photo into ``out`` with its face regions, summarise the regions per
    identity, and write ``out/index.html``; returns the items."""
    out = Path(out)
    parser = parser or create_parser()
    items = plan_demo(data, limit)
    layers = list(layers or model.spec.default_layers)
    photos = [p for images in identity_folders(data).values() for p in images]
    claim_outputs(check_outputs(demo_outputs(items, out, layers), {"photo of the data folder": photos}))
    for item in tqdm(items, desc="explaining", unit="photo", disable=not progress):
        folder = out / item.folder
        done = folder / "summary.json"
        if done.is_file():
            item.summary = json.loads(done.read_text())
            continue
        try:
            photo = load_image(item.image)
            face = align_photo(photo, model.spec.template, text_name(str(item.image)), largest_face)
            ref_face = align_file(item.reference, model.spec.template, largest_face)
            ref = embed_faces(model, [ref_face])[0]
            ex = explain_face(model, face, ref, layers, direction, references=[text_name(str(item.reference))])
            labels = parse_face(parser, photo, face)
            write_parse(labels, face, folder)
            write_regions(ex, explanation_regions(ex, labels, thresholds), folder)
            item.summary = write_explanation(ex, folder, photo)  # summary.json last: marks the photo done
        except LeamError as exc:
            item.error = str(exc)
    summarise_regions(items, out)
    write_index(items, out, model.spec.name)
    return items


def summarise_regions(items: Sequence[DemoItem], out: Path, layer: str = "aggregate") -> pd.DataFrame | None:
    """``regions_all.csv`` (every photo), ``regions_identity.csv`` (mean, std, CV per identity) and
    one chart per identity (``<identity>/regions_identity.png``) and over all photos."""
    tables = []
    for item in items:
        if item.summary:
            t = pd.read_csv(out / item.folder / "regions.csv")
            tables.append(t.assign(identity=item.identity, image=text_name(item.image.name)))
    if not tables:
        return None
    table = pd.concat(tables, ignore_index=True)
    atomic_write_bytes(out / "regions_all.csv", table.to_csv(index=False).encode())
    summary = identity_summary(table)
    atomic_write_bytes(out / "regions_identity.csv", summary.to_csv(index=False).encode())
    folders = {item.identity: item.identity_folder for item in items}
    classes = list(dict.fromkeys(table["class"]))
    shares = summary[(summary["layer"] == layer) & (summary["measure"] == "share")]
    for identity, rows in shares.groupby("identity"):
        means = {p: dict(zip(r["class"], r["mean"])) for p, r in rows.groupby("threshold")}
        errors = {p: dict(zip(r["class"], r["std"].fillna(0))) for p, r in rows.groupby("threshold")}
        n = int(rows["images"].max())
        shares_bar_chart(means, classes, f"{identity}: {layer} map, mean ± std over {n} photos",
                         out / folders[identity] / IDENTITY_CHART, errors)
    overall = table[(table["layer"] == layer) & (table["measure"] == "share")]
    g = overall.groupby(["threshold", "class"])["value"]
    means = {p: dict(zip(r.index.get_level_values("class"), r)) for p, r in g.mean().groupby(level=0)}
    errors = {p: dict(zip(r.index.get_level_values("class"), r)) for p, r in g.std().groupby(level=0)}
    shares_bar_chart(means, classes, f"all photos ({len(tables)}): {layer} map, mean ± std",
                     out / "regions_overall.png", errors)
    return table


def write_index(items: Sequence[DemoItem], out: Path, model: str) -> Path:
    """A self-contained HTML page (no remote resources) listing every photo with its pictures."""
    esc = html.escape
    ok = [i for i in items if i.summary]
    failed = [i for i in items if i.error]
    rows = []
    for item in ok:
        href = quote(item.folder)
        s = item.summary
        rows.append(
            "<tr>"
            f"<td>{esc(item.identity)}</td>"
            f"<td>{esc(text_name(item.image.name))}<br><small>reference: {esc(text_name(item.reference.name))}</small>"
            "</td>"
            f"<td>{s['cosine_similarity']:.3f}</td><td>{s['euclidean_distance']:.3f}</td>"
            f'<td><a href="{href}/photo_aggregate.png"><img src="{href}/photo_aggregate.png" height="150"></a></td>'
            f'<td><a href="{href}/grid.png"><img src="{href}/grid.png" height="150"></a></td>'
            f'<td><a href="{href}/regions.png"><img src="{href}/regions.png" height="150"></a></td>'
            f'<td><a href="{href}/maps.npz">maps.npz</a> · '
            f'<a href="{href}/summary.json">summary.json</a> · <a href="{href}/layers/">layers</a></td>'
            "</tr>"
        )
    fail_rows = "".join(f"<li>{esc(text_name(str(i.image)))}: {esc(i.error or '')}</li>" for i in failed)
    identities = {i.identity: i.identity_folder for i in ok}
    id_rows = "".join(
        f'<tr><td>{esc(name)}</td><td><a href="{quote(folder)}/{IDENTITY_CHART}">'
        f'<img src="{quote(folder)}/{IDENTITY_CHART}" height="170"></a></td></tr>'
        for name, folder in identities.items()
        if (out / folder / IDENTITY_CHART).is_file()
    )
    overall = '<p><img src="regions_overall.png" height="260"></p>' if (out / "regions_overall.png").is_file() else ""
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>leam demo · {esc(model)}</title>
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse}}
td,th{{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}}</style></head>
<body><h1>LEAM maps · model {esc(model)}</h1>
<p>{len(ok)} photos explained, {len(failed)} failed. Each photo is explained against another photo of the
same person (the reference). Contents: <a href="#photos">per photo</a> · <a href="#identities">per identity</a>
· <a href="#failed">failed</a> · tables <a href="regions_all.csv">regions_all.csv</a> (every photo, layer,
class and threshold) and <a href="regions_identity.csv">regions_identity.csv</a> (mean, std and coefficient
of variation per identity).</p>
<h2>Face regions over all photos</h2>
<p>Share of the aggregate map's top-p % pixels falling in each face region (mean ± std over photos).</p>
{overall}
<h2 id="photos">Per photo</h2>
<p>Columns: cosine similarity and Euclidean distance of the two embeddings, the aggregate map drawn back
onto the photo, all layers on the aligned face, and the face regions with their shares of the top pixels.
Each folder holds <code>maps.npz</code> (one array per layer plus <code>aggregate</code>, in the aligned
frame), overlays per layer in <code>layers/</code>, <code>aggregate.png</code>,
<code>photo_aggregate.png</code>, <code>grid.png</code>, the label map <code>labels.png</code>
(<code>legend.json</code>), <code>regions.csv</code>, <code>regions.png</code> and
<code>summary.json</code>.</p>
<table><tr><th>identity</th><th>photo</th><th>cos</th><th>dist</th><th>on the photo</th>
<th>all layers</th><th>face regions</th><th>files</th></tr>
{''.join(rows)}</table>
<h2 id="identities">Per identity</h2>
<table>{id_rows}</table>
<h2 id="failed">Failed</h2><ul>{fail_rows or '<li>none</li>'}</ul></body></html>
"""
    path = out / "index.html"
    atomic_write_bytes(path, page.encode("utf-8"))
    return path
