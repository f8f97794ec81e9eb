"""A user's model file next to registered models (``--models NAME=PATH[:PRESET]``) in ``leam study``,
``verify``, ``protect`` and ``protect-eval``: real runs over two people of lfw-demo with a real ONNX file
(tests/helpers/onnx_files.py's tiny embedder), its record in the run folder, a resume refused when the file
changed, and one line for each bad spec with nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from leam.errors import ModelError
from leam.models.choice import ModelChoice, parse_model_arg, parse_model_args
from tests.helpers.onnx_files import tiny_model
from tests.hostile.test_study_options import assert_refused, leam
from tests.study.conftest import linked_people

pytestmark = pytest.mark.reliability
FAST = ["--workers", "1", "--face", "largest", "--pairs", "1", "--occlusion-seeds", "1", "--occlusion-percents", "5",
        "--thresholds", "10", "100", "--no-transfer"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Two identities of lfw-demo, three photos each (links)."""
    return linked_people(tmp_path_factory.mktemp("data"), 2)


def write_onnx(path: Path, seed: int = 0) -> Path:
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(tiny_model(seed), str(path))
    return path


def test_the_spec_is_parsed_once_for_every_command(tmp_path) -> None:
    f = write_onnx(tmp_path / "m.onnx")
    assert parse_model_arg("dlib-resnet") == ModelChoice("dlib-resnet")
    assert parse_model_arg(f"mine={f}:arcface-bgr") == ModelChoice("mine", str(f), "arcface-bgr")
    assert parse_model_arg(f"mine={f}") == ModelChoice("mine", str(f), None)
    with pytest.raises(ModelError, match="given twice"):
        parse_model_args([f"mine={f}", f"mine={f}"])


def test_a_study_of_a_model_file_records_it_and_refuses_a_resume_once_it_changed(data, tmp_path) -> None:
    f, out = write_onnx(tmp_path / "models" / "mine.onnx"), tmp_path / "run"
    rc, _, err = leam(["study", data, "--models", f"mine={f}:arcface", "dlib-resnet", *FAST,
                       "--layers", "dlib-resnet=stage4.block2", "--workers", "2", "--out", out])  # spawned workers
    assert rc == 0, err
    images = pd.read_parquet(out / "tables" / "images.parquet")
    assert set(images["model"]) == {"mine", "dlib-resnet"}
    assert (images.loc[images["model"] == "mine", "role"] == "explained").sum() > 0
    record = json.loads((out / "run.json").read_text())["config"]["model_files"]["mine"]
    assert record["path"] == str(f.resolve()) and record["size"] == f.stat().st_size and record["preset"] == "arcface"
    import hashlib

    assert record["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    assert json.loads((out / "run.json").read_text())["models"]["mine"]["embedding_size"] == 4

    before = (out / "run.json").read_bytes()
    write_onnx(f, seed=1)  # other weights, same path
    rc, _, err = leam(["study", data, "--models", f"mine={f}:arcface", "dlib-resnet", *FAST,
                       "--layers", "dlib-resnet=stage4.block2", "--out", out])
    assert rc == 1 and len(err.strip().splitlines()) == 1, err
    assert f"the file of model mine, {f.resolve()}, changed since the run began" in err
    assert (out / "run.json").read_bytes() == before


@pytest.mark.parametrize("spec, pattern", [
    ("mine=", r"--models mine=: expected a registered name or NAME=PATH\[:PRESET\]"),
    ("mine=missing.onnx", r"--models mine: model file not found: missing.onnx"),
    ("dlib-resnet={f}", r"dlib-resnet is a registered model; give the file another name"),
    ("mine={f}:nope", r"unknown preset 'nope'; presets: arcface"),
    ("mine={f}.txt", r"is not a model file: expected an ONNX file"),
])
def test_a_bad_model_spec_is_one_line_and_nothing_is_written(data, tmp_path, spec, pattern) -> None:
    f = write_onnx(tmp_path / "m.onnx")
    shutil.copy(f, f"{f}.txt")  # neither .onnx nor TorchScript
    assert_refused(["study", data, "--models", spec.format(f=f), *FAST, "--out", tmp_path / "out"], pattern,
                   tmp_path / "out")


def test_verify_protect_and_protect_eval_take_a_model_file(data, tmp_path) -> None:
    f = write_onnx(tmp_path / "m.onnx")
    rc, stdout, err = leam(["verify", data, "--models", f"mine={f}", "--pairs", "2", "--out", tmp_path / "v"])
    assert rc == 0, err
    assert json.loads((tmp_path / "v" / "summary.json").read_text())  # written
    assert any(line.startswith("mine ") for line in stdout.splitlines()), stdout

    photos = sorted(next(p for p in data.iterdir() if p.is_dir()).iterdir())[:2]
    rc, stdout, err = leam(["protect", *photos, "--models", f"mine={f}", "--eval-models", "mine", "--steps", "1",
                            "--out", tmp_path / "p"])
    assert rc == 0, err
    assert "mine (in the ensemble)" in stdout and len(list((tmp_path / "p").glob("*.jpg"))) == 2

    rc, _, err = leam(["protect-eval", data, "--models", f"mine={f}", "--identities", "1", "--budgets", "1",
                       "--methods", "leam", "--steps", "1", "--out", tmp_path / "pe"])
    assert rc == 0, err
    write_onnx(f, seed=1)
    rc, _, err = leam(["protect-eval", data, "--models", f"mine={f}", "--identities", "1", "--budgets", "1",
                       "--methods", "leam", "--steps", "1", "--out", tmp_path / "pe"])
    assert rc == 1 and "the file of model mine" in err and len(err.strip().splitlines()) == 1, err
