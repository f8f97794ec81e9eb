"""``leam study``, ``leam explore`` and ``leam report`` over people, photos and attributes with hostile names
(``tests.helpers.hostile.HOSTILE_PEOPLE``: markup, quotes, ``</script>``, bidi controls, line separators,
'Anna' beside 'anna', 'José' in NFC beside NFD, 250-byte names), and the explorer's site folder in hostile
places: among the photos, in the run, full of a user's files, on a full disk.

What must hold: every person has a page of their own (file names unique up to case and Unicode normalisation,
within 255 bytes); a name is text on every page, in Python's parser and in headless Chromium (no script runs,
no element is made, a bidi control is shown, not obeyed), each link leads to its person's page; a site among
the photos or in the run's own folders is refused, a user's files are left as they are, and a full disk stops
with one line and leaves nothing half-written that looks whole (no index).
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import resource
import shutil
import subprocess
import unicodedata
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import pytest
from PIL import Image

from leam._paths import unique_names
from leam.explore import assets, pages
from leam.explore.jobs import file_stem
from leam.explore.site import LOCK
from leam.report.page import HIDDEN, esc, shown
from leam.report.tables import table_files
from leam.study.scan import TableScan
from tests.helpers.hostile import HOSTILE_ATTRIBUTES, HOSTILE_PEOPLE, HOSTILE_PHOTOS, HOSTILE_VALUES, write_named_people
from tests.hostile.test_study import FAST, assert_safe_html, leam_in_process, one_thread  # noqa: F401
from tests.study.conftest import LFW_DEMO

pytestmark = pytest.mark.reliability
CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium at /usr/bin/chromium")
SAFE_FILE = re.compile(r"[A-Za-z0-9._-]+")


def fold(name: str) -> str:
    """What a case- and normalisation-insensitive file system (APFS, NTFS) sees of a name."""
    return unicodedata.normalize("NFKC", name).casefold()


@pytest.fixture(scope="module")
def named_run(tmp_path_factory) -> Path:
    """A one-model study of the hostile people, two photos each (linked from lfw-demo); about 8 s."""
    if not LFW_DEMO.is_dir():
        pytest.skip(f"shared photos not found at {LFW_DEMO}")
    root = tmp_path_factory.mktemp("named")
    write_named_people(root / "data", sorted(p for p in LFW_DEMO.iterdir() if p.is_dir()))
    rc, err = leam_in_process(["study", str(root / "data"), *FAST, "--face", "largest", "--out", str(root / "run")])
    assert rc == 0, err
    return root / "run"


@pytest.fixture(scope="module")
def named_site(named_run: Path) -> Path:
    """The explorer of ``named_run`` in its default folder, ``RUN/explore``."""
    rc, err = leam_in_process(["explore", str(named_run)])
    assert rc == 0, err
    return named_run / "explore"


class Page(HTMLParser):
    """A page as Python's HTML parser reads it: its elements, the text of its ``<h1>``, its links and scripts."""

    def __init__(self, path: Path) -> None:
        super().__init__(convert_charrefs=True)
        self.path, self.tags, self.links, self.scripts = path, [], [], []
        self.h1, self._in = "", []
        self.feed(path.read_text(encoding="utf-8"))

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in ("h1", "a", "script"):
            self._in.append([tag, dict(attrs), ""])

    def handle_data(self, data) -> None:
        for open_ in self._in:
            open_[2] += data

    def handle_endtag(self, tag) -> None:
        if self._in and self._in[-1][0] == tag:
            _, attrs, text = self._in.pop()
            if tag == "h1":
                self.h1 = text
            elif tag == "a":
                self.links.append((attrs.get("href", ""), text))
            else:
                self.scripts.append((attrs, text))

    def target(self, href: str) -> Path:
        return (self.path.parent / unquote(href)).resolve()


