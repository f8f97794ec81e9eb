"""``leam protect`` and ``leam protect-eval`` as a user runs them: real photos, a real model, files on disk."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from leam.cli.main import main
from leam.data.images import load_image


def _png_copies(photos: list[Path], folder: Path, names: list[str]) -> list[Path]:
    """The photos re-encoded as PNG in a temporary folder (never in the repository)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for p, name in zip(photos, names):
        Image.open(p).save(folder / name)
        out.append(folder / name)
    return out


def _error(capsys, *argv) -> str:
    assert main(list(map(str, argv))) == 1
    err = capsys.readouterr().err
    assert err.startswith("leam: error: ") and err.count("\n") == 1, err
    return err


def test_bad_input_gives_one_line_errors(tmp_path: Path, capsys, demo_person):
    a, b = demo_person[:2]
    assert "no such file" in _error(capsys, "protect", tmp_path / "missing.jpg", a)
    assert "two or more photos" in _error(capsys, "protect", a)
    assert "--budget" in _error(capsys, "protect", a, b, "--budget", "0")
    assert "epsilon" in _error(capsys, "protect", a, b, "--epsilon", "0")
    gif = tmp_path / "x.gif"
    Image.open(a).convert("P").save(gif)
    assert "not GIF" in _error(capsys, "protect", gif, a)
    assert "unknown model 'nope'" in _error(capsys, "protect", a, b, "--models", "nope")
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 80, 3)).astype(np.uint8)).save(noise)
    assert "no face found" in _error(capsys, "protect", noise, a, "--models", "facenet", "--eval-models", "facenet")
    run = tmp_path / "run"
    assert "not a folder" in _error(capsys, "protect-eval", tmp_path / "none", "--models", "facenet", "--out", run)
    assert not run.exists()
    assert "budgets" in _error(capsys, "protect-eval", tmp_path, "--models", "facenet", "--budgets", "-1", "--out", run)
    assert "unknown model" in _error(capsys, "protect-eval", tmp_path, "--models", "nope", "--out", run)
    assert not run.exists()
    assert "--photos" in _error(capsys, "protect-eval", tmp_path, "--models", "facenet", "--photos", "0", "--out", run)


def test_protect_png_changes_only_the_mask_within_epsilon(tmp_path: Path, demo_person):
    from leam.protect.api import protect_files
    from leam.protect.core import ProtectConfig

    pngs = _png_copies(demo_person[:2], tmp_path / "in", ["a.png", "b.png"])
    result = protect_files(pngs, ["facenet"], tmp_path / "out", budget=2, eval_models=["facenet"],
                           config=ProtectConfig(epsilon=8, steps=2))
    for photo in result.photos:
        path, decoded, mask = photo.versions["leam"]
        assert path.parent == tmp_path / "out" and path.suffix == ".png"
        saved = load_image(path)  # the file on disk, decoded again
        np.testing.assert_array_equal(saved, decoded)
        diff = saved.astype(int) - photo.original.astype(int)
        assert (diff[~mask] == 0).all()
        assert 0 < np.abs(diff[mask]).max() <= 8
        assert int(mask.sum()) == int(np.ceil(0.02 * (photo.box[2] - photo.box[0]) * (photo.box[3] - photo.box[1])))
        mask_png = np.asarray(Image.open(tmp_path / "out" / "masks" / f"{path.name}.png")) > 0
        np.testing.assert_array_equal(mask_png, mask)
    rows = result.rows
    assert set(rows["method"]) == {"none", "leam"} and rows["face_found"].all()


def test_protect_cli_writes_jpeg_like_the_input_and_an_escaped_report(tmp_path: Path, demo_person):
    folder = tmp_path / "<b>in & out"
    folder.mkdir()
    a, b = (folder / "x<i>.jpg", folder / "y.jpg")
    a.write_bytes(demo_person[0].read_bytes())
    b.write_bytes(demo_person[1].read_bytes())
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "leam.cli.main", "protect", str(a), str(b), "--models", "facenet",
                        "--eval-models", "facenet", "--budget", "1", "--steps", "2", "--baselines", "--threads", "1",
                        "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "facenet (in the ensemble): match" in r.stdout
    for src in (a, b):
        with Image.open(src) as i, Image.open(out / src.name) as o:
            assert o.format == "JPEG" and o.size == i.size
        for method in ("random", "black", "dense"):
            assert (out / "baselines" / method / src.name).is_file()
    page = (out / "report.html").read_text()
    assert "x<i>" not in page and "<b>in" not in page and "x&lt;i&gt;.jpg" in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # self-contained
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["method"]) == {"leam", "random", "black", "dense"}


def test_protect_eval_resumes_and_reports(tmp_path: Path, demo_person):
    pytest.importorskip("pyarrow")
    data = tmp_path / "data"
    for name, photos in (("<i>Ana & co", demo_person[:3]), ("Solo", demo_person[3:4])):
        (data / name).mkdir(parents=True)
        for p in photos:
            (data / name / p.name).symlink_to(p)
    out = tmp_path / "run"
    args = ["protect-eval", str(data), "--models", "facenet", "--budgets", "1", "--steps", "2", "--threads", "1",
            "--methods", "leam", "consensus", "random", "black", "dense", "--out", str(out)]
    assert main(args) == 0
    first = pd.read_csv(out / "tables" / "results.csv")
    assert set(first["method"]) == {"none", "resaved", "leam", "consensus", "random", "black", "dense"}
    assert (first["image"].str.contains("Ana")).all()  # one photo of the first identity protected
    failures = pd.read_csv(out / "tables" / "failures.csv")
    assert failures["identity"].tolist() == ["Solo"] and "1 usable photo" in failures["reason"][0]
    stamp = (out / "parts").stat().st_mtime_ns, sorted(p.stat().st_mtime_ns for p in (out / "parts").rglob("done.json"))
    assert main(args) == 0  # resumed: nothing redone, the same tables
    assert sorted(p.stat().st_mtime_ns for p in (out / "parts").rglob("done.json")) == stamp[1]
    pd.testing.assert_frame_equal(pd.read_csv(out / "tables" / "results.csv"), first)
    page = (out / "report.html").read_text()
    assert "Match rate after protection" in page and "<i>Ana" not in page
    assert main([*args[:-2], "--steps", "3", "--out", str(out)]) == 1  # another configuration is refused
