"""The ``leam`` command end to end, as a user runs it (a real subprocess, real model, real photos)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from leam.maps import DEFAULT_AGGREGATION, DEFAULT_DIRECTION

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DEMO = DATA / "lfw-demo"
RAW = DATA / "raw-photos"
needs_data = pytest.mark.skipif(not DEMO.is_dir(), reason=f"shared photos not found at {DEMO}")


def leam(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "leam.cli.main", *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


def person_photos(n: int = 3) -> list[Path]:
    person = sorted(p for p in DEMO.iterdir() if p.is_dir())[0]
    return sorted(person.iterdir())[:n]


@needs_data
def test_explain_writes_every_promised_file(tmp_path: Path) -> None:
    a, b, c = person_photos(3)
    out = tmp_path / "out"
    r = leam("explain", a, "--reference", b, c, "--out", out)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    layers = summary["layers"]
    assert len(layers) == 9
    assert (summary["direction"], summary["aggregation"]) == (DEFAULT_DIRECTION, DEFAULT_AGGREGATION)
    assert summary["references"] == [str(b), str(c)]
    assert 0.0 < summary["cosine_similarity"] < 1.0
    with np.load(out / "maps.npz") as maps:
        assert set(maps.files) >= {*layers, "aggregate"}
        for name in [*layers, "aggregate"]:
            assert maps[name].shape == (150, 150)
            assert maps[name].min() >= 0.0 and maps[name].max() <= 1.0
        combined = {"early": layers[:3], "mean": layers}[DEFAULT_AGGREGATION]  # the first three, or all nine
        np.testing.assert_allclose(maps["aggregate"], np.mean([maps[n] for n in combined], axis=0), atol=1e-6)
    for name in layers:
        assert Image.open(out / "layers" / f"{name}.png").size == (150, 150)
    photo = Image.open(a)
    assert Image.open(out / "photo_aggregate.png").size == photo.size
    assert Image.open(out / "grid.png").size[0] > 600
    x0, y0 = summary["face_box"]["left"], summary["face_box"]["top"]
    assert 0 <= x0 < photo.size[0] and 0 <= y0 < photo.size[1]


@needs_data
def test_explain_all_layers_and_options(tmp_path: Path) -> None:
    a, b = person_photos(2)
    r = leam("explain", a, "--reference", b, "--layers", "stage2.block1", "stage4.block2",
             "--direction", "similarity", "--aggregate", "max", "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "maps.npz") as maps:
        np.testing.assert_allclose(maps["aggregate"], np.maximum(maps["stage2.block1"], maps["stage4.block2"]))
    assert json.loads((tmp_path / "summary.json").read_text())["direction"] == "similarity"


@needs_data
@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda tmp: tmp / "missing.jpg", "no such file"),
        (lambda tmp: (tmp / "text.jpg").write_text("hello") and tmp / "text.jpg", "not an image"),
        (lambda tmp: Image.new("RGB", (200, 200), (128, 128, 128)).save(tmp / "blank.png") or tmp / "blank.png",
         "no face"),
        (lambda tmp: RAW / "couple.jpg", "2 faces found"),
    ],
    ids=["missing", "not-an-image", "no-face", "two-faces"],
)
def test_explain_bad_inputs_fail_with_one_line(tmp_path: Path, make_input, message: str) -> None:
    path = make_input(tmp_path)
    r = leam("explain", path, "--reference", person_photos(1)[0], "--out", tmp_path / "out")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and path.name in lines[0], r.stderr
    assert not (tmp_path / "out" / "summary.json").exists()


@needs_data
def test_largest_face_option_takes_the_larger_face(tmp_path: Path) -> None:
    r = leam("explain", RAW / "couple.jpg", "--reference", person_photos(1)[0], "--largest-face",
             "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    box = json.loads((tmp_path / "summary.json").read_text())["face_box"]
    # the two faces of couple.jpg are about 635 and 530 px wide: the larger is taken
    assert box["right"] - box["left"] > 600


@needs_data
def test_self_reference_is_refused_clearly(tmp_path: Path) -> None:
    a = person_photos(1)[0]
    r = leam("explain", a, "--reference", a, "--out", tmp_path)
    assert r.returncode == 1
    assert "given twice" in r.stderr and "own reference" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@needs_data
def test_unknown_layer_lists_valid_ones(tmp_path: Path) -> None:
    a, b = person_photos(2)
    r = leam("explain", a, "--reference", b, "--layers", "stage9.nope", "--out", tmp_path)
    assert r.returncode == 1
    assert "stage9.nope" in r.stderr and "stage1.block0" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@needs_data
def test_embed_json(tmp_path: Path) -> None:
    a, b = person_photos(2)
    r = leam("embed", a, b, "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["path"] for row in rows] == [str(a), str(b)]
    e = np.array([row["embedding"] for row in rows])
    assert e.shape == (2, 128)
    assert np.linalg.norm(e[0] - e[1]) < 0.6  # same person under dlib's threshold


def test_layers_lists_defaults_with_shapes() -> None:
    r = leam("layers")
    assert r.returncode == 0, r.stderr
    lines = {line.split()[1] if line.startswith("*") else line.split()[0]: line for line in r.stdout.splitlines()}
    assert lines["stem"].startswith("*") and "32 x 72 x 72" in lines["stem"]
    assert lines["stage5.block0"].startswith("*") and "256 x 2 x 2" in lines["stage5.block0"]
    assert "stage3.block1.conv2" in lines


def test_models_reports_installed_weights() -> None:
    r = leam("models")
    assert r.returncode == 0 and "dlib-resnet" in r.stdout and "weights found" in r.stdout


@pytest.mark.slow
@needs_data
def test_demo_writes_an_index_and_resumes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    person = sorted(p for p in DEMO.iterdir() if p.is_dir())[0]
    # a hostile identity name, linked (not copied) to real photos
    odd = data / '<img src=x onerror=alert(1)> "Zoë" & co'
    odd.mkdir(parents=True)
    for p in sorted(person.iterdir())[:2]:
        (odd / p.name).symlink_to(p)
    (data / "lonely").mkdir()
    (data / "lonely" / "only.jpg").symlink_to(sorted(person.iterdir())[2])
    out = tmp_path / "out"
    r = leam("demo", data, "--out", out)
    assert r.returncode == 0, r.stderr
    page = (out / "index.html").read_text()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page and "Zoë" in page
    assert "http://" not in page and "https://" not in page
    summaries = sorted(out.rglob("summary.json"))
    assert len(summaries) == 2
    for s in summaries:
        assert (s.parent / "regions.csv").is_file() and (s.parent / "regions.png").is_file()
    assert (odd / "..").resolve() == data.resolve()
    assert (out / odd.name / "regions_identity.png").is_file() and (out / "regions_identity.csv").is_file()
    stamp = [s.stat().st_mtime_ns for s in summaries]
    r = leam("demo", data, "--out", out)  # resume: nothing redone
    assert r.returncode == 0 and [s.stat().st_mtime_ns for s in summaries] == stamp
    r = leam("demo", data, "--out", out, "--aggregate", "max")  # another map: every photo redone with it
    assert r.returncode == 0, r.stderr
    assert [json.loads(s.read_text())["aggregation"] for s in summaries] == ["max", "max"]


@needs_data
def test_parse_writes_palette_labels_and_legend(tmp_path: Path) -> None:
    from leam.parse import CLASSES, UNLABELLED

    r = leam("parse", person_photos(1)[0], "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    labels = Image.open(tmp_path / "labels.png")
    assert labels.mode == "P" and labels.size == (150, 150)
    values = set(np.unique(np.asarray(labels)).tolist())
    legend = json.loads((tmp_path / "legend.json").read_text())
    assert values <= {v["value"] for v in legend["classes"].values()} | {UNLABELLED}
    assert legend["classes"]["nose"]["value"] == CLASSES.index("nose")
    assert Image.open(tmp_path / "parse_overlay.png").size == (150, 150)
    assert "nose" in r.stdout


@needs_data
def test_regions_table_and_figure(tmp_path: Path) -> None:
    import pandas as pd

    a, b = person_photos(2)
    r = leam("regions", a, "--reference", b, "--thresholds", "1", "10", "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(tmp_path / "regions.csv")
    shares = table[table["measure"] == "share"]
    assert set(shares["threshold"]) == {1.0, 10.0}
    assert "hair" not in set(table["class"])  # the landmark parser cannot see hair
    for (_layer, _p), group in shares.groupby(["layer", "threshold"]):
        assert group["value"].sum() == pytest.approx(1.0)
    assert set(table["layer"]) == {*json.loads((tmp_path / "summary.json").read_text())["layers"], "aggregate"}
    assert Image.open(tmp_path / "regions.png").size[0] > 1000
    assert "top 1%" in r.stdout and "nose" in r.stdout


def test_a_name_with_terminal_controls_is_shown_escaped(tmp_path):
    """A photo named with an escape sequence and a right-to-left override reaches the terminal as text."""
    name = tmp_path / "evil\x1b[2J\u202egpj.jpg"
    name.write_bytes(b"not an image")
    p = leam("explain", str(name), "--reference", str(name), "--out", str(tmp_path / "out"))
    assert p.returncode == 1 and "\x1b" not in p.stderr and "\u202e" not in p.stderr, p.stderr
    assert "evil\\u001b[2J\\u202egpj.jpg" in p.stderr
