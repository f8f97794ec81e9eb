"""Occlusion: masks, blacking out, and drops measured with a real model on a real face."""

from __future__ import annotations

import numpy as np
import pytest

from leam.metrics.occlusion import cosine, occlude, occlusion_drops, random_mask


def test_occlude_blacks_out_exactly_the_mask() -> None:
    chip = np.full((4, 5, 3), 200, np.uint8)
    mask = np.zeros((4, 5), bool)
    mask[1, 2] = mask[3, 0] = True
    out = occlude(chip, mask)
    assert out[1, 2].tolist() == [0, 0, 0] and out[3, 0].tolist() == [0, 0, 0]
    assert (out[~mask] == 200).all() and (chip == 200).all()  # the input is untouched
    with pytest.raises(ValueError, match="boolean mask"):
        occlude(chip, mask.astype(int))


def test_random_mask_counts_and_region() -> None:
    rng = np.random.default_rng(0)
    within = np.zeros((20, 20), bool)
    within[5:10, 5:10] = True
    m = random_mask((20, 20), 7, rng, within)
    assert m.sum() == 7 and not (m & ~within).any()
    assert random_mask((20, 20), 400, rng).all()
    with pytest.raises(ValueError, match="cannot draw"):
        random_mask((20, 20), 26, rng, within)


def test_cosine_against_a_loop() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(3, 8)), rng.normal(size=8)
    for i in range(3):
        expected = float(a[i] @ b / np.sqrt((a[i] @ a[i]) * (b @ b)))
        assert cosine(a, b)[i] == pytest.approx(expected)


def test_drops_with_the_real_model(dlib_resnet_model) -> None:
    """A constructed map whose top pixels are the whole chip centre hurts more than scattered pixels."""
    rng = np.random.default_rng(2)
    chip = rng.integers(0, 256, (150, 150, 3), dtype=np.uint8)
    reference = dlib_resnet_model.embed(chip[None])[0]
    values = np.zeros((150, 150))
    values[50:100, 50:100] = 1.0  # 2,500 px = 11 % of the chip
    rows = occlusion_drops(dlib_resnet_model.embed, chip, reference, values, percents=(1, 10), seeds=2)
    got = {(r["percent"], r["kind"]): r["drop"] for r in rows}
    assert set(got) == {(1, "map"), (1, "random"), (10, "map"), (10, "random")}
    # independent check of one entry: recompute the map drop at 10 % by hand
    top = values > 0
    occluded = chip.copy()
    flat = np.flatnonzero(top.ravel())[:2250]  # ties broken by raster order: the first 2,250 of the square
    occluded.reshape(-1, 3)[flat] = 0
    by_hand = 1.0 - cosine(dlib_resnet_model.embed(occluded[None]), reference)[0]
    assert got[(10, "map")] == pytest.approx(by_hand, abs=1e-6)


def test_several_maps_in_one_call_equal_one_call_each(dlib_resnet_model) -> None:
    """Named maps are scored in one batch; each map's drops and the shared random baselines equal
    what separate calls with the same random generator give."""
    rng = np.random.default_rng(3)
    chip = rng.integers(0, 256, (150, 150, 3), dtype=np.uint8)
    reference = dlib_resnet_model.embed(chip[::-1].copy()[None])[0]
    maps = {"a": rng.random((150, 150)), "b": rng.random((150, 150)) ** 3}
    face = np.zeros((150, 150), dtype=bool)
    face[30:120, 40:110] = True
    both = occlusion_drops(dlib_resnet_model.embed, chip, reference, maps, (1, 5), 2, face, np.random.default_rng(9))
    for name, values in maps.items():
        alone = occlusion_drops(dlib_resnet_model.embed, chip, reference, values, (1, 5), 2, face,
                                np.random.default_rng(9))
        got = {(r["percent"], r["kind"]): r["drop"] for r in both if r.get("layer", name) == name}
        assert got == pytest.approx({(r["percent"], r["kind"]): r["drop"] for r in alone}, abs=1e-6)


def test_a_known_unoccluded_embedding_saves_its_forward(dlib_resnet_model) -> None:
    """``base``: the chip's embedding, given by the caller, is not computed again; the drops are those of the
    chip embedded with the occluded ones, up to float32 rounding (a batch of another size)."""
    rng = np.random.default_rng(4)
    chip = rng.integers(0, 256, (150, 150, 3), dtype=np.uint8)
    reference = dlib_resnet_model.embed(chip[::-1].copy()[None])[0]
    values = rng.random((150, 150))
    embedded: list[int] = []

    def embed(chips: np.ndarray) -> np.ndarray:
        embedded.append(len(chips))
        return dlib_resnet_model.embed(chips)

    plain = occlusion_drops(embed, chip, reference, values, (1, 5), 2, rng=np.random.default_rng(5))
    saved = occlusion_drops(embed, chip, reference, values, (1, 5), 2, rng=np.random.default_rng(5),
                            base=dlib_resnet_model.embed(chip[None])[0])
    assert embedded == [1 + 2 * 3, 2 * 3]  # the chip and (map + 2 random) × 2 percents; then the occluded alone
    assert [r["drop"] for r in saved] == pytest.approx([r["drop"] for r in plain], abs=1e-6)
    assert [(r["percent"], r["kind"]) for r in saved] == [(r["percent"], r["kind"]) for r in plain]
