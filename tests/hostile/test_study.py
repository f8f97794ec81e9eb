"""``leam study`` and ``leam report`` over data folders full of hostile entries: every bad photo is a
row of the failures table with its reason, the run goes on and ends, the report counts them, and
every name a user chose (folders, files, identities, attribute names and values: ``<script>``, quotes,
bytes that are not UTF-8, 東京) reaches the HTML page as text, never as markup, with no remote resource.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from leam._io import text_name
from leam.cli.main import main
from leam.study.store import RunStore
from tests.helpers.hostile import Hostile, write_hostile_images

pytestmark = pytest.mark.reliability
PERSON, OTHER = "Tony_Blair", "Colin_Powell"
SCRIPT_FOLDER = "<script>alert(1)<\\script>"  # no "/" in a file name: the closest
NON_UTF8_FOLDER = os.fsdecode(b"Jos\xe9")
UNICODE_FOLDER = "Zoë 東京"
SCRIPT_IDENTITY = "<script>alert(1)</script>"
QUOTES_IDENTITY = "Zoë 東京 \"double\" 'single'"
ATTRIBUTE = "<i>group</i>"
ATTRIBUTE_VALUES = ("<b onmouseover=alert(1)>\"'", "Zoë 東京")
CHROMIUM = Path("/usr/bin/chromium")
LEFT_OUT_FILES = {  # entry: a photo (True) or a text file
    "loose.jpg": True, "README.txt": False, f"{OTHER}/notes.txt": False, f"{OTHER}/raw.heic": False,
    f"{OTHER}/.hidden.jpg": True, ".DS_Store": False, "Nested/deeper/photo.jpg": True,
}
LEFT_OUT = {  # entry as recorded (the identity column of its data row): a pattern of its reason
    "gone": "broken symbolic link", "loop": "symbolic link loop", "ring_a": "symbolic link loop",
    "ring_b": "symbolic link loop", f"{OTHER}/parent": "a folder inside an identity folder",
    "loose.jpg": "outside the identity folders", "README.txt": "outside the identity folders",
    f"{OTHER}/notes.txt": r"not a photo by its extension: leam reads \.bmp", f"{OTHER}/raw.heic": "not a photo",
    f"{OTHER}/.hidden.jpg": "hidden", ".DS_Store": "hidden", ".hidden_folder": "hidden",
    "Nested/deeper": "a folder inside an identity folder", "Empty": "an empty folder",
}
FAST = ["--models", "dlib-resnet", "--workers", "1", "--occlusion-seeds", "1", "--pairs", "5", "--no-transfer",
        "--occlusion-percents", "5", "--thresholds", "10", "100", "--layers", "dlib-resnet=stage2.block1,stage4.block2"]
TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "code", "nav", "a", "section",
        "table", "caption", "thead", "tbody", "tr", "th", "td", "img", "div", "ol", "ul", "li"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two torch threads stall each other when another process holds a core (see test_report)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def link_photos(folder: Path, photos: list[Path]) -> None:
    folder.mkdir(parents=True)
    for photo in photos:
        (folder / photo.name).symlink_to(photo)


@pytest.fixture(scope="module")
def hostile_data(lfw_dir: Path, tmp_path_factory) -> tuple[Path, list[Hostile]]:
    """A data folder: ``hostile/`` holds every hostile image and a good first photo (the identity's
    reference), three ordinary identities have hostile folder names, and four entries are links that
    loop, ring or lead nowhere; one identity folder holds a link to its parent (a cycle to a walker);
    and entries no study reads (``LEFT_OUT``): loose, hidden, nested or not photos, and an empty folder."""
    root = tmp_path_factory.mktemp("hostile-study") / "data"
    faces = sorted((lfw_dir / PERSON).iterdir())[:6]
    cases = write_hostile_images(root / "hostile", faces)
    (root / "hostile" / "!reference.jpg").symlink_to(faces[1])  # sorts first: the reference, not a variant
    others = sorted((lfw_dir / OTHER).iterdir())[:3]
    link_photos(root / OTHER, others)
    for name in (SCRIPT_FOLDER, NON_UTF8_FOLDER, UNICODE_FOLDER):
        link_photos(root / name, others[:2])
    (root / OTHER / "parent").symlink_to("..", target_is_directory=True)
    (root / "loop").symlink_to("loop")
    (root / "ring_a").symlink_to("ring_b")
    (root / "ring_b").symlink_to("ring_a")
    (root / "gone").symlink_to("no_such_folder")
    for entry, photo in LEFT_OUT_FILES.items():  # photos where no study reads them, and files that are no photos
        (root / entry).parent.mkdir(parents=True, exist_ok=True)
        (root / entry).symlink_to(faces[2]) if photo else (root / entry).write_text("not a photo\n")
    for folder in ("Empty", ".hidden_folder"):
        (root / folder).mkdir()
    return root, cases


@pytest.fixture(scope="module")
def hostile_run(hostile_data, tmp_path_factory) -> tuple[Path, int, str]:
    root, _ = hostile_data
    run = tmp_path_factory.mktemp("hostile-run") / "run"
    return run, *leam_in_process(["study", str(root), *FAST, "--out", str(run)])


def leam_in_process(argv: list[str]) -> tuple[int, str]:
    """``leam ARGV`` in this process, its stderr captured (an uncaught exception fails the test)."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    return rc, err.getvalue()


