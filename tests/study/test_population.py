"""The population unit's people: each identity's consensus and specific map, as the study stores them, against
plain numpy on the identity units' stored maps; and a population unit of an older leam redone on resume."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from leam.study.config import StudyConfig
from leam.study.inputs import unit_name
from leam.study.store import RunStore
from leam.study.units import Unit
from tests.study.conftest import faithful_run  # noqa: F401  (the fixture)

FLOAT16 = 1e-3  # the stored maps are float16 (spacing 2⁻¹¹ below 1)


def _minmax(m: np.ndarray) -> np.ndarray:
    return (m - m.min()) / (m.max() - m.min()) if m.max() > m.min() else np.zeros_like(m)


def _stored_maps(store: RunStore, model: str) -> dict[str, list[np.ndarray]]:
    """{identity: its explained photos' stored aggregate maps} read from the identity units."""
    images = store.tables()["images"]
    explained = images[(images["model"] == model) & (images["role"] == "explained")]
    out: dict[str, list[np.ndarray]] = {}
    for r in explained.itertuples():
        arrays = store.unit_arrays(unit_name(Unit("identity", model, r.identity)))
        out.setdefault(r.identity, []).append(arrays[f"{r.array_index}/aggregate"].astype(np.float64))
    return out


def test_each_persons_consensus_and_specific_map_match_plain_numpy(faithful_run):  # noqa: F811
    store = RunStore(faithful_run)
    maps = _stored_maps(store, "dlib-resnet")
    population = store.unit_arrays(unit_name(Unit("population", "dlib-resnet")))
    people = [str(p) for p in population["people"]]
    assert sorted(people) == sorted(maps) and len(people) == 3
    assert population["people_photos"].tolist() == [len(maps[p]) for p in people]
    every = [m for p in people for m in maps[p]]
    np.testing.assert_allclose(population["prior"], _minmax(np.mean(every, 0)), atol=FLOAT16)
    for k, person in enumerate(people):
        consensus = _minmax(np.mean(maps[person], 0))
        prior = _minmax(np.mean([m for p in people if p != person for m in maps[p]], 0))
        specific = _minmax(np.clip(consensus - prior, 0, None))
        assert population[f"consensus/{k}"].dtype == np.float16 == population[f"specific/{k}"].dtype
        np.testing.assert_allclose(population[f"consensus/{k}"], consensus, atol=FLOAT16)
        np.testing.assert_allclose(population[f"specific/{k}"], specific, atol=FLOAT16)
        assert specific.max() == 1 and (specific == 0).mean() > 0.2  # a real map: somewhere above, elsewhere not


def test_a_population_unit_without_the_peoples_maps_is_redone(faithful_run, tmp_path):  # noqa: F811
    from leam.study.run import run_study

    run = Path(shutil.copytree(faithful_run, tmp_path / "run", symlinks=True))
    store = RunStore(run)
    name = unit_name(Unit("population", "dlib-resnet"))
    marker, arrays = store.marker(name), store.unit_arrays(name)
    old = {k: arrays[k] for k in ("sum", "count", "units", "identities", "indices")}  # as leam stored it before
    inputs = {k: v for k, v in marker["inputs"].items() if k != "arrays"}
    kept = {k: v for k, v in marker.items() if k not in ("files", "sha256", "checksum")}
    store.write_unit(name, {}, old, info={**kept, "inputs": inputs})
    assert "people" not in store.unit_arrays(name)
    config = StudyConfig.from_dict(store.read_manifest()["config"])
    done: list = []
    run_study(config, run, on_unit=done.append)
    assert sorted(u.kind for u in done) == ["faithfulness", "faithfulness", "population"]
    assert len(store.unit_arrays(name)["people"]) == 3
    done.clear()
    run_study(config, run, on_unit=done.append)
    assert done == []  # and now it is current
