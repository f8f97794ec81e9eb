"""Masks, budgets, quantisation, and PGD on a real model and a real face."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from leam.face import Warp
from leam.protect.mask import budget_pixels, consensus_map, random_pixels, top_pixels
from leam.protect.optimise import Target, dense_epsilon, make_targets, pgd, quantise


def test_budget_is_a_share_of_the_face_box_clipped_to_the_photo():
    assert budget_pixels((10, 10, 110, 60), (100, 200), 1) == 50  # 100 x 50 box
    assert budget_pixels((10, 10, 110, 60), (100, 200), 0.5) == 25
    assert budget_pixels((-10, 0, 10, 10), (100, 200), 10) == 10  # clipped to 10 x 10
    assert budget_pixels((0, 0, 3, 3), (100, 100), 1) == 1  # at least one pixel
    with pytest.raises(ValueError, match="outside"):
        budget_pixels((300, 300, 310, 310), (100, 100), 1)


def test_top_pixels_inside_the_region_ties_in_raster_order():
    values = np.array([[5.0, 1.0, 1.0], [9.0, 1.0, 0.0]])
    region = np.array([[True, True, True], [False, True, True]])
    assert top_pixels(values, region, 1).tolist() == [[True, False, False], [False, False, False]]
    # 9 is outside the region; the three 1s tie and the earliest two win
    assert top_pixels(values, region, 3).tolist() == [[True, True, True], [False, False, False]]
    with pytest.raises(ValueError, match="cannot choose 6 pixels"):
        top_pixels(values, region, 6)


def test_random_pixels_are_drawn_from_the_region_only():
    region = np.zeros((20, 20), bool)
    region[5:10, 5:15] = True
    m = random_pixels(region, 30, np.random.default_rng(0))
    assert m.sum() == 30 and not (m & ~region).any()
    assert (random_pixels(region, 30, np.random.default_rng(0)) == m).all()  # seeded


def test_quantise_keeps_the_bound_exactly():
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, (9, 11, 3)).astype(np.uint8)
    mask = rng.random((9, 11)) < 0.3
    perturbed = photo + rng.uniform(-20, 20, photo.shape)  # beyond the bound, and beyond [0, 255]
    q = quantise(photo, perturbed, mask, 7.9)
    diff = q.astype(int) - photo.astype(int)
    assert q.dtype == np.uint8
    assert (diff[~mask] == 0).all()
    assert np.abs(diff[mask]).max() == 7  # ⌊7.9⌋, reached
    inside = np.clip(np.rint(perturbed), photo.astype(int) - 7, photo.astype(int) + 7)
    np.testing.assert_array_equal(q[mask], np.clip(inside, 0, 255)[mask])


def test_margin_and_cosine_scores_by_hand():
    from types import SimpleNamespace

    e = torch.tensor([[3.0, 4.0]])
    refs = torch.tensor([[3.0, 0.0], [0.0, 4.0]])  # distances 4 and 3; cosines 0.6 and 0.8
    euclid = Target(SimpleNamespace(spec=SimpleNamespace(threshold=5.0, threshold_metric="euclidean")), None, refs)
    assert euclid.score(e, "cosine").item() == pytest.approx(0.7)
    assert euclid.score(e, "margin").item() == pytest.approx(((1 - 4 / 5) + (1 - 3 / 5)) / 2)
    cos = Target(SimpleNamespace(spec=SimpleNamespace(threshold=0.5, threshold_metric="cosine")), None, refs)
    assert cos.score(e, "margin").item() == pytest.approx(((1 - 0.4 / 0.5) + (1 - 0.2 / 0.5)) / 2)
    with pytest.raises(ValueError, match="objective"):
        cos.score(e, "loss")


def test_consensus_is_the_coverage_weighted_mean_in_the_first_models_frame():
    """Two photos, two models; model "b"'s chip is model "a"'s shifted 3 px right (chip b x = chip a x - 3),
    so carried into a's frame, b's map moves 3 px right and leaves columns 0-2 uncovered."""
    shift = np.array([[1.0, 0, -3], [0, 1.0, 0]])
    a, b = Warp(np.eye(3)[:2], (6, 8)), Warp(shift, (6, 8))
    rng = np.random.default_rng(0)
    maps = [{"a": rng.random((6, 8)), "b": rng.random((6, 8))} for _ in range(2)]
    c = consensus_map(maps, [{"a": a, "b": b}] * 2, "a")
    expected = np.zeros((6, 8))
    for y in range(6):
        for x in range(8):
            vals = [m["a"][y, x] for m in maps] + [m["b"][y, x - 3] for m in maps if x >= 3]
            expected[y, x] = np.mean(vals)
    np.testing.assert_allclose(c, expected, atol=1e-9)


def test_dense_epsilon_spreads_the_l2_norm():
    assert dense_epsilon(30.0, 100) == pytest.approx(30.0 / np.sqrt(300))
    assert dense_epsilon(5.0, 0) == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_pgd_changes_only_masked_pixels_within_epsilon(face_setup, facenet_model, precision):
    photo, refs, values, region = face_setup
    name = facenet_model.spec.name
    masks = np.stack([top_pixels(values, region, 200), random_pixels(region, 200, np.random.default_rng(0))])
    targets = make_targets([facenet_model], [photo.aligned[name]], [refs[name]])
    res = pgd(photo.photo, masks, [6.0, 255.0], targets, steps=3, l2=[None, 900.0], precision=precision)
    delta = res.photos - photo.photo[None].astype(np.float64)
    for v, eps in enumerate([6.0, 255.0]):
        assert (delta[v][~masks[v]] == 0).all()
        assert np.abs(delta[v][masks[v]]).max() <= eps + 1e-9
        assert np.abs(delta[v][masks[v]]).max() > 0
    assert np.linalg.norm(delta[1]) <= 900.0 + 1e-6
    assert res.photos.min() >= 0 and res.photos.max() <= 255
    assert res.history.shape == (4, 2)
    assert all(p.requires_grad for p in facenet_model.net.parameters())  # the model's flags are restored
    # the same seed gives the same result
    again = pgd(photo.photo, masks, [6.0, 255.0], targets, steps=3, l2=[None, 900.0], precision=precision)
    np.testing.assert_array_equal(again.photos, res.photos)


def test_optimised_content_beats_black_occlusion_on_a_real_face(face_setup, facenet_model):
    """The same 2 % of the face's pixels: optimised content must lower the cosine to the person's other
    photos far more than blacking them out; a broken optimiser (wrong sign, no gradient) fails this."""
    from leam.protect.evaluate import evaluate_photo

    photo, refs, values, region = face_setup
    name = facenet_model.spec.name
    mask = top_pixels(values, region, budget_pixels(photo.face.box, photo.photo.shape[:2], 2))
    targets = make_targets([facenet_model], [photo.aligned[name]], [refs[name]])
    torch.manual_seed(0)
    res = pgd(photo.photo, mask[None], [255.0], targets, steps=15, kind="cosine")
    optimised = quantise(photo.photo, res.photos[0], mask, 255)
    black = photo.photo.copy()
    black[mask] = 0
    cos = {}
    for label, pixels in (("before", photo.photo), ("optimised", optimised), ("black", black)):
        (row,) = evaluate_photo(pixels, photo.face.box, [facenet_model], refs)
        assert row["face_found"]
        cos[label] = row["cosine"]
    drop_opt, drop_black = cos["before"] - cos["optimised"], cos["before"] - cos["black"]
    assert drop_opt > 0.1, cos
    assert drop_opt > 2 * max(drop_black, 0.01), cos
    assert res.history[-1, 0] < res.history[0, 0]  # the objective went down


def test_dense_baseline_has_the_leam_perturbations_l2_norm(face_setup, facenet_model):
    from leam.protect.core import ProtectConfig, protect_photo

    photo, refs, values, region = face_setup
    name = facenet_model.spec.name
    maps = {name: _aggregate(facenet_model, photo, refs)}
    out = {p.method: p for p in protect_photo(photo, [facenet_model], refs, maps, [2.0], ["leam", "black", "dense"],
                                             ProtectConfig(steps=2))}
    l2 = {k: np.linalg.norm(v.pixels.astype(float) - photo.photo) for k, v in out.items()}
    # at most the leam perturbation's L2 norm (up to rounding to grey levels); PGD need not use all of it
    assert 0.3 * l2["leam"] < l2["dense"] <= 1.02 * l2["leam"]
    assert out["dense"].mask.sum() > 20 * out["leam"].mask.sum()
    assert (out["black"].mask == out["leam"].mask).all() and (out["black"].pixels[out["black"].mask] == 0).all()


def _aggregate(model, photo, refs):
    from leam.protect.mask import leam_aggregates

    name = model.spec.name
    return leam_aggregates(model, [photo.aligned[name]], refs[name].mean(0)[None])[0]
