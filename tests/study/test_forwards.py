"""``--forwards``: a study whose gradient-free forwards (occlusion, transfer, faithfulness curves) ONNX Runtime
computes has PyTorch's tables within ``TOLERANCE`` (drops and cosines) and the same tables everywhere else
(maps, regions, pairs: LEAM's forward and backward stay PyTorch's); a resume never mixes engines, and a run
written before the setting resumes with PyTorch; a fallback is clean, recorded and said once."""

from __future__ import annotations

import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leam.errors import LeamError
from leam.models import default_weights_path
from leam.models.inference import ForwardsFallback
from leam.study.config import StudyConfig
from leam.study.run import default_forwards, run_study
from leam.study.store import RunStore
from tests.study.conftest import quick_config

pytest.importorskip("onnxruntime")
TOLERANCE = 1e-5  # absolute, on drops (differences of cosines) and cosines
SAME = ("images", "regions", "pairs", "failures", "specificity")  # from PyTorch's embeddings and maps only
CLOSE = {"occlusion": "drop", "transfer": "drop", "faithfulness": "cosine"}


def config(data: Path, forwards: str) -> StudyConfig:
    """Two models (transfer), the faithfulness phase on one identity, black fill."""
    second = "arcface-mbf" if default_weights_path("arcface-mbf") is not None else "facenet"
    return replace(quick_config(data), models=("dlib-resnet", second), faithfulness=True, fills=("black",),
                   faithfulness_identities=1, forwards=forwards)


@pytest.fixture(scope="module")
def runs(three_people: Path, tmp_path_factory) -> dict[str, tuple[Path, dict[str, pd.DataFrame], list[str]]]:
    out = {}
    for forwards in ("torch", "onnxruntime"):
        folder, said = tmp_path_factory.mktemp(forwards) / "run", []
        out[forwards] = folder, run_study(config(three_people, forwards), folder, notify=said.append), said
    return out


@pytest.mark.slow
def test_onnxruntime_study_agrees_with_torch(runs) -> None:
    (_, torch_tables, _), (_, ort_tables, said) = runs["torch"], runs["onnxruntime"]
    assert not said  # no fallback
    for name in SAME:
        pd.testing.assert_frame_equal(ort_tables[name], torch_tables[name], check_exact=True)
    for name, column in CLOSE.items():
        got, want = ort_tables[name], torch_tables[name]
        assert len(want) > 0, name
        pd.testing.assert_frame_equal(got.drop(columns=column), want.drop(columns=column), check_exact=True)
        assert np.abs(got[column] - want[column]).max() <= TOLERANCE, name
    assert (ort_tables["occlusion"]["drop"] != torch_tables["occlusion"]["drop"]).any()  # the engines did differ


def test_units_record_what_computed_their_forwards(runs) -> None:
    for forwards, (folder, _, _) in runs.items():
        store = RunStore(folder)
        markers = [store.marker(d.name) for d in (folder / "parts").iterdir()]
        recorded = [m["forwards"] for m in markers if "forwards" in m]
        kinds = {m["unit"][0] for m in markers if "forwards" in m}
        assert kinds == {"identity", "transfer", "faithfulness"}
        assert all(set(r.values()) == {forwards} for r in recorded)
        assert store.read_manifest()["config"]["forwards"] == forwards


def test_a_resume_never_mixes_engines(runs, three_people: Path) -> None:
    for forwards, other in (("torch", "onnxruntime"), ("onnxruntime", "torch")):
        with pytest.raises(LeamError, match=f"--forwards {forwards}, not {other}"):
            run_study(config(three_people, other), runs[forwards][0])


def test_a_run_written_before_the_setting_resumes_with_torch(runs, three_people: Path, tmp_path: Path) -> None:
    """run.json without ``forwards`` (an older leam's) is torch's: ``leam study`` without --forwards resumes it
    with torch, redoing nothing; --forwards onnxruntime is refused."""
    from leam.cli.main import build_parser
    from leam.cli.study import study_config

    old = tmp_path / "old"
    shutil.copytree(runs["torch"][0], old)
    store = RunStore(old)
    manifest = store.read_manifest()
    del manifest["config"]["forwards"]
    store.write_manifest(manifest)
    assert default_forwards(old) == "torch" and default_forwards(tmp_path / "new") == "onnxruntime"
    argv = ["study", str(three_people), "--out", str(old), "--models", *config(three_people, "torch").models]
    assert study_config(build_parser().parse_args(argv)).forwards == "torch"
    assert study_config(build_parser().parse_args([*argv, "--forwards", "onnxruntime"])).forwards == "onnxruntime"
    tables = run_study(config(three_people, "torch"), old, progress=lambda *a: pytest.fail("a unit was redone"))
    pd.testing.assert_frame_equal(tables["occlusion"], runs["torch"][1]["occlusion"], check_exact=True)
    with pytest.raises(LeamError, match="--forwards torch, not onnxruntime"):
        run_study(config(three_people, "onnxruntime"), old)


def test_a_fallback_is_clean_recorded_and_said_once(three_people: Path, tmp_path: Path, monkeypatch) -> None:
    """When the export fails, PyTorch computes: the tables are exactly torch's, the units record the fallback,
    and the study says it in one line per model (the units themselves warn nothing)."""
    import leam.models.inference as inference
    from leam.study.worker import CACHE

    def fails(model):
        raise RuntimeError("no exporter today")

    monkeypatch.setattr(inference, "export_onnx", fails)
    monkeypatch.setattr(CACHE, "_embedders", {})  # embedders built here, under the failing export
    said: list[str] = []
    one = quick_config(three_people)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ForwardsFallback)  # the units warn nothing: the study says it
        got = run_study(replace(one, forwards="onnxruntime"), tmp_path / "ort", notify=said.append)
    assert said == ["dlib-resnet: ONNX Runtime not used for its gradient-free forwards, PyTorch computes them "
                    "(RuntimeError: no exporter today)"]
    want = run_study(one, tmp_path / "torch")
    for name in ("images", "regions", "occlusion", "pairs", "failures"):
        pd.testing.assert_frame_equal(got[name], want[name], check_exact=True)
    store = RunStore(tmp_path / "ort")
    identity = [store.marker(d.name) for d in (tmp_path / "ort" / "parts").iterdir() if d.name.startswith("identity")]
    assert all(m["forwards"] == {"dlib-resnet": "torch"} and "no exporter" in m["forwards_fallback"]["dlib-resnet"]
               for m in identity)


def test_an_engine_not_installed_is_refused_before_anything_is_written(three_people, tmp_path, monkeypatch) -> None:
    import leam.study.run as run

    monkeypatch.setattr(run, "installed_forwards", lambda: ("torch",))
    with pytest.raises(LeamError, match="--forwards onnxruntime: onnxruntime is not installed here"):
        run_study(replace(quick_config(three_people), forwards="onnxruntime"), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(LeamError, match="--forwards: expected one of torch, onnxruntime"):
        replace(quick_config(three_people), forwards="tensorrt").check()


def test_onnxruntime_tables_do_not_depend_on_the_workers(three_people: Path, tmp_path: Path) -> None:
    """Each worker process exports and checks the net itself; on one thread its numbers are the same bit for bit
    as the study's own process's."""
    one = replace(quick_config(three_people), forwards="onnxruntime")
    alone = run_study(one, tmp_path / "one")
    pooled = run_study(one, tmp_path / "two", workers=2)
    for name in ("images", "regions", "occlusion", "pairs", "failures"):
        pd.testing.assert_frame_equal(pooled[name], alone[name], check_exact=True)
