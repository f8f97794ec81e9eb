"""``leam study`` refuses what cannot make a study before it writes anything, in one line: options out of
range, unknown or unusable models, layers and parsers, damaged manifests, unreachable Ray clusters, a run
folder of another kind or with other settings (naming the options that differ). And one photo that
breaks (whatever raises) is that photo's failure row: the study goes on, and the summary line counts
failures by reason, so a problem that hits every photo shows."""

from __future__ import annotations

import contextlib
import io
import json
import re
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from leam.cli.main import main
from leam.data.dataset import load_dataset, skipped_entries
from leam.study.store import RunStore
from tests.helpers.tiny_models import registered_parser
from tests.study.conftest import linked_people

pytestmark = pytest.mark.reliability
FAST = ["--models", "dlib-resnet", "--workers", "1", "--face", "largest", "--pairs", "1", "--occlusion-seeds", "1",
        "--occlusion-percents", "5", "--thresholds", "10", "100", "--no-transfer",
        "--layers", "dlib-resnet=stage2.block1,stage4.block2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Two identities of lfw-demo, three photos each (links)."""
    return linked_people(tmp_path_factory.mktemp("data"), 2)


def leam(argv: list[str]) -> tuple[int, str, str]:
    """``leam ARGV`` in this process: (exit status, stdout, stderr); argparse's own errors exit 2."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:
            rc = exc.code
    return rc, out.getvalue(), err.getvalue()


def assert_refused(argv: list[str], pattern: str, out: Path) -> str:
    """The command fails with one line on stderr matching ``pattern``, and ``out`` is not made."""
    rc, _, err = leam(argv)
    assert rc in (1, 2), err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.search(pattern, lines[0]), lines[0]
    assert not out.exists(), sorted(p.name for p in out.iterdir())
    return lines[0]


# ------------------------------------------------------------------- options checked before any work

REFUSED = {  # options: a pattern of the one line
    "thresholds-0": (["--thresholds", "0"], r"--thresholds: expected .*\(0, 100\].*got 0"),
    "thresholds-nan": (["--thresholds", "nan", "10"], r"--thresholds: .*got nan"),
    "thresholds-twice": (["--thresholds", "10", "10"], r"--thresholds: 10 given twice"),
    "occlusion-percents-0": (["--occlusion-percents", "0"], r"--occlusion-percents: .*got 0"),
    "occlusion-percents-101": (["--occlusion-percents", "101"], r"--occlusion-percents: .*got 101"),
    "pairs-negative": (["--pairs", "-5"], r"--pairs: expected a whole number ≥ 0, got -5"),
    "occlusion-seeds-0": (["--occlusion-seeds", "0"], r"--occlusion-seeds: expected a whole number ≥ 1, got 0"),
    "seed-negative": (["--seed", "-1"], r"--seed: expected a whole number ≥ 0"),
    "layers-typo": (["--layers", "dlib-resnet=typo"], r"--layers dlib-resnet=typo: unknown layer.*'typo'.*leam layers"),
    "layers-empty": (["--layers", "dlib-resnet=,"], r"--layers dlib-resnet=,: expected one or more layer names"),
    "layers-other-model": (["--layers", "facenet=mixed7a"], r"--layers facenet=.*not among --models dlib-resnet"),
    "layers-model-twice": (["--layers", "dlib-resnet=stem", "dlib-resnet=stem"], r"--layers: dlib-resnet given twice"),
    "layers-name-twice": (["--layers", "dlib-resnet=stem,stem"], r"--layers: stem given twice for dlib-resnet"),
    "occlusion-layers-typo": (["--occlusion-layers", "typo"], r"--occlusion-layers: \['typo'\] are not among"),
    "parser-typo": (["--parser", "typo"], r"--parser: unknown parser 'typo'; registered parsers: landmarks"),
    "parser-without-weights": (["--parser", "bisenet"], r"--parser bisenet: the bisenet parser needs its weights"),
    "model-unknown": (["--models", "nope"], r"unknown model 'nope'"),
    "model-without-weights": (["--models", "iresnet50"], r"--models iresnet50: its weights are not installed"),
    "model-twice": (["--models", "dlib-resnet", "dlib-resnet"], r"--models: dlib-resnet given twice"),
    "workers-0": (["--workers", "0"], r"--workers: expected a whole number ≥ 1"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_mistaken_option_is_one_line_and_nothing_is_written(data, tmp_path, case) -> None:
    options, pattern = REFUSED[case]
    out = tmp_path / "run"
    assert_refused(["study", data, *options, "--out", out], pattern, out)


def test_a_refused_resume_names_the_options_that_differ(data, tmp_path) -> None:
    """A finished run, then the same command with other --pairs, --seed and --thresholds: refused with
    each difference spelled as typed; run.json is unchanged; the same options resume it."""
    out = tmp_path / "run"
    rc, stdout, err = leam(["study", data, *FAST, "--out", out])
    assert rc == 0, err
    assert "0 failures recorded" in stdout
    before = (out / "run.json").read_bytes()
    rc, _, err = leam(["study", data, *FAST, "--pairs", "2", "--seed", "1", "--thresholds", "5", "--out", out])
    assert rc == 1
    line = err.strip().splitlines()[-1]
    assert f"{out} holds a run with a different configuration" in line
    for difference in ("--pairs 1, not 2", "--seed 0, not 1", "--thresholds 10 100, not 5"):
        assert difference in line, line
    assert "use the same options to resume it" in line
    assert (out / "run.json").read_bytes() == before
    rc, _, err = leam(["study", data, *FAST, "--out", out])
    assert rc == 0, err


@pytest.mark.parametrize("manifest", [
    {"kind": "protect-eval", "config": {"data": "x", "models": ["dlib-resnet"], "epsilon": 8.0},
     "leam_version": "0"},
    {"config": {"data": "x", "people": 3}, "leam_version": "0"},
], ids=["protect-eval-run", "foreign-config"])
def test_out_holding_another_kind_of_run_is_one_line(data, tmp_path, manifest) -> None:
    out = tmp_path / "other"
    out.mkdir()
    (out / "run.json").write_text(json.dumps(manifest))
    rc, _, err = leam(["study", data, *FAST, "--out", out])
    assert rc == 1 and "Traceback" not in err
    assert re.fullmatch(rf"leam: error: {re.escape(str(out))}(/run.json: not the run.json of a leam study| holds a "
                        r"`leam protect-eval` run, not a study); use another --out folder\n", err), err
    assert sorted(p.name for p in out.iterdir()) == ["run.json"]  # not even a lock file


# --------------------------------------------------------------------------------------- manifests

def linked_folders(data: Path, root: Path) -> Path:
    """``root`` holding a link to each identity folder of ``data``."""
    root.mkdir()
    for person in sorted(p for p in data.iterdir() if p.is_dir()):
        (root / person.name).symlink_to(person.resolve(), target_is_directory=True)
    return root


def manifest_rows(data: Path) -> list[str]:
    return [f"{p.parent.name}/{p.name},{p.parent.name},F" for p in sorted(data.glob("*/*.jpg"))]


BAD_MANIFESTS = {  # lines after the header (bytes); the line reported; a pattern of the reason
    "latin-1": (lambda rows: [r.encode() for r in rows] + ["x/Jos\xe9.jpg,Jos\xe9,M".encode("latin-1")],
                "bytes that are not UTF-8"),
    "ragged-short": (lambda rows: [r.encode() for r in rows] + [b"x.jpg,x"], r"2 field\(s\), where the header has 3"),
    "ragged-long": (lambda rows: [r.encode() for r in rows] + [b"x.jpg,x,M,extra"], r"4 field\(s\)"),
    "duplicate-path": (lambda rows: [r.encode() for r in rows] + [("./" + rows[0]).encode()],
                       r"is listed twice \(also on line 2\)"),
    "empty-identity": (lambda rows: [r.encode() for r in rows] + [b"y.jpg, ,M"], "the identity is empty"),
    "empty-path": (lambda rows: [r.encode() for r in rows] + [b",y,M"], "the path is empty"),
    "absolute-path": (lambda rows: [r.encode() for r in rows] + [b"/etc/passwd,x,M"], "leads out of the data folder"),
    "dotdot-path": (lambda rows: [r.encode() for r in rows] + [b"a/../../secret.jpg,x,M"],
                    "leads out of the data folder"),
}


@pytest.mark.parametrize("case", list(BAD_MANIFESTS))
def test_a_damaged_manifest_is_one_line_naming_the_file_and_line(data, tmp_path, case) -> None:
    make, reason = BAD_MANIFESTS[case]
    root = linked_folders(data, tmp_path / "data")
    lines = [b"path,identity,gender", *make(manifest_rows(data))]
    (root / "manifest.csv").write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "run"
    line = assert_refused(["study", root, *FAST, "--out", out], reason, out)
    assert f"{root}/manifest.csv line {len(lines)}: " in line


def test_a_manifest_with_a_bom_missing_files_and_unlisted_files(data, tmp_path) -> None:
    """A UTF-8 BOM is read; a row whose file is not there and the files the manifest does not list (each,
    or a whole folder once) are left out, each with its reason (the study's failures, stage "data")."""
    root = linked_folders(data, tmp_path / "data")
    (root / "extra").mkdir()
    (root / "extra" / "notes.txt").write_text("not listed\n")
    rows = manifest_rows(data)
    listed, unlisted = rows[:2] + rows[3:5], [rows[2].split(",")[0], rows[5].split(",")[0]]
    text = "\ufeffpath,identity,gender\n" + "\n".join([*listed, "gone/missing.jpg,x,F"]) + "\n"
    (root / "manifest.csv").write_text(text, encoding="utf-8")
    dataset = load_dataset(root)
    assert {k: len(v) for k, v in dataset.items()} == {r.split(",")[1]: 2 for r in listed}
    assert all(p.attrs == {"gender": "F"} for photos in dataset.values() for p in photos)
    skipped = skipped_entries(root)
    assert skipped == {
        "gone/missing.jpg": "listed in manifest.csv (line 6), but there is no such file",
        unlisted[0]: "not listed in manifest.csv", unlisted[1]: "not listed in manifest.csv",
        "extra": "a folder of 1 file(s), none of them listed in manifest.csv",
    }


# ------------------------------------------------------------------------------------------- Ray

def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_ray_cluster_is_one_line_at_once(data, tmp_path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed")
    import time

    out, port = tmp_path / "run", closed_port()
    started = time.monotonic()
    assert_refused(["study", data, *FAST, "--engine", "ray", "--address", f"127.0.0.1:{port}", "--out", out],
                   rf"--address 127.0.0.1:{port}: nothing answers at 127.0.0.1:{port} \(Connection refused\); "
                   r"start the cluster there", out)
    assert time.monotonic() - started < 20


def test_a_ray_client_address_without_the_ray_client_says_what_to_install(data, tmp_path, monkeypatch) -> None:
    pytest.importorskip("ray", reason="Ray is not installed")
    monkeypatch.setitem(sys.modules, "grpc", None)  # as when ray[client] is not installed: import grpc fails
    out = tmp_path / "run"
    assert_refused(["study", data, *FAST, "--engine", "ray", "--address", "ray://127.0.0.1:10001", "--out", out],
                   r"--address ray://127.0.0.1:10001: .*Ray Client.*pip install 'ray\[client\]'", out)


# ---------------------------------------------------------------------- one photo never stops a study

def widened(photo: Path, width: int, folder: Path) -> Path:
    """``photo`` on a grey canvas ``width`` pixels wide: the same face, a size no other photo has."""
    image = Image.open(photo).convert("RGB")
    canvas = Image.new("RGB", (width, image.height), (128, 128, 128))
    canvas.paste(image, (0, 0))
    path = folder / f"{photo.stem}_w{width}.png"
    canvas.save(path)
    return path


def breaking_parse(photo: np.ndarray, face, parse):
    """Parses as the landmark parser, but raises as a library would on two photos (by their width)."""
    if photo.shape[1] == 301:
        raise ValueError("operands could not be broadcast together with shapes (3,) (4,)")
    if photo.shape[1] == 302:
        raise MemoryError()
    return parse(photo, face)


def test_a_photo_that_breaks_a_library_is_its_failure_row(data, tmp_path) -> None:
    root = tmp_path / "data"
    person = sorted(p for p in data.iterdir() if p.is_dir())[0]
    (root / person.name).mkdir(parents=True)
    photos = sorted(person.iterdir())
    for p in photos:
        (root / person.name / p.name).symlink_to(p.resolve())
    value_error = widened(photos[1], 301, root / person.name)
    memory_error = widened(photos[2], 302, root / person.name)
    out = tmp_path / "run"
    with registered_parser("breaks-on-two", breaking_parse):
        rc, stdout, err = leam(["study", root, *FAST, "--parser", "breaks-on-two", "--out", out])
    assert rc == 0 and "Traceback" not in err, err
    tables = RunStore(out).tables()
    failures = tables["failures"].set_index("image")
    rel = f"{person.name}/"
    assert failures.loc[rel + value_error.name, "reason"] == (
        "ValueError: operands could not be broadcast together with shapes (3,) (4,)")
    assert failures.loc[rel + memory_error.name, "reason"] == "MemoryError"
    assert set(failures["stage"]) == {"parse"} and len(failures) == 2
    explained = tables["images"].query("role == 'explained'")["image"]
    assert sorted(explained) == [rel + p.name for p in photos[1:]]  # the others go on (photos[0]: the reference)
    assert "2 failures recorded" in stdout


def test_a_parser_that_fails_on_every_photo_shows_in_the_summary(data, tmp_path) -> None:
    def broken(photo, face, parse):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    out = tmp_path / "run"
    with registered_parser("always-breaks", broken):
        rc, stdout, err = leam(["study", data, *FAST, "--parser", "always-breaks", "--out", out])
    assert rc == 0, err
    failures = RunStore(out).tables()["failures"]
    assert len(failures) == 4 and set(failures["stage"]) == {"parse"}  # two identities, two explained photos each
    assert ("4 failures recorded (4 × parse: RuntimeError: CUDA error: an illegal memory access was encountered)"
            in stdout), stdout


def test_per_photo_finds_the_photo_that_breaks_a_batch() -> None:
    """A batch step that raises is redone photo by photo: only the photo that raises is a failure."""
    from leam.study.units import _per_photo

    failed = []

    def double(idx: list[int]) -> list[int]:
        if 3 in idx:
            raise ValueError("photo 3")
        return [2 * i for i in idx]

    assert _per_photo(double, [1, 2, 3, 4], lambda i, exc: failed.append((i, str(exc)))) == {1: 2, 2: 4, 4: 8}
    assert failed == [(3, "photo 3")]
    assert _per_photo(double, [], failed.append) == {}


def test_pairs_of_full_maps_alone_are_a_setting_and_no_pair_setting_is_refused() -> None:
    from leam.errors import LeamError
    from leam.study.config import StudyConfig

    StudyConfig(data="x", models=("dlib-resnet",), pair_thresholds=(None,)).check()
    StudyConfig(data="x", models=("dlib-resnet",), pair_thresholds=(5,)).check()
    with pytest.raises(LeamError, match="pair_thresholds: expected the full map"):
        StudyConfig(data="x", models=("dlib-resnet",), pair_thresholds=()).check()
    with pytest.raises(LeamError, match="got 0"):
        StudyConfig(data="x", models=("dlib-resnet",), pair_thresholds=(None, 0)).check()


def test_a_run_folder_inside_the_data_folder_is_refused(tmp_path) -> None:
    """A run among the photos it reads (``--out DATA/run``) is one line, and nothing is written."""
    (tmp_path / "data").mkdir()
    data = linked_people(tmp_path / "data", 1)
    out = data / "run"
    assert_refused(["study", data, *FAST, "--out", out], r"inside the data folder .*choose another --out", out)