def one_error(err: str) -> str:
    """The one error line of a command's stderr (beside its progress bar), with no traceback."""
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("leam:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def site_pages(site: Path) -> list[Path]:
    return [site / "index.html", *sorted((site / "people").glob("*.html"))]


# ------------------------------------------------------------------------------------------- file names


def test_file_names_made_from_names_are_unique_up_to_case_and_normalisation_and_short() -> None:
    names = [*HOSTILE_PEOPLE, *HOSTILE_ATTRIBUTES, "x" * 300, "é" * 200]
    for made in ([f"{file_stem(n)}.html" for n in names],
                 [table_files(f"groups_{n}_occlusion_drop", Path("t"))[1].name for n in names]):
        assert len({fold(m) for m in made}) == len(names), made
        assert all(SAFE_FILE.fullmatch(m) and len(m.encode()) <= 255 for m in made), made
    assert table_files("groups_gender_pairs_bc", Path("t"))[0].name == "groups_gender_pairs_bc.csv"  # plain: kept
    kept = unique_names([*HOSTILE_PEOPLE, *HOSTILE_PHOTOS])  # names kept readable (``leam demo``'s folders)
    assert len({fold(n) for n in kept}) == len(kept) and kept[:3] == ["Anna", "anna-2", HOSTILE_PEOPLE[2]]


def test_every_person_has_a_page_of_their_own(named_site: Path) -> None:
    people = sorted((named_site / "people").glob("*.html"))
    assert len(people) == len(HOSTILE_PEOPLE)
    assert sorted(Page(p).h1 for p in people) == sorted(shown(n) for n in HOSTILE_PEOPLE)
    files = [p for p in named_site.rglob("*")]
    assert len({fold(str(p.relative_to(named_site))) for p in files}) == len(files)  # nothing collides folded
    assert all(SAFE_FILE.fullmatch(p.name) and len(os.fsencode(p.name)) <= 255 for p in files), files


def test_every_link_leads_to_its_persons_page(named_site: Path) -> None:
    index = Page(named_site / "index.html")
    people = [(h, t) for h, t in index.links if h.startswith("people/")]
    assert sorted(t for _, t in people) == sorted(shown(n) for n in HOSTILE_PEOPLE)
    for href, text in people:
        page = Page(index.target(href))
        assert page.h1 == text
        for link, name in [(h, t) for h, t in page.links if h.endswith(".html")]:  # all people, previous, next
            target = page.target(link)
            assert target.is_file(), link
            if name != "all people":
                assert Page(target).h1 == name


def test_names_are_text_on_every_page(named_site: Path) -> None:
    """No element, attribute or script comes from a name; nothing hidden (bidi controls, separators) is left
    raw in a page; the page's own JSON parses."""
    for path in site_pages(named_site):
        text = path.read_text(encoding="utf-8")
        assert not HIDDEN.search(text), (path.name, HIDDEN.search(text))
        page = Page(path)
        assert not {t for t, _ in page.tags} - {
            "html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "b", "br", "small", "nav", "a",
            "section", "div", "span", "figure", "figcaption", "table", "caption", "thead", "tbody", "tr", "th", "td",
            "img", "label", "input", "select", "option", "script"}
        for tag, attrs in page.tags:
            assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
            if tag == "img":
                assert re.fullmatch(r"(\.\./)?img/[A-Za-z0-9._/-]+", attrs["src"]), attrs["src"]
        own = [assets.INDEX_JS if path.name == "index.html" else assets.PERSON_JS]
        code = [f"<script>{s}</script>" for a, s in page.scripts if a.get("type") != "application/json"]
        assert code == own
        for attrs, data in page.scripts:
            if attrs.get("type") == "application/json":
                assert "</" not in data and json.loads(data)["models"] == ["dlib-resnet"]
    index = (named_site / "index.html").read_text(encoding="utf-8")
    for name in (*HOSTILE_PEOPLE, *HOSTILE_ATTRIBUTES, *HOSTILE_VALUES):
        assert esc(name) in index, name
    assert "Evil\\u202egnp.exe" in index and "line\\u2028sep\\u2029" in index  # shown, not obeyed


# ------------------------------------------------------------------------------------------- in Chromium

PRELUDE = "<script>window.__alerts=[];window.alert=function(m){window.__alerts.push(String(m));};</script>"
DRIVER = r"""
var rows = function () { return Array.prototype.filter.call(document.querySelectorAll('#people tbody tr'),
  function (r) { return !r.hidden; }).length; };
var filters = Array.prototype.map.call(document.querySelectorAll('select[data-attr]'), function (s) {
  return Array.prototype.slice.call(s.options, 1).map(function (o) {
    s.value = o.value; s.dispatchEvent(new Event('change')); var n = rows();
    s.value = ''; s.dispatchEvent(new Event('change')); return [o.value, n]; }); });
var links = Array.prototype.map.call(document.querySelectorAll('#people tbody tr td:first-child a'),
  function (a) { return [a.textContent, a.href]; });
var found = {filters: filters, links: links, alerts: window.__alerts, pages: [],
             made: document.querySelectorAll('img[src="x"], #people script, #people b, #people i').length};
var k = 0;
function next() {
  if (k >= links.length) { document.body.dataset.found = JSON.stringify(found); return; }
  var f = document.createElement('iframe');
  f.onload = function () {
    var d = f.contentDocument;
    found.pages.push({h1: d.querySelector('h1').textContent, alerts: (f.contentWindow.__alerts || []).slice(),
      made: d.querySelectorAll('img[src="x"], h1 *, nav b, nav img, td.photo img').length,
      nav: Array.prototype.map.call(d.querySelectorAll('nav a'), function (a) { return [a.textContent, a.href]; })});
    f.remove(); k++; next(); };
  f.src = links[k][1];
  document.body.appendChild(f);
}
next();
"""


def chromium(page: Path, driver: str, profile: Path, with_people: bool = True) -> dict:
    """Load a copy of ``page`` (beside it) in headless Chromium with ``driver`` run on load; returns what the
    driver found. The copy (and, ``with_people``, the site's person pages, restored afterwards) get ``PRELUDE``,
    which records every ``alert``."""
    copies = []
    for path in [page, *sorted((page.parent / "people").glob("*.html"))] if with_people else [page]:
        copy = path.with_name(f"driven-{path.name}") if path == page else path
        text = path.read_text(encoding="utf-8").replace("<head>", "<head>" + PRELUDE, 1)
        if path == page:
            text = text.replace("</body>", f"<script>window.addEventListener('load', function () {{ {driver} }});"
                                           "</script></body>")
        copies.append((copy, path.read_bytes()))
        copy.write_text(text, encoding="utf-8")
    try:
        r = subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                            "--disable-background-networking", "--disable-component-update", "--disable-sync",
                            "--allow-file-access-from-files", "--enable-logging=stderr", "--v=0",
                            f"--user-data-dir={profile}", "--virtual-time-budget=30000", "--dump-dom",
                            page.with_name(f"driven-{page.name}").as_uri()],
                           capture_output=True, text=True, timeout=180)
    finally:
        for copy, original in copies:
            copy.unlink() if copy.name.startswith("driven-") else copy.write_bytes(original)
    assert r.returncode == 0, r.stderr[-2000:]
    errors = [line for line in r.stderr.splitlines() if "Uncaught" in line or "CONSOLE" in line]
    assert not errors, errors
    found = re.search(r'data-found="([^"]*)"', r.stdout)
    assert found, r.stdout[-3000:]
    return json.loads(html.unescape(found.group(1)))


