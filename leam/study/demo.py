"""``leam demo``: explain every photo of a folder against another photo of the same person.

The output folder holds one sub-folder per photo (as written by ``write_explanation``), the face
regions summarised per identity, and an ``index.html`` page that shows them all
(``leam.report.demo``); a re-run skips photos already done.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from leam._io import text_name, write_file
from leam._paths import check_outputs, claim_outputs, unique_names
from leam.data.folders import identity_folders
from leam.data.images import load_image
from leam.errors import LeamError
from leam.face import align_file, align_photo, detector_template
from leam.maps import DEFAULT_AGGREGATION, DEFAULT_DIRECTION
from leam.maps.explain import embed_faces, explain_face
from leam.maps.face_regions import explanation_regions, parse_face
from leam.metrics.regions import DEFAULT_THRESHOLDS, identity_summary
from leam.models import FaceModel
from leam.parse import FaceParser, create_parser
from leam.report.demo import IDENTITY_CHART, write_index
from leam.report.explanation import (
    PARSE_FILES,
    REGIONS_FILES,
    explanation_files,
    write_explanation,
    write_parse,
    write_regions,
)
from leam.report.render import shares_bar_chart


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
    direction: str = DEFAULT_DIRECTION,
    limit: int | None = None,
    largest_face: bool | str = True,
    progress: Callable[[int, int], None] | None = None,
    parser: FaceParser | None = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    detector: str = "dlib",
    aggregation: str = DEFAULT_AGGREGATION,
) -> list[DemoItem]:
    """Explain every planned photo into ``out`` with its face regions, summarise the regions per
    identity, and write ``out/index.html``; returns the items. ``largest_face``: which face of a photo with
    several (True or "largest", "central", False or "only": ``align_photo``); ``progress(done, total)`` is
    called after each photo; ``detector``: the face detector of ``leam.face.DETECTORS``."""
    detector_template(model.spec.template, detector)  # a detector that cannot align this model: refused first
    out = Path(out)
    parser = parser or create_parser()
    items = plan_demo(data, limit)
    layers = list(layers or model.spec.default_layers)
    photos = [p for images in identity_folders(data).values() for p in images]
    claim_outputs(check_outputs(demo_outputs(items, out, layers), {"photo of the data folder": photos}))
    if progress:
        progress(0, len(items))
    for done, item in enumerate(items, start=1):
        explain_item(model, item, out / item.folder, layers, direction, largest_face, parser, thresholds, detector,
                     aggregation)
        if progress:
            progress(done, len(items))
    summarise_regions(items, out)
    write_index(items, out, model.spec.name)
    return items


def explain_item(
    model: FaceModel,
    item: DemoItem,
    folder: Path,
    layers: Sequence[str],
    direction: str,
    largest_face: bool | str,
    parser: FaceParser,
    thresholds: Sequence[float],
    detector: str = "dlib",
    aggregation: str = DEFAULT_AGGREGATION,
) -> None:
    """Explain one photo into ``folder`` (its summary or its error on ``item``); a folder whose ``summary.json``
    records the same layers, direction and aggregation is done already and only read (another map is redone)."""
    done = folder / "summary.json"
    if done.is_file():
        summary = json.loads(done.read_text())
        made = (summary.get("layers"), summary.get("direction"), summary.get("aggregation", "mean"))
        if made == (list(layers), direction, aggregation):
            item.summary = summary
            return
    try:
        photo = load_image(item.image)
        face = align_photo(photo, model.spec.template, text_name(str(item.image)), largest_face, detector)
        ref_face = align_file(item.reference, model.spec.template, largest_face, detector)
        ref = embed_faces(model, [ref_face])[0]
        ex = explain_face(model, face, ref, layers, direction, aggregation, [text_name(str(item.reference))])
        labels = parse_face(parser, photo, face)
        write_parse(labels, face, folder)
        write_regions(ex, explanation_regions(ex, labels, thresholds), folder)
        item.summary = write_explanation(ex, folder, photo)  # summary.json last: marks the photo done
    except LeamError as exc:
        item.error = str(exc)


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
    write_file(out / "regions_all.csv", table.to_csv(index=False).encode())
    summary = identity_summary(table)
    write_file(out / "regions_identity.csv", summary.to_csv(index=False).encode())
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

