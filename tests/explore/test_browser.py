"""The explorer as headless Chromium runs it: the index loads, sorting and filtering change its rows, a person's
page shows its pictures (natural sizes > 0) and enlarges one on a click, and a hostile name stays text.

Each test copies a page beside itself with a small driver script appended (the site's own pages are left as
they are), and reads what the driver found from the DOM Chromium dumps."""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path

import pytest

from leam.explore import ExploreResult
from tests.study.conftest import HOSTILE

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(),
                                reason="headless browser test needs Debian's chromium at /usr/bin/chromium")


def run_page(page: Path, driver: str, profile: Path) -> tuple[str, dict]:
    """Load a copy of ``page`` (beside it) with ``driver`` run on load, which stores its findings as JSON in
    ``document.body.dataset.found``; returns (the DOM as Chromium serialises it, the findings)."""
    copy = page.with_name(f"driven-{page.name}")
    text = page.read_text(encoding="utf-8")
    copy.write_text(text.replace("</body>", f"<script>window.addEventListener('load', function () {{ {driver} }});"
                                            "</script></body>"), encoding="utf-8")
    try:
        r = subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                            "--disable-background-networking", "--disable-component-update", "--disable-sync",
                            "--enable-logging=stderr", "--v=0", f"--user-data-dir={profile}",
                            "--window-size=1280,4000", "--virtual-time-budget=5000", "--dump-dom", copy.as_uri()],
                           capture_output=True, text=True, timeout=120)
    finally:
        copy.unlink()
    assert r.returncode == 0, r.stderr[-2000:]
    errors = [line for line in r.stderr.splitlines() if "Uncaught" in line or "CONSOLE" in line]
    assert not errors, errors
    found = re.search(r'data-found="([^"]*)"', r.stdout)
    assert found, r.stdout[-3000:]
    return r.stdout, json.loads(html.unescape(found.group(1)))


INDEX_DRIVER = """
var rows = function () {
  return Array.prototype.filter.call(document.querySelectorAll("#people tbody tr"), function (r) { return !r.hidden; })
    .map(function (r) { return r.cells[0].textContent; });
};
var heads = document.querySelectorAll("#people thead tr:last-child th");
var unusual = Array.prototype.find.call(heads, function (th) { return th.textContent.indexOf("unusual") === 0; });
var column = Array.prototype.indexOf.call(heads, unusual);
var values = function () {
  return Array.prototype.filter.call(document.querySelectorAll("#people tbody tr"), function (r) { return !r.hidden; })
    .map(function (r) { return parseFloat(r.cells[column].textContent); });
};
var found = {first: rows(), firstValues: values()};
unusual.click();
found.ascending = rows(); found.ascendingValues = values();
heads[0].click();
found.byName = rows();
heads[0].click();
found.byNameAgain = rows();
var search = document.getElementById("search");
search.value = "ARNOLDO"; search.dispatchEvent(new Event("input"));
found.search = rows();
search.value = ""; search.dispatchEvent(new Event("input"));
var gender = document.querySelector("select[data-attr]");
gender.value = "F"; gender.dispatchEvent(new Event("change"));
found.female = rows();
gender.value = ""; gender.dispatchEvent(new Event("change"));
var model = document.getElementById("model");
model.value = "1"; model.dispatchEvent(new Event("change"));
found.hiddenCells = document.querySelectorAll('[data-model="0"][hidden]').length;
found.shownCells = document.querySelectorAll('[data-model="1"]:not([hidden])').length;
found.injected = document.querySelectorAll('img[src="x"]').length;
document.body.dataset.found = JSON.stringify(found);
"""

PERSON_DRIVER = """
var images = Array.prototype.map.call(document.images, function (im) {
  return [im.getAttribute("src"), im.naturalWidth, im.naturalHeight, im.getAttribute("loading")];
});
document.querySelector("a.zoom").click();
var box = document.getElementById("lightbox");
var found = {images: images, lightbox: box ? box.querySelectorAll("img").length : 0,
             injected: document.querySelectorAll('img[src="x"]').length,
             title: document.querySelector("h1").textContent};
document.body.dataset.found = JSON.stringify(found);
"""


def test_index_sorts_and_filters_in_chromium(site: ExploreResult, tmp_path: Path) -> None:
    dom, found = run_page(site.index, INDEX_DRIVER, tmp_path / "profile")
    assert sorted(found["first"]) == sorted([HOSTILE, "Arnoldo_Aleman"])
    # most unusual first; a click on "unusual" sorts the other way round (people with equal values stay by name)
    assert found["firstValues"] == sorted(found["firstValues"], reverse=True)
    assert found["ascendingValues"] == sorted(found["ascendingValues"]) and found["firstValues"][0] > 0
    assert found["byNameAgain"] == found["byName"][::-1] and sorted(found["byName"]) == sorted(found["first"])
    assert found["search"] == ["Arnoldo_Aleman"]
    assert found["female"] == [HOSTILE]
    assert found["hiddenCells"] > 0 and found["shownCells"] > 0  # one model's columns only
    assert found["injected"] == 0
    as_text = HOSTILE.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")  # how the DOM serialises text
    assert as_text in dom and HOSTILE not in dom


def test_person_page_shows_its_pictures_in_chromium(site: ExploreResult, tmp_path: Path) -> None:
    page = next(p for p in (site.site / "people").glob("*.html") if "Arnoldo" not in p.name)  # the hostile name's
    text = page.read_text(encoding="utf-8")
    eager = page.with_name("eager.html")  # every picture loaded before the driver runs, wherever it is on the page
    eager.write_text(text.replace('loading="lazy"', 'loading="eager"'), encoding="utf-8")
    try:
        dom, found = run_page(eager, PERSON_DRIVER, tmp_path / "profile")
    finally:
        eager.unlink()
    images = found["images"]
    # per model: consensus and population (chip and map each) and the difference; per photo its chip, and the
    # explained photos' aggregate and two layers' maps, each over the chip
    assert len(images) == 2 * (5 + 3 + 2 * 2 * 3)
    assert all(w > 0 and h > 0 for _, w, h, _ in images), [i for i in images if not i[1]]
    assert {w for src, w, _, _ in images if "/c" in src} >= {150, 160}  # the chips' own sizes, per model
    assert found["lightbox"] >= 1
    assert found["injected"] == 0 and found["title"] == HOSTILE
    assert HOSTILE.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in dom and HOSTILE not in dom