@needs_chromium
def test_the_explorer_in_headless_chromium(named_site: Path, tmp_path: Path) -> None:
    """No name runs a script or makes an element; every person's link opens the page headed with their name,
    whose previous and next links open the pages of the names they show; every attribute value filters."""
    found = chromium(named_site / "index.html", DRIVER, tmp_path / "profile")
    assert found["alerts"] == [] and found["made"] == 0
    assert sorted(t for t, _ in found["links"]) == sorted(shown(n) for n in HOSTILE_PEOPLE)
    headings = {}
    for (text, url), page in zip(found["links"], found["pages"], strict=True):
        assert page["h1"] == text and page["alerts"] == [] and page["made"] == 0
        headings[url] = text
    for page in found["pages"]:
        for text, url in page["nav"][1:]:
            assert headings[url] == text
    assert len(found["filters"]) == len(HOSTILE_ATTRIBUTES)
    for options in found["filters"]:
        assert sorted(v for v, _ in options) == sorted(shown(v) for v in HOSTILE_VALUES)
        assert all(n > 0 for _, n in options), options


@needs_chromium
def test_a_hostile_model_name_cannot_close_the_index_script(tmp_path: Path) -> None:
    """The index's JSON (model names: ``--models NAME=FILE``) is read back whole by Chromium: no ``</script>``,
    ``<!--`` or U+2028 in a name ends it or runs."""
    model = "</script><script>alert(4)</script><!--\u2028\u2029"
    people = pd.DataFrame({"identity": ["a"], "photos": [2], "unusual": [0.5]})
    per_model = pd.DataFrame({"identity": ["a"], "model": [model], "emd": [1.0], "bc": [0.9], "variability": [0.1],
                              "gain": [0.01], "regions": ["nose 100%"]})
    index = tmp_path / "index.html"
    index.write_bytes(pages.index_page("t", "", "", people, per_model, [model], [], {"a": pages.Link("a", "a.html")}))
    driver = ("var m = document.getElementById('model'); m.value = '0'; m.dispatchEvent(new Event('change'));"
              "document.body.dataset.found = JSON.stringify({alerts: window.__alerts, option: m.options[1].text,"
              "shown: document.getElementById('shown').textContent, scripts: document.scripts.length});")
    found = chromium(index, driver, tmp_path / "profile", with_people=False)
    assert found == {"alerts": [], "option": shown(model), "shown": "1 of 1", "scripts": 4}  # 2 own, prelude, driver


