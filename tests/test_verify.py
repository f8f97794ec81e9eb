"""``leam verify``: the face rule, the pair draw from a folder, and a real run (the scores themselves:
tests/metrics/test_verification.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leam.errors import LeamError, MultipleFacesError, NoFaceError
from leam.face import Face, choose_face
from leam.study.verification import build_pairs
from tests.conftest import SHARED_DATA

LFW_DEMO = SHARED_DATA / "lfw-demo"


# ------------------------------------------------------------------------------- the face rule


def test_choose_face_largest_central_or_only():
    big = Face((0, 0, 120, 120), np.zeros((5, 2)), 1.0)  # the bystander in front, in a corner
    middle = Face((100, 100, 150, 150), np.zeros((5, 2)), 1.0)  # centre (125, 125) of a 250x250 photo
    assert choose_face([big, middle], (250, 250), "p.jpg", "largest") is big
    assert choose_face([big, middle], (250, 250), "p.jpg", "central") is middle
    with pytest.raises(MultipleFacesError, match="p.jpg: 2 faces found"):
        choose_face([big, middle], (250, 250), "p.jpg", "only")
    with pytest.raises(NoFaceError, match="p.jpg: no face found"):
        choose_face([], (250, 250), "p.jpg", "central")
    with pytest.raises(ValueError, match="expected a face rule"):
        choose_face([big], (250, 250), "p.jpg", "biggest")


# ----------------------------------------------------------------------------------- the pairs


def fake_folder(root: Path, sizes: dict[str, int]) -> Path:
    for name, n in sizes.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            (root / name / f"{name}_{i:04d}.jpg").write_bytes(b"")
    return root


def as_set(pairs: np.ndarray) -> set[tuple[int, int]]:
    return {(min(a, b), max(a, b)) for a, b in pairs.tolist()}


def test_pairs_are_deterministic_valid_and_disjoint(tmp_path):
    root = fake_folder(tmp_path, {"a": 30, "b": 2, "c": 5, "d": 1, "e": 12, "f": 3})
    p = build_pairs(root, n_pairs=40, seed=7)
    again, other = build_pairs(root, n_pairs=40, seed=7), build_pairs(root, n_pairs=40, seed=8)
    np.testing.assert_array_equal(p.same, again.same)
    np.testing.assert_array_equal(p.different, again.different)
    assert as_set(p.same) != as_set(other.same) or as_set(p.different) != as_set(other.different)
    ident = np.array(p.identities)
    assert len(p.same) == len(p.different) == 40
    assert (ident[p.same[:, 0]] == ident[p.same[:, 1]]).all() and (p.same[:, 0] != p.same[:, 1]).all()
    assert (ident[p.different[:, 0]] != ident[p.different[:, 1]]).all()
    assert len(as_set(p.same)) == 40 and len(as_set(p.different)) == 40  # no pair twice
    assert not as_set(p.same) & as_set(p.different)
    assert p.available_same == 435 + 1 + 10 + 66 + 3
    np.testing.assert_array_equal(p.same_folds, np.arange(40) % 10)


def test_same_pairs_are_spread_over_identities(tmp_path):
    root = fake_folder(tmp_path, {"big": 100, **{f"p{i}": 2 for i in range(10)}, "mid": 4})
    p = build_pairs(root, n_pairs=15, seed=0)
    owners = [p.identities[i] for i in p.same[:, 0]]
    # one pair per identity and round: 12 in the first round, 2 in the second (big and mid only have more),
    # and the third round stops after the first of big and mid in the shuffled order
    assert all(owners.count(f"p{i}") == 1 for i in range(10))
    assert sorted(owners.count(n) for n in ("big", "mid")) == [2, 3]


def test_pairs_take_all_same_pairs_when_fewer(tmp_path):
    root = fake_folder(tmp_path, {"a": 3, "b": 2, "c": 1})
    p = build_pairs(root, n_pairs=3000, seed=0)
    assert len(p.same) == p.available_same == 4 and len(p.different) == 4
    assert as_set(p.same) == {(0, 1), (0, 2), (1, 2), (3, 4)}


def test_pairs_need_a_person_with_two_photos(tmp_path):
    with pytest.raises(LeamError, match="no identity folder with at least two images"):
        build_pairs(fake_folder(tmp_path, {"a": 1, "b": 1}))
    with pytest.raises(ValueError, match="n_pairs >= 1"):
        build_pairs(tmp_path, n_pairs=0)


# --------------------------------------------------------------------------------- a real run


@pytest.mark.skipif(not LFW_DEMO.is_dir(), reason=f"shared photos not found at {LFW_DEMO}")
def test_verify_end_to_end_on_an_lfw_demo_slice(tmp_path):
    """``leam verify`` as a user runs it, on 6 people x 3 photos of lfw-demo plus a photo without a face."""
    from PIL import Image

    data = tmp_path / "data"
    for person in sorted(p for p in LFW_DEMO.iterdir() if p.is_dir())[:6]:
        (data / person.name).mkdir(parents=True)
        for photo in sorted(person.glob("*.jpg"))[:3]:
            (data / person.name / photo.name).symlink_to(photo)
    blank = data / person.name / "zz_blank.png"  # the last person's fourth photo: a grey square
    Image.new("RGB", (250, 250), (128, 128, 128)).save(blank)
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "leam.cli.main", "verify", data, "--model", "dlib-resnet", "--pairs", "20",
         "--seed", "3", "--out", out],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pairs"]["same"] == 20 and summary["pairs"]["available_same"] == 5 * 3 + 6
    assert summary["photos"]["no_face"] == 1
    assert summary["failed_photos"] == [
        {"path": str(blank), "identity": person.name, "status": "no_face", "reason": f"{blank}: no face found",
         "faces_found": 0}
    ]
    pairs = pd.read_csv(out / "pairs.csv")
    left_out = pairs[~pairs.scored]
    assert len(left_out) == summary["pairs"]["left_out_same"] + summary["pairs"]["left_out_different"]
    assert ((left_out.photo_a == str(blank)) | (left_out.photo_b == str(blank))).all()
    assert left_out["dlib-resnet"].isna().all() and pairs[pairs.scored]["dlib-resnet"].notna().all()
    m = summary["models"]["dlib-resnet"]
    assert m["n_same"] + m["n_different"] == pairs.scored.sum()
    assert m["distance"] == "euclidean" and m["spec_threshold"] == 0.6 and m["tar_at_far"] is None
    assert m["auc"] > 0.9 and m["accuracy_10fold"] > 0.85 and m["median_same"] < 0.6 < m["median_different"]
    table = pd.read_csv(out / "verify.csv")
    assert table.model.tolist() == ["dlib-resnet"] and table.auc[0] == pytest.approx(m["auc"])
    assert (out / "roc.png").stat().st_size > 0 and len(pd.read_csv(out / "photos.csv")) == summary["photos"]["used"]
    assert "dlib-resnet" in r.stdout and "1 without a face" in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "dlib-resnet", "facenet", "--weights", "w.dat"], "--weights goes with a single --model"),
        (["--model", "dlib-resnet", "--preset", "arcface"], "--preset goes with --model-file"),
        (["--model", "nonesuch"], "unknown model 'nonesuch'"),
    ],
    ids=["weights-with-two-models", "preset-without-file", "unknown-model"],
)
def test_verify_command_errors_in_one_line(tmp_path, capsys, args, message):
    from leam.cli.main import main

    assert main(["verify", str(tmp_path), *args, "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("leam: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_verify_command_on_a_folder_without_pairs(tmp_path, capsys):
    from leam.cli.main import main

    assert main(["verify", str(fake_folder(tmp_path / "data", {"a": 1})), "--out", str(tmp_path / "out")]) == 1
    assert "no identity folder with at least two images" in capsys.readouterr().err


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--pairs", "0", "expected a whole number ≥ 1, got 0"),
    ("--pairs", "-5", "expected a whole number ≥ 1, got -5"),
    ("--batch-size", "0", "expected a whole number ≥ 1, got 0"),
    ("--batch-size", "2.5", "invalid positive_int value: '2.5'"),
    ("--seed", "-1", "expected a whole number ≥ 0, got -1"),
])
def test_verify_numeric_options_are_checked_by_argparse(tmp_path, capsys, option, value, message):
    from leam.cli.main import main

    with pytest.raises(SystemExit) as exit_:
        main(["verify", str(tmp_path), option, value, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"leam verify: error: argument {option}: {message}" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()
