"""The faithfulness phase of a study, on real photos and a real model: what it adds to a finished run, what
it redoes on resume, and its rows checked against an independent deletion computed here."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leam.study.config import StudyConfig
from leam.study.run import run_study
from tests.study.conftest import linked_people, quick_config

FILLS = ("black",)
EXPECTED_METHODS = {"leam", "gradcam", "gradxact", "saliency", "occlusion", "random", "random_face", "centre_prior",
                    "population_prior", "consensus", "other_person", "specific", "specific_other", "default"}


def _config(data: Path) -> StudyConfig:
    return replace(quick_config(data), faithfulness=True, fills=FILLS, faithfulness_identities=2)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, StudyConfig, list]:
    """A finished run of three identities (four photos each), then the faithfulness phase added to it."""
    import torch

    data = linked_people(tmp_path_factory.mktemp("data"), 3, photos=4)
    out = tmp_path_factory.mktemp("run") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_study(quick_config(data), out)
        done: list = []
        run_study(_config(data), out, on_unit=done.append)
    finally:
        torch.set_num_threads(threads)
    return out, _config(data), done


def _tables(out: Path) -> dict[str, pd.DataFrame]:
    from leam.study.store import RunStore

    return RunStore(out).tables()


def test_adding_faithfulness_runs_only_its_phase(run):
    out, config, done = run
    assert sorted(u.kind for u in done) == ["faithfulness", "faithfulness", "population"]
    t = _tables(out)["faithfulness"]
    assert set(t["method"]) == EXPECTED_METHODS
    assert set(t["fill"]) == set(FILLS) and set(t["direction"]) == {"deletion", "insertion"}
    assert t["identity"].nunique() == 2 and t.groupby("identity")["image"].nunique().eq(1).all()
    assert np.isfinite(t["cosine"]).all()
    from leam.models import model_spec

    leam_maps = set(t.loc[t["method"] == "leam", "map"])
    assert leam_maps == {"mean", "max", "early", *model_spec("dlib-resnet").default_layers}
    assert set(t.loc[t["method"] == "leam", "objective"]) == {"loss", "similarity"}


def test_default_rows_are_the_default_maps_rows(run):
    from leam.maps import DEFAULT_AGGREGATION, DEFAULT_DIRECTION

    t = _tables(run[0])["faithfulness"]
    cols = ["identity", "image", "fill", "direction", "fraction", "cosine", "match"]
    default = t[t["method"] == "default"][cols].reset_index(drop=True)
    leam = t[(t["method"] == "leam") & (t["map"] == DEFAULT_AGGREGATION)
             & (t["objective"] == DEFAULT_DIRECTION)][cols].reset_index(drop=True)
    assert len(default)
    pd.testing.assert_frame_equal(default, leam)


def test_deletion_matches_an_independent_computation(run):
    """The default map's deletion at 1 % and the unchanged chip, recomputed here with the LEAM engine, a
    plain argsort and the model's own embed."""
    import torch

    from leam.maps import DEFAULT_AGGREGATION, DEFAULT_DIRECTION, LEAM
    from leam.models import create_model
    from leam.study.inputs import unit_name
    from leam.study.store import RunStore
    from leam.study.units import Unit

    out, config, _ = run
    tables = _tables(out)
    t = tables["faithfulness"]
    row = t[(t["method"] == "default") & (t["direction"] == "deletion")].iloc[0]
    images = tables["images"]
    photo = images[(images["image"] == row["image"]) & (images["model"] == "dlib-resnet")].iloc[0]
    arrays = RunStore(out).unit_arrays(unit_name(Unit("identity", "dlib-resnet", row["identity"])))
    chip, ref = arrays[f"{photo['array_index']}/chip"], arrays[f"{photo['array_index']}/ref"]
    model = create_model("dlib-resnet")
    torch.set_num_threads(1)
    engine = LEAM(model.net, list(model.spec.default_layers), DEFAULT_DIRECTION)
    values = engine(model.chips_to_tensor(chip[None]), torch.as_tensor(ref)).aggregate(DEFAULT_AGGREGATION)[0].numpy()
    curve = t[(t["method"] == "default") & (t["direction"] == "deletion") & (t["image"] == row["image"])
              & (t["fill"] == "black")].set_index("fraction")["cosine"]
    for fraction in (0.0, 0.01, 0.05):
        k = int(round(fraction * values.size))
        occluded = chip.copy().reshape(-1, 3)
        occluded[np.argsort(-values.ravel(), kind="stable")[:k]] = 0
        emb = model.embed(occluded.reshape(chip.shape)[None])[0]
        cos = float(emb @ ref / np.linalg.norm(emb) / np.linalg.norm(ref))
        assert curve[fraction] == pytest.approx(cos, abs=2e-5), fraction
    assert curve[0.0] == pytest.approx(photo["cosine"], abs=2e-5)


