"""Hostile options and tiny data folders for ``leam verify`` and ``leam regions``: generated on the spot
(links to the shared LFW photos, grey squares with no face), each giving one clear line or the right
result, never a traceback, and writing nothing when refused."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from PIL import Image

from leam.cli.main import main

pytestmark = pytest.mark.reliability

BAD_COUNTS = ["0", "-1", "-5", "2.5", "1e3", "x", ""]  # for options that take a whole number ≥ 1


def leam(capsys, *argv) -> tuple[int, str, str]:
    """``leam ARGV`` in this process: (exit status, stdout, stderr); argparse's exit becomes its status."""
    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def data_folder(root: Path, lfw: Path, people: dict[str, int], grey: bool = False) -> Path:
    """``root/<person>/`` with the first n photos of each LFW person (links), or n grey squares (no face)."""
    for person, n in people.items():
        (root / person).mkdir(parents=True)
        for i, photo in enumerate(sorted((lfw / person).iterdir())[:n]):
            if grey:
                Image.new("RGB", (250, 250), (128, 128, 128)).save(root / person / f"grey_{i}.png")
            else:
                (root / person / photo.name).symlink_to(photo)
    return root


# --------------------------------------------------------------------------------- verify


@pytest.mark.parametrize("value", BAD_COUNTS)
@pytest.mark.parametrize("option", ["--pairs", "--batch-size"])
def test_verify_counts_are_whole_numbers_from_one(capsys, tmp_path, option, value) -> None:
    rc, _, err = leam(capsys, "verify", tmp_path, option, value, "--out", tmp_path / "out")
    assert rc == 2 and "Traceback" not in err
    assert re.search(rf"^leam verify: error: argument {option}: ", err, re.MULTILINE), err
    assert not (tmp_path / "out").exists()


def test_verify_with_one_same_and_one_different_pair(capsys, lfw_dir, tmp_path) -> None:
    """The scores one pair of each kind defines are given; the 10-fold accuracy is not, with the reason."""
    data = data_folder(tmp_path / "data", lfw_dir, {"Tony_Blair": 2, "George_W_Bush": 1})
    rc, out, err = leam(capsys, "verify", data, "--out", tmp_path / "out")
    assert rc == 0, err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    m = summary["models"]["dlib-resnet"]
    assert (m["n_same"], m["n_different"], m["accuracy_10fold"], m["threshold_10fold"]) == (1, 1, None, None)
    assert m["auc"] == 1.0 and m["median_same"] < 0.6 < m["median_different"] and m["accuracy_at_spec"] == 1.0
    assert summary["pairs"]["ten_fold_not_computed"].startswith("it needs a same and a different pair in each of")
    assert "10-fold accuracy not computed: it needs a same and a different pair in each of the 10 folds (at least " \
           "10 of each kind), got 1 same and 1 different scored pairs" in out


def test_verify_when_no_photo_has_a_face(capsys, lfw_dir, tmp_path) -> None:
    data = data_folder(tmp_path / "data", lfw_dir, {"Tony_Blair": 2, "George_W_Bush": 1}, grey=True)
    rc, _, err = leam(capsys, "verify", data, "--out", tmp_path / "out")
    last = err.rstrip("\n").split("\n")[-1]  # after the progress bar
    assert rc == 1 and "Traceback" not in err and "error" not in err.replace(last, "")
    assert last.startswith("leam: error: expected same and different pairs to score, got 0 same and 0 different")


# --------------------------------------------------------------------------------- regions


@pytest.mark.parametrize("values", [["0"], ["-1"], ["100.0001"], ["nan"], ["inf"], ["1e400"], ["5", "5"], ["1", "0"]])
def test_regions_thresholds_are_checked_before_any_work(capsys, lfw_dir, tmp_path, values) -> None:
    a, b = sorted((lfw_dir / "Tony_Blair").iterdir())[:2]
    rc, _, err = leam(capsys, "regions", a, "--reference", b, "--thresholds", *values, "--out", tmp_path / "out")
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    bad = [v for v in values if not 0 < float(v) <= 100 or math.isnan(float(v))]
    expected = f"got {', '.join(f'{float(v):g}' for v in bad)}" if bad else "5 given twice"
    assert err.startswith("leam: error: --thresholds: ") and expected in err, err
    assert not (tmp_path / "out").exists()