def test_every_bad_photo_is_a_failure_with_its_reason(hostile_data, hostile_run) -> None:
    root, cases = hostile_data
    run, rc, err = hostile_run
    assert rc == 0, err
    assert "Traceback" not in err
    tables = RunStore(run).tables()
    failures, images = tables["failures"], tables["images"]
    photos = failures[failures["stage"] != "data"]
    assert not photos.duplicated(["model", "image"]).any()
    by_image = photos.set_index("image")
    for case in cases:
        image = text_name(f"hostile/{case.path.name}")
        if case.error:
            row = by_image.loc[image]
            assert row["identity"] == "hostile" and row["stage"] == "face", case.name
            assert re.search(case.error, row["reason"]), (case.name, row["reason"])
        else:
            assert image not in by_image.index, (case.name, by_image.loc[image, "reason"])
            explained = images[(images["image"] == image) & (images["role"] == "explained")]
            assert len(explained) == 1, case.name
    assert len(photos) == sum(c.error is not None for c in cases)  # and nothing else failed


def test_every_entry_left_out_of_the_data_folder_is_recorded_with_its_reason(hostile_run) -> None:
    run, _, _ = hostile_run
    failures = RunStore(run).tables()["failures"]
    data = failures[failures["stage"] == "data"].set_index("identity")["reason"]
    assert sorted(data.index) == sorted(LEFT_OUT)  # every entry not read, and nothing else
    for entry, reason in LEFT_OUT.items():
        assert re.search(reason, data[entry]), (entry, data[entry])
    assert "no_such_folder" in data["gone"]


def test_hostile_folder_names_are_identities(hostile_run) -> None:
    run, _, _ = hostile_run
    images = RunStore(run).tables()["images"]
    explained = images[images["role"] == "explained"]
    names = set(explained["identity"])
    assert {SCRIPT_FOLDER, "Jos\\xe9", UNICODE_FOLDER, OTHER, "hostile"} <= names
    assert explained[explained["identity"] == OTHER]["image"].str.startswith(f"{OTHER}/").all()  # no parent/...