def _normalised(m: np.ndarray) -> np.ndarray:
    return (m - m.min()) / (m.max() - m.min()) if m.max() > m.min() else np.zeros_like(m)


def test_the_specific_map_rows_match_an_independent_computation(run):
    """The specific map's deletion at 1 % and 5 %, its ranking recomputed here from the stored maps (consensus of
    the person's other photos less the prior of every other person's, clipped, by plain numpy); and its
    ``specific_other`` curve starts from another person's photo, as that photo's own cosine to its reference."""
    from leam.models import create_model
    from leam.study.inputs import unit_name
    from leam.study.store import RunStore
    from leam.study.units import Unit

    out, _, _ = run
    tables = _tables(out)
    t, images = tables["faithfulness"], tables["images"]
    explained = images[(images["model"] == "dlib-resnet") & (images["role"] == "explained")]
    store = RunStore(out)
    aggregate = {(r.identity, r.image): store.unit_arrays(unit_name(Unit("identity", "dlib-resnet", r.identity)))[
        f"{r.array_index}/aggregate"].astype(np.float64) for r in explained.itertuples()}
    row = t[(t["method"] == "specific") & (t["direction"] == "deletion")].iloc[0]
    me, photo = row["identity"], row["image"]
    consensus = _normalised(np.mean([m for (who, image), m in aggregate.items() if who == me and image != photo], 0))
    prior = _normalised(np.mean([m for (who, _), m in aggregate.items() if who != me], 0))
    values = _normalised(np.clip(_normalised(consensus) - prior, 0, None))
    p = explained[(explained["identity"] == me) & (explained["image"] == photo)].iloc[0]
    arrays = store.unit_arrays(unit_name(Unit("identity", "dlib-resnet", me)))
    chip, ref = arrays[f"{p['array_index']}/chip"], arrays[f"{p['array_index']}/ref"]
    model = create_model("dlib-resnet")
    curve = t[(t["method"] == "specific") & (t["direction"] == "deletion") & (t["image"] == photo)
              & (t["fill"] == "black")].set_index("fraction")["cosine"]
    for fraction in (0.01, 0.05):
        k = int(round(fraction * values.size))
        assert values.ravel()[np.argsort(-values.ravel())[k - 1]] > 0, "ties at the cut: the test cannot tell"
        occluded = chip.copy().reshape(-1, 3)
        occluded[np.argsort(-values.ravel(), kind="stable")[:k]] = 0
        emb = model.embed(occluded.reshape(chip.shape)[None])[0]
        assert curve[fraction] == pytest.approx(float(emb @ ref / np.linalg.norm(emb) / np.linalg.norm(ref)),
                                                abs=2e-5), fraction
    other = t[(t["method"] == "specific_other") & (t["image"] == photo) & (t["fraction"] == 0)]["cosine"].iloc[0]
    others = explained[explained["identity"] != me]["cosine"].to_numpy()
    assert np.min(np.abs(others - other)) < 2e-5 and set(t[t["method"] == "specific_other"]["direction"]) == {
        "deletion"}


def test_changing_fills_redoes_only_the_curves_and_dropping_the_flag_keeps_them(run, tmp_path):
    import shutil

    out, config, _ = run
    copy = tmp_path / "run"
    shutil.copytree(out, copy, symlinks=True)
    done: list = []
    run_study(replace(config, fills=("black", "blur")), copy, on_unit=done.append)
    assert sorted(u.kind for u in done) == ["faithfulness", "faithfulness"]
    assert set(_tables(copy)["faithfulness"]["fill"]) == {"black", "blur"}
    done.clear()
    run_study(replace(config, faithfulness=False), copy, on_unit=done.append)
    assert done == [] and _tables(copy).get("faithfulness", pd.DataFrame()).empty
    run_study(replace(config, fills=("black", "blur")), copy, on_unit=done.append)
    assert done == [] and set(_tables(copy)["faithfulness"]["fill"]) == {"black", "blur"}


def test_report_has_the_faithfulness_section(run, tmp_path):
    from leam.report.html import write_report

    html = write_report(run[0], tmp_path / "report.html").read_text(encoding="utf-8")
    section = html.split('<section id="faithfulness">')[1].split("</section>")[0]
    assert "dlib-resnet" in section and "<img" in section and "Person-specificity" in section
    assert "No faithfulness results" not in section


def test_other_settings_still_refuse_a_resume(run, tmp_path):
    from leam.errors import LeamError

    out, config, _ = run
    with pytest.raises(LeamError, match="--pairs 6, not 7"):
        run_study(replace(config, pairs=7), out)