# ------------------------------------------------------------------------------------------- the report


@pytest.fixture(scope="module")
def named_report(named_run: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("named-report") / "report.html"
    rc, err = leam_in_process(["report", str(named_run), "--out", str(out)])
    assert rc == 0 and err == "", err
    return out


def test_the_report_shows_hostile_names_as_text(named_report: Path) -> None:
    page = named_report.read_text(encoding="utf-8")
    assert_safe_html(page)
    assert not HIDDEN.search(page)
    for name in (*HOSTILE_PEOPLE, *HOSTILE_VALUES):
        assert esc(name) in page, name
    for attribute in HOSTILE_ATTRIBUTES:
        assert f"<h3>By {esc(attribute)}</h3>" in page


def test_the_report_keeps_attributes_equal_up_to_case_apart(named_report: Path) -> None:
    """``Group`` and ``group`` (and ``<i>group</i>`` beside ``(i)group(/i)``) are four attributes with four sets
    of tables, whose file names stay apart on a case-insensitive file system."""
    files = sorted(p.name for p in (named_report.parent / "report_tables").iterdir())
    assert len({fold(f) for f in files}) == len(files)
    assert all(SAFE_FILE.fullmatch(f) and len(f.encode()) <= 255 for f in files), files
    for a in HOSTILE_ATTRIBUTES:
        occlusion = named_report.parent / "report_tables" / table_files(f"groups_{a}_occlusion_drop", Path())[0].name
        assert len(pd.read_csv(occlusion)), a


def test_a_scan_reads_columns_equal_up_to_case_apart(tmp_path: Path) -> None:
    """DuckDB matches names ignoring case; the run's tables are read by the file's own names."""
    path = tmp_path / "t.parquet"
    frame = pd.DataFrame({"k": ["a", "b", "a"], "attr_Group": ["x", "y", "z"], "attr_group": ["1", "2", "3"]})
    frame.to_parquet(path, index=False)
    scan = TableScan(path)
    pd.testing.assert_frame_equal(scan.frame(), frame)
    pd.testing.assert_frame_equal(scan.frame(["attr_group"], where={"k": "a"}), frame[frame.k == "a"][["attr_group"]]
                                  .reset_index(drop=True))
    chunks = pd.concat(scan.chunks(["k"], ["attr_group", "attr_Group"]), ignore_index=True)
    assert list(chunks.columns) == ["k", "attr_group", "attr_Group"]
    assert chunks.values.tolist() == [["a", "1", "x"], ["a", "3", "z"], ["b", "2", "y"]]


# ------------------------------------------------------------------------------------- the site folder


def listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"") for p in folder.rglob("*")}


@pytest.mark.parametrize("where", ["data", "a person's folder", "run", "run/tables", "run/new/site", "linked"])
def test_a_site_among_the_photos_or_in_the_runs_folders_is_refused(named_run: Path, tmp_path: Path,
                                                                     where: str) -> None:
    data = named_run.parent / "data"
    site = {"data": data, "a person's folder": data / "Anna", "run": named_run, "run/tables": named_run / "tables",
            "run/new/site": named_run / "new" / "site", "linked": tmp_path / "site"}[where]
    if where == "linked":  # a site whose people/ leads into the data folder
        site.mkdir()
        (site / "people").symlink_to(data / "anna", target_is_directory=True)
    before = listing(data), listing(named_run)
    rc, err = leam_in_process(["explore", str(named_run), "--out", str(site)])
    assert rc == 1
    assert re.search(r"data folder .* or in it|the run folder, or one of its folders", one_error(err)), err
    assert (listing(data), listing(named_run)) == before  # nothing written


