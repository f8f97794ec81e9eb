"""``leam person``: a folder of one person's photos against a study's population prior, on real photos and a real
small run; the maps against an independent computation through ``leam explain``'s functions, and its refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from leam.cli.main import main
from leam.study.store import RunStore, unit_dir_name
from tests.study.conftest import LFW_DEMO, faithful_run, small_run  # noqa: F401  (the fixtures)

MODEL = "dlib-resnet"


def _minmax(m: np.ndarray) -> np.ndarray:
    return (m - m.min()) / (m.max() - m.min()) if m.max() > m.min() else np.zeros_like(m)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Three photos of a person the runs do not hold (lfw-demo's fifth), linked."""
    if not LFW_DEMO.is_dir():
        pytest.skip(f"shared photos not found at {LFW_DEMO}")
    person = sorted(p for p in LFW_DEMO.iterdir() if p.is_dir())[4]
    out = tmp_path_factory.mktemp("person") / person.name
    out.mkdir()
    for photo in sorted(person.iterdir())[:3]:
        (out / photo.name).symlink_to(photo)
    return out


def test_the_maps_match_leam_explain_and_the_run(folder: Path, faithful_run: Path) -> None:  # noqa: F811
    """Each photo's map by ``explain_file`` against the other photos, their consensus, the population unit's prior
    and the specific map by plain numpy: the same as ``explain_person``'s."""
    from leam.maps.explain import explain_file
    from leam.models import create_model
    from leam.parse import create_parser
    from leam.study.person import explain_person, folder_photos, run_prior

    model = create_model(MODEL)
    photos = folder_photos(folder)
    prior = run_prior(faithful_run, MODEL)
    result = explain_person(model, photos, prior, create_parser("landmarks"), list(model.spec.default_layers),
                            _config(faithful_run)["direction"],
                            _config(faithful_run)["aggregation"], [1.0, 10.0])
    maps = [explain_file(model, p, [q for q in photos if q != p]).aggregate for p in photos]
    for got, want in zip(result.maps, maps):
        np.testing.assert_allclose(got, want, atol=1e-5)
    consensus = _minmax(np.mean(maps, 0))
    population = RunStore(faithful_run).unit_arrays(unit_dir_name("population", MODEL, ""))["prior"]
    np.testing.assert_allclose(result.consensus, consensus, atol=1e-5)
    np.testing.assert_array_equal(result.prior.values, population.astype(np.float64))
    np.testing.assert_allclose(result.specific, _minmax(np.clip(consensus - population, 0, None)), atol=1e-4)
    shares = result.shares.groupby(["map", "threshold"])["share"].sum()
    np.testing.assert_allclose(shares.to_numpy(), 1.0)  # every top pixel lies in one region (or unlabelled)
    assert "not validated" in prior.verdict and not prior.validated


def _config(run: Path) -> dict:
    return RunStore(run).read_manifest()["config"]


def test_cli_writes_the_three_maps_and_the_region_table(folder: Path, faithful_run: Path, tmp_path: Path,  # noqa: F811
                                                        capsys) -> None:
    out = tmp_path / "out"
    assert main(["person", str(folder), "--prior", str(faithful_run), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"3 photos of the person under {MODEL}; prior: the population unit of" in said
    assert "the specific map is not validated" in said and "consensus" in said and "specific" in said
    for name in ("consensus", "prior", "specific"):
        assert Image.open(out / f"{name}.png").size == (150, 150)
    table = pd.read_csv(out / "regions.csv")
    assert list(table.columns) == ["map", "threshold", "region", "share"]
    assert set(table["map"]) == {"consensus", "prior", "specific"} and set(table["threshold"]) == {1, 5, 10}


def test_a_run_without_faithfulness_gives_the_mean_of_its_stored_maps(folder: Path, small_run: Path,  # noqa: F811
                                                                      tmp_path: Path, capsys) -> None:
    from leam.study.person import run_prior

    prior = run_prior(small_run, MODEL)
    images = RunStore(small_run).tables()["images"]
    explained = images[(images["model"] == MODEL) & (images["role"] == "explained")]
    stored = [RunStore(small_run).unit_arrays(unit_dir_name("identity", MODEL, r.identity))[
        f"{r.array_index}/aggregate"].astype(np.float64) for r in explained.itertuples()]
    np.testing.assert_allclose(prior.values, _minmax(np.mean(stored, 0)), atol=1e-12)
    assert prior.verdict is None and f"the mean of {len(stored)} stored maps" in prior.source
    layers = _config(small_run)["layers"][MODEL]
    out = tmp_path / "out"
    assert main(["person", str(folder), "--prior", str(small_run), "--model", MODEL, "--layers", *layers,
                 "--out", str(out), "--thresholds", "5"]) == 0
    said = capsys.readouterr().out
    assert "not validated (the run has no faithfulness phase of this model)" in said


@pytest.mark.parametrize(("extra", "message"), [
    (["--direction", "loss"], "were made with --direction similarity, not loss"),
    (["--aggregate", "max"], "--aggregate early, not max"),
    (["--layers", "stage4.block2"], "(--layers)"),
    (["--model", "facenet"], "the run has no maps of facenet (its models: dlib-resnet)"),
])
def test_a_run_made_otherwise_is_refused_in_one_line(folder: Path, faithful_run: Path, tmp_path: Path,  # noqa: F811
                                                     capsys, extra, message) -> None:
    config = _config(faithful_run)
    if extra[0] == "--direction" and config["direction"] == "loss":
        extra = ["--direction", "similarity"]
        message = "were made with --direction loss, not similarity"
    out = tmp_path / "out"
    assert main(["person", str(folder), "--prior", str(faithful_run), "--out", str(out), *extra]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not out.exists()


def test_bad_folders_and_runs_are_refused_in_one_line(folder: Path, faithful_run: Path, tmp_path: Path,  # noqa: F811
                                                      capsys) -> None:
    one = tmp_path / "one"
    one.mkdir()
    (one / "a.jpg").symlink_to(next(folder.iterdir()))
    (one / "notes.txt").write_text("not a photo")
    cases = [([str(one), "--prior", str(faithful_run)], "1 of 1 photos with a usable face; at least 2 are needed"),
             ([str(tmp_path / "none"), "--prior", str(faithful_run)], "not a folder"),
             ([str(folder), "--prior", str(tmp_path)], "no run.json; --prior expects the folder of a `leam study` run")]
    for args, message in cases:
        assert main(["person", *args, "--out", str(tmp_path / "out")]) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    with pytest.raises(SystemExit) as exc:
        main(["person", str(folder)])  # --prior is required
    assert exc.value.code == 2
