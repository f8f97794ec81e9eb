"""What a study's units write, checked on the shared small run: per-layer occlusion rows, random
baselines shared by every map, and the transfer diagonal equal to each model's own occlusion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leam.errors import LeamError
from leam.study.config import StudyConfig
from leam.study.units import occlusion_layers


def _tables(run: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(run / "tables" / f"{name}.parquet") for name in ("occlusion", "transfer")}


def test_every_layer_is_occluded_and_shares_the_random_baselines(small_run: Path) -> None:
    occ = _tables(small_run)["occlusion"]
    expected = {"dlib-resnet": {"stage2.block1", "stage4.block2", "aggregate"},
                "facenet": {"block35.4", "mixed7a", "aggregate"}}
    for model, layers in expected.items():
        o = occ[occ["model"] == model]
        assert set(o["layer"]) == layers
        per_image = o.groupby(["image", "percent", "kind"])["drop"]
        random = o[o["kind"] != "map"].groupby(["image", "percent", "kind"])["drop"]
        assert (random.nunique() == 1).all()  # the same random masks score every map
        assert (per_image.size() == len(layers)).all()
        maps = o[o["kind"] == "map"].pivot_table(index=["image", "percent"], columns="layer", values="drop")
        assert not np.allclose(maps["aggregate"], maps[sorted(layers - {"aggregate"})[0]])


def test_transfer_diagonal_is_the_models_own_occlusion(small_run: Path) -> None:
    t = _tables(small_run)
    occ, transfer = t["occlusion"], t["transfer"]
    own = occ[(occ["kind"] == "map") & (occ["layer"] == "aggregate")].set_index(["model", "image", "percent"])
    diag = transfer[transfer["source_model"] == transfer["target_model"]]
    assert len(diag) == len(own)
    for _, r in diag.iterrows():
        assert r["drop"] == own.loc[(r["target_model"], r["image"], r["percent"]), "drop"]
    off = transfer[transfer["source_model"] != transfer["target_model"]]
    pairs = set(zip(off["source_model"], off["target_model"]))
    assert pairs == {("dlib-resnet", "facenet"), ("facenet", "dlib-resnet")}
    assert off.groupby(["target_model", "image", "percent"]).size().eq(1).all()  # no duplicated rows


def test_occlusion_layers_are_checked_against_the_model() -> None:
    config = StudyConfig(data=".", models=("dlib-resnet",), occlusion_layers=("stem", "nope"))
    with pytest.raises(LeamError, match=r"\['nope'\]"):
        occlusion_layers(config, ["stem", "stage1.block0"])
    every = StudyConfig(data=".", models=("dlib-resnet",), occlusion_layers=("all",))
    assert occlusion_layers(every, ["stem", "stage1.block0"]) == ["stem", "stage1.block0", "aggregate"]


def test_each_photo_is_embedded_once(three_people: Path, dlib_resnet_model) -> None:
    """Through the net go each photo once (the embedding batch: references, distances, the unoccluded score),
    each explained photo once more in LEAM's forward (its gradients need it), and the occluded chips; the
    explained photos' embeddings are kept for the transfer."""
    from leam.data.dataset import load_dataset
    from leam.parse import create_parser
    from leam.study.units import Unit, identity_unit, unit_rng
    from tests.study.conftest import quick_config

    config = quick_config(three_people)
    photos = next(iter(load_dataset(three_people).values()))
    sizes: list[int] = []
    hook = dlib_resnet_model.net.register_forward_pre_hook(lambda _m, args: sizes.append(len(args[0])))
    try:
        tables, arrays = identity_unit(config, dlib_resnet_model, create_parser(config.parser), photos,
                                       unit_rng(config, Unit("identity", "dlib-resnet", photos[0].identity)))
    finally:
        hook.remove()
    explained = int((tables["images"]["role"] == "explained").sum())
    masks = len(config.occlusion_percents) * (1 + 2 * config.occlusion_seeds)  # the map, random, random in the face
    assert len(photos) == 3 and explained == 2 and not len(tables["failures"])
    assert sizes == [3, explained] + [masks] * explained
    chips = np.stack([arrays[f"{i}/chip"] for i in range(3)])
    for i in (1, 2):
        assert np.array_equal(arrays[f"{i}/embedding"], dlib_resnet_model.embed(chips)[i])
