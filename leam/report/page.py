"""The one page helper for every HTML page leam writes (the study report, the protect and protect-eval
reports, the demo's index): one stylesheet, one escaping function, one page skeleton, and the pieces the
pages share (tables, notes, PNG figures as data URIs).

Pages are self-contained: no remote resources, no JavaScript. Every string a user named (identities,
file names, paths, model names, attribute values) goes through ``esc``.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable

import pandas as pd

from leam._io import HIDDEN, shown  # noqa: F401  (re-exported: the explorer shows names as the report does)

CSS = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1250px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-top:.6em}h3{font-size:1.05em;margin-top:1.4em}
table{border-collapse:collapse;font-size:.82em;margin:.5em 0 1em}caption{text-align:left;font-weight:600;padding:4px 0}
td,th{border-bottom:1px solid #e3e3e3;padding:3px 8px;text-align:right;vertical-align:top}
th{background:#f4f4f4}td.t,th.t{text-align:left}img{max-width:100%;height:auto;display:block;margin:.4em 0}
nav a{margin-right:.9em}.row{display:flex;flex-wrap:wrap;gap:0 2.5em;align-items:flex-start}
.note{color:#555;font-size:.9em}code{background:#f4f4f4;padding:0 3px}
img.thumb{height:150px;width:auto}img.chart{height:170px;width:auto}img.wide{height:260px;width:auto}"""

Cell = Callable[[object, object], str]  # (column, value) → the cell's text, before escaping


def esc(text: object) -> str:
    """``text`` as HTML text or attribute value (``& < > " '`` escaped, ``HIDDEN`` characters shown as
    ``\\uXXXX``): every user-named string."""
    return html.escape(shown(str(text)), quote=True)


def page(title: str, body: str, heading: str | None = None) -> bytes:
    """A whole page, UTF-8: the head (``title``, the stylesheet), ``<h1>heading</h1>`` (default: the title)
    and ``body`` (HTML, escaped by its maker). ``title`` and ``heading`` are plain text."""
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(title)}</title>'
            f"<style>{CSS}</style></head><body>\n<h1>{esc(title if heading is None else heading)}</h1>\n"
            f"{body}\n</body></html>\n").encode()


def note(text: str) -> str:
    """A paragraph of small grey text."""
    return f"<p class=note>{esc(text)}</p>"


def img(png: bytes, alt: str) -> str:
    """A PNG as an ``<img>`` with a data URI (the page stays one file)."""
    return f'<img src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}" alt="{esc(alt)}">'


def plain_cell(column: object, value: object) -> str:
    """The default cell text: ``format_value`` of the report's tables ("–" for missing, 4 decimals)."""
    from leam.report.tables import format_value

    return format_value(value, column)


def html_table(df: pd.DataFrame, caption: str | None = None, index: bool = False, cell: Cell = plain_cell) -> str:
    """An escaped HTML table; text columns left-aligned (class ``t``), numbers right-aligned."""
    if index:
        df = df.reset_index()
    if df.empty:
        return f"<p class=note>{esc(caption or '')} (no rows)</p>"
    text_cols = [not pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]
    head = "".join(f'<th{" class=t" if t else ""}>{esc(c)}</th>' for c, t in zip(df.columns, text_cols))
    rows = []
    for row in df.itertuples(index=False):
        cells = "".join(f'<td{" class=t" if t else ""}>{esc(cell(c, v))}</td>'
                        for c, v, t in zip(df.columns, row, text_cols))
        rows.append(f"<tr>{cells}</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