def test_a_site_folder_in_the_run_that_a_stopped_first_run_left_is_taken(named_run: Path) -> None:
    site = named_run / "stopped"
    site.mkdir()
    (site / LOCK).write_text("12345")  # what a first run stopped before writing anything leaves
    try:
        rc, err = leam_in_process(["explore", str(named_run), "--out", str(site)])
        assert rc == 0 and (site / "index.html").is_file(), err
    finally:
        shutil.rmtree(site)


def test_a_users_files_in_the_site_are_left_as_they_are(named_run: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    mine = {"notes.txt": b"my notes\n", "people/mine.html": b"<p>mine</p>", "img/keep.png": b"not even a PNG",
            "img/population/mine.txt": b"mine too"}
    for name, data in mine.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_bytes(data)
    for _ in range(2):  # the second run replaces leam's own files only
        rc, err = leam_in_process(["explore", str(named_run), "--out", str(site)])
        assert rc == 0, err
        assert {n: (site / n).read_bytes() for n in mine} == mine
    assert (site / "index.html").is_file()


@pytest.mark.parametrize("taken", ["index.html", "a person's page"])
def test_a_users_file_where_the_site_writes_is_refused(named_run: Path, tmp_path: Path, taken: str) -> None:
    site = tmp_path / "site"
    name = "index.html" if taken == "index.html" else f"people/{file_stem('anna')}.html"
    (site / name).parent.mkdir(parents=True)
    (site / name).write_bytes(b"<p>the user's</p>")
    before = listing(site)
    rc, err = leam_in_process(["explore", str(named_run), "--out", str(site)])
    assert rc == 1 and "a file leam did not write" in one_error(err)
    assert {k: v for k, v in listing(site).items() if k != LOCK} == before


# ------------------------------------------------------------------------------------------ a full disk


@contextlib.contextmanager
def file_size_limit(limit: int):
    """This process may write no file past ``limit`` bytes (``RLIMIT_FSIZE``; Python ignores SIGXFSZ, so a write
    past it fails with EFBIG) within the block."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@contextlib.contextmanager
def small_disk(folder: Path, size: str):
    """``folder`` as a tmpfs of ``size`` (as root; skips where it cannot be mounted)."""
    folder.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode(errors='replace').strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def assert_nothing_half_written(folder: Path) -> None:
    """No temporary file left, and every file there whole: pictures decode, pages end."""
    for p in folder.rglob("*"):
        assert not re.fullmatch(r"\.leam-.*\.tmp", p.name), p
        if p.suffix in (".png", ".jpg"):
            with Image.open(p) as im:
                im.load()
        elif p.suffix == ".html":
            assert p.read_bytes().endswith(b"</html>\n"), p


@pytest.mark.parametrize("full", ["file-size limit", "tmpfs"])
def test_a_full_disk_stops_the_explorer_with_one_line_and_no_index(named_run: Path, tmp_path: Path,
                                                                   full: str) -> None:
    if full == "tmpfs":
        with small_disk(tmp_path / "disk", "96k") as disk:
            rc, err = leam_in_process(["explore", str(named_run), "--out", str(disk / "site")])
            assert_nothing_half_written(disk)
            assert not (disk / "site" / "index.html").exists()
        reason = "the disk is full"
    else:
        with file_size_limit(3000):  # the markers fit; the first picture does not
            rc, err = leam_in_process(["explore", str(named_run), "--out", str(tmp_path / "site")])
        assert_nothing_half_written(tmp_path / "site")
        assert not (tmp_path / "site" / "index.html").exists()
        reason = "File too large"
    assert rc == 1
    assert re.fullmatch(rf"leam: error: cannot write .*/img/.*: {reason}.*; make room and run the command again",
                        one_error(err)), err


def test_a_full_disk_stops_the_report_with_one_line(named_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "report.html"
    with file_size_limit(4000):
        rc, err = leam_in_process(["report", str(named_run), "--out", str(out)])
    assert rc == 1
    assert re.match(r"leam: error: cannot write (temporary files in |.*report_tables/)", one_error(err)), err
    assert not out.exists()
    assert_nothing_half_written(tmp_path / "out")
