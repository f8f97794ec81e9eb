"""The demo's ``index.html``: every photo of a ``leam demo`` run with its pictures, the face regions per
identity and over all photos, and the photos that failed (a page over ``leam.report.page``; the pictures
are files beside it, linked by relative paths)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from leam._io import text_name, write_file
from leam.report.page import esc, page

if TYPE_CHECKING:
    from leam.study.demo import DemoItem

IDENTITY_CHART = "regions_identity.png"  # in each identity's folder
CONTENTS = """<p>{ok} photos explained, {failed} failed. Each photo is explained against another photo of the
same person (the reference). Contents: <a href="#photos">per photo</a> · <a href="#identities">per identity</a>
· <a href="#failed">failed</a> · tables <a href="regions_all.csv">regions_all.csv</a> (every photo, layer,
class and threshold) and <a href="regions_identity.csv">regions_identity.csv</a> (mean, std and coefficient
of variation per identity).</p>
<h2>Face regions over all photos</h2>
<p>Share of the aggregate map's top-p % pixels falling in each face region (mean ± std over photos).</p>
"""
PHOTOS = """<h2 id="photos">Per photo</h2>
<p>Columns: cosine similarity and Euclidean distance of the two embeddings, the aggregate map drawn back
onto the photo, all layers on the aligned face, and the face regions with their shares of the top pixels.
Each folder holds <code>maps.npz</code> (one array per layer plus <code>aggregate</code>, in the aligned
frame), overlays per layer in <code>layers/</code>, <code>aggregate.png</code>,
<code>photo_aggregate.png</code>, <code>grid.png</code>, the label map <code>labels.png</code>
(<code>legend.json</code>), <code>regions.csv</code>, <code>regions.png</code> and
<code>summary.json</code>.</p>
<table><tr><th class=t>identity</th><th class=t>photo</th><th>cos</th><th>dist</th><th class=t>on the photo</th>
<th class=t>all layers</th><th class=t>face regions</th><th class=t>files</th></tr>
"""


def write_index(items: Sequence[DemoItem], out: Path, model: str) -> Path:
    """``out/index.html``: a self-contained page (no remote resources) listing every photo with its pictures."""
    ok = [i for i in items if i.summary]
    failed = [i for i in items if i.error]
    overall = '<p><img class=wide src="regions_overall.png"></p>' if (out / "regions_overall.png").is_file() else ""
    fail_rows = "".join(f"<li>{esc(text_name(str(i.image)))}: {esc(i.error or '')}</li>" for i in failed)
    body = (CONTENTS.format(ok=len(ok), failed=len(failed)) + overall + "\n" + PHOTOS
            + "".join(photo_row(item) for item in ok) + "</table>\n"
            + f'<h2 id="identities">Per identity</h2>\n<table>{identity_rows(ok, out)}</table>\n'
            + f"<h2 id=\"failed\">Failed</h2><ul>{fail_rows or '<li>none</li>'}</ul>")
    path = out / "index.html"
    write_file(path, page(f"leam demo · {model}", body, f"LEAM maps · model {model}"))
    return path


def photo_row(item: DemoItem) -> str:
    """One photo's row: names, scores, its three pictures (each a link to itself) and its files."""
    href, s = quote(item.folder), item.summary
    pictures = "".join(f'<td class=t><a href="{href}/{name}"><img class=thumb src="{href}/{name}"></a></td>'
                       for name in ("photo_aggregate.png", "grid.png", "regions.png"))
    return (f"<tr><td class=t>{esc(item.identity)}</td>"
            f"<td class=t>{esc(text_name(item.image.name))}<br><small>reference: "
            f"{esc(text_name(item.reference.name))}</small></td>"
            f"<td>{s['cosine_similarity']:.3f}</td><td>{s['euclidean_distance']:.3f}</td>{pictures}"
            f'<td class=t><a href="{href}/maps.npz">maps.npz</a> · <a href="{href}/summary.json">summary.json</a>'
            f' · <a href="{href}/layers/">layers</a></td></tr>\n')


def identity_rows(ok: Sequence[DemoItem], out: Path) -> str:
    """One row per identity with its chart of region shares (where it was drawn)."""
    folders = {i.identity: i.identity_folder for i in ok}
    return "".join(
        f'<tr><td class=t>{esc(name)}</td><td class=t><a href="{quote(folder)}/{IDENTITY_CHART}">'
        f'<img class=chart src="{quote(folder)}/{IDENTITY_CHART}"></a></td></tr>'
        for name, folder in folders.items()
        if (out / folder / IDENTITY_CHART).is_file()
    )
