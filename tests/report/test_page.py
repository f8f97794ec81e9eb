"""The one page helper (``leam.report.page``): escaping, the skeleton, tables, and the demo index over it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from leam.report.demo import write_index
from leam.report.page import CSS, esc, html_table, page
from leam.study.demo import DemoItem

HOSTILE = """<script>alert("x")</script> & 'Zoë'"""
ESCAPED = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;Zoë&#x27;"


def test_esc_escapes_markup_and_both_quotes():
    assert esc(HOSTILE) == ESCAPED
    assert esc(Path("a<b>")) == "a&lt;b&gt;" and esc(3) == "3"


def test_page_escapes_title_and_heading_and_holds_the_one_stylesheet():
    html = page(f"report · {HOSTILE}", "<p>body</p>", heading=HOSTILE).decode()
    assert html.startswith("<!doctype html>") and html.endswith("</body></html>\n")
    assert f"<title>report · {ESCAPED}</title>" in html and f"<h1>{ESCAPED}</h1>" in html
    assert f"<style>{CSS}</style>" in html and "<script" not in html and "<p>body</p>" in html
    assert "<h1>plain</h1>" in page("plain", "").decode()  # the heading defaults to the title


def test_html_table_escapes_every_cell_and_aligns_text_left():
    df = pd.DataFrame({HOSTILE: [HOSTILE, "b"], "n": [1, 2], "x": [0.5, np.nan]})
    html = html_table(df, caption=HOSTILE)
    assert "<script" not in html and html.count(ESCAPED) == 3  # caption, header, cell
    assert f"<td class=t>{ESCAPED}</td><td>1</td><td>0.5000</td>" in html
    assert "<td>–</td>" in html  # NaN as a dash
    assert html_table(df.iloc[:0], "empty") == "<p class=note>empty (no rows)</p>"
    assert "<td class=t>B</td>" in html_table(df, cell=lambda c, v: str(v).upper())  # a page's own cells


def test_demo_index_is_a_page_of_the_helper(tmp_path: Path):
    folder = "odd/p"
    (tmp_path / folder).mkdir(parents=True)
    items = [DemoItem(HOSTILE, Path("/d/x/p.jpg"), Path("/d/x/r.jpg"), folder,
                      {"cosine_similarity": 0.25, "euclidean_distance": 1.5}),
             DemoItem("y", Path(f"/d/y/{HOSTILE}.jpg"), Path("/d/y/r.jpg"), "y/q", error="no face <b>")]
    html = write_index(items, tmp_path, "dlib-resnet").read_text(encoding="utf-8")
    assert f"<style>{CSS}</style>" in html and "<title>leam demo · dlib-resnet</title>" in html
    assert "<script" not in html and "<b>" not in html and html.count(ESCAPED) == 2
    assert "<td>0.250</td><td>1.500</td>" in html and 'src="odd/p/grid.png"' in html
    assert "http://" not in html and "https://" not in html