def test_report_counts_the_failures(hostile_run, tmp_path) -> None:
    run, _, _ = hostile_run
    rc, err = leam_in_process(["report", str(run), "--out", str(tmp_path / "report.html")])
    assert rc == 0 and err == "", err  # no warning either (e.g. a glyph the figure font lacks)
    failures = RunStore(run).tables()["failures"]
    counts = pd.read_csv(tmp_path / "report_tables" / "failures.csv")
    assert counts["count"].sum() == len(failures)
    per_stage = failures.groupby("stage").size()
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    for stage, n in per_stage.items():
        assert f"<td class=t>dlib-resnet</td><td class=t>{stage}</td><td>{n}</td>" in page
    identities = pd.read_csv(tmp_path / "report_tables" / "identities.csv")
    assert identities.loc[identities["identity"] == "hostile", "failures"].sum() == per_stage["face"]
    assert_safe_html(page)
    for name in (SCRIPT_FOLDER, "Jos\\xe9", UNICODE_FOLDER, "'><script>alert(1)<\\script>.jpg"):
        assert escape_text(name) in page, name


# ------------------------------------------------------------------------- names in a manifest


@pytest.fixture(scope="module")
def manifest_report(lfw_dir: Path, tmp_path_factory) -> Path:
    """A study whose manifest names identities ``<script>…</script>`` and ``Zoë 東京 "…" '…'`` and has an
    attribute ``<i>group</i>`` with hostile values; its report."""
    root = tmp_path_factory.mktemp("manifest-study")
    data = root / "data"
    rows = []
    for identity, person, value in zip((SCRIPT_IDENTITY, QUOTES_IDENTITY), (PERSON, OTHER), ATTRIBUTE_VALUES):
        photos = sorted((lfw_dir / person).iterdir())[:3]
        link_photos(data / person, photos)
        rows += [{"path": f"{person}/{p.name}", "identity": identity, ATTRIBUTE: value} for p in photos]
    with (data / "manifest.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["path", "identity", ATTRIBUTE])
        writer.writeheader()
        writer.writerows(rows)
    rc, err = leam_in_process(["study", str(data), *FAST, "--out", str(root / "run")])
    assert rc == 0, err
    rc, err = leam_in_process(["report", str(root / "run"), "--out", str(root / "out" / "report.html")])
    assert rc == 0, err
    return root / "out" / "report.html"


def test_manifest_names_and_attributes_are_text(manifest_report: Path) -> None:
    page = manifest_report.read_text(encoding="utf-8")
    assert_safe_html(page)
    for text in (SCRIPT_IDENTITY, QUOTES_IDENTITY, *ATTRIBUTE_VALUES, f"By {ATTRIBUTE}"):
        assert escape_text(text) in page, text
    assert "onmouseover" not in page.replace("onmouseover=alert(1)&gt;", "")  # only inside escaped text
    tables = sorted(p.name for p in (manifest_report.parent / "report_tables").iterdir())
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", name) for name in tables), tables  # safe file names


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_manifest_report_in_headless_chromium(manifest_report: Path, tmp_path: Path) -> None:
    """As the browser parses it: no element or script came out of a name."""
    r = subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", manifest_report.resolve().as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    assert "<script" not in dom.lower() and "<b " not in dom and "<i>" not in dom
    assert SCRIPT_IDENTITY.replace("<", "&lt;").replace(">", "&gt;") in dom


# ------------------------------------------------------------------------------------ helpers


def escape_text(text: str) -> str:
    from html import escape

    return escape(text)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append((tag, attrs))


def assert_safe_html(page: str) -> None:
    """Only the report's own elements and attributes; no script, event handler or remote resource."""
    parser = _Tags()
    parser.feed(page)
    assert {t for t, _ in parser.tags} <= TAGS, {t for t, _ in parser.tags} - TAGS
    for tag, attrs in parser.tags:
        for name, value in attrs:
            assert name in {"lang", "charset", "name", "content", "href", "id", "class", "src", "alt"}, (tag, name)
            if name == "src":
                assert value.startswith("data:image/png;base64,"), value[:80]
            if name == "href":
                assert value.startswith("#") or not re.match(r"[a-z]+:|//", value), value
    assert not re.search(r"https?://|url\(|@import", page, re.IGNORECASE)
