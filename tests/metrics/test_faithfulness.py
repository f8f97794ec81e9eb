"""Deletion and insertion curves against slow, obvious references (pixel loops), literal hand-worked values,
and the real inpainting on an lfw-demo chip."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from scipy.integrate import trapezoid
from skimage.restoration import inpaint_biharmonic

from leam.metrics import faithfulness as F
from tests.conftest import SHARED_DATA

DLIB_MEAN = (122.782, 117.001, 104.298)


# ------------------------------------------------------------------------------------- slow references


def ref_order(values: np.ndarray) -> list[int]:
    """Sort (−value, flat index) pairs: highest first, ties by the lower index."""
    flat = [float(v) for v in np.asarray(values).ravel()]
    return [i for _, i in sorted((-v, i) for i, v in enumerate(flat))]


def ref_count(n: int, f: float) -> int:
    """f·n rounded half up, in exact arithmetic on the fraction as written."""
    return math.floor(Fraction(str(f)) * n + Fraction(1, 2))


def ref_blur(chip: np.ndarray, sigma_fraction: float = F.BLUR_SIGMA_FRACTION) -> np.ndarray:
    """Separable Gaussian by explicit loops: kernel out to 4 sigma, edges repeated (scipy's 'nearest')."""
    h, w, _ = chip.shape
    out = chip.astype(np.float64)
    for axis, size in ((0, h), (1, w)):
        sigma = sigma_fraction * size
        r = int(4 * sigma + 0.5)
        kernel = [math.exp(-0.5 * (t / sigma) ** 2) for t in range(-r, r + 1)]
        total = sum(kernel)
        src, res = out.copy(), np.zeros_like(out)
        for y in range(h):
            for x in range(w):
                for c in range(3):
                    acc = 0.0
                    for t, kv in zip(range(-r, r + 1), kernel):
                        yy, xx = (min(max(y + t, 0), h - 1), x) if axis == 0 else (y, min(max(x + t, 0), w - 1))
                        acc += kv * src[yy, xx, c]
                    res[y, x, c] = acc / total
        out = res
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def ref_removed_pixel(chip: np.ndarray, fill: str, mean_colour, blurred: np.ndarray | None, y: int, x: int) -> list:
    if fill == "black":
        return [0, 0, 0]
    if fill in ("mean", "inpaint"):
        if mean_colour is None:
            n = chip.shape[0] * chip.shape[1]
            mean_colour = [sum(int(v) for v in chip[..., c].ravel()) / n for c in range(3)]
        return [min(255, max(0, math.floor(v + 0.5))) for v in mean_colour]
    return list(blurred[y, x])


def ref_curve_images(chip, order, fractions, direction, fill, mean_colour) -> list[np.ndarray]:
    h, w, _ = chip.shape
    rank = {int(p): i for i, p in enumerate(order)}
    blurred = ref_blur(chip) if fill == "blur" else None
    images = []
    for f in fractions:
        k = ref_count(h * w, f)
        hidden = np.zeros((h, w), bool)
        for y in range(h):
            for x in range(w):
                removed = rank[y * w + x] < k
                hidden[y, x] = removed if direction == "deletion" else not removed
        out = chip.copy()
        if fill == "inpaint" and hidden.any() and not hidden.all():
            filled = np.clip(np.floor(inpaint_biharmonic(chip, hidden, channel_axis=-1) * 255 + 0.5), 0, 255)
            for y in range(h):
                for x in range(w):
                    if hidden[y, x]:
                        out[y, x] = filled[y, x]
        else:
            for y in range(h):
                for x in range(w):
                    if hidden[y, x]:
                        out[y, x] = ref_removed_pixel(chip, fill, mean_colour, blurred, y, x)
        images.append(out)
    return images


def linear_embed(weights: np.ndarray):
    """An exact (integer) affine embedding: (N, H, W, 3) uint8 → (N, D) float, rows independent of N; the
    bias (1, 2, ..., D) keeps a black chip off the origin (where the cosine is undefined)."""

    def embed(chips: np.ndarray) -> np.ndarray:
        out = chips.reshape(len(chips), -1).astype(np.int64) @ weights + np.arange(1, weights.shape[1] + 1)
        return out.astype(np.float64)

    return embed


def ref_curves(embed, chip, reference, orders, fills, threshold, metric, mean_colour, fractions, directions):
    rows = []
    for method, order in orders.items():
        for fill in fills:
            for direction in directions:
                images = ref_curve_images(chip, order, fractions, direction, fill, mean_colour)
                for f, image in zip(fractions, images):
                    e = embed(image[None])[0]
                    cos = float(np.dot(e, reference) / (np.linalg.norm(e) * np.linalg.norm(reference)))
                    dist = 1 - cos if metric == "cosine" else float(np.linalg.norm(e - reference))
                    same = dist < (1 - threshold if metric == "cosine" else threshold)
                    rows.append({"method": method, "fill": fill, "direction": direction, "fraction": f,
                                 "cosine": cos, "match": bool(same)})
    return rows


def assert_rows_equal(got: list[dict], want: list[dict], atol: float = 1e-12) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert {k: g[k] for k in ("method", "fill", "direction", "fraction", "match")} == \
               {k: w[k] for k in ("method", "fill", "direction", "fraction", "match")}
        assert g["cosine"] == pytest.approx(w["cosine"], abs=atol)


def random_chip(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.integers(1, 255, size=(h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------- rankings


def test_pixel_order_by_hand():
    assert F.pixel_order(np.array([[0.1, 0.9], [0.5, 0.9]])).tolist() == [1, 3, 2, 0]
    assert F.pixel_order(np.zeros((2, 3))).tolist() == [0, 1, 2, 3, 4, 5]  # a constant map: raster order
    assert F.pixel_order(np.array([[7.0]])).tolist() == [0]


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 3), (9, 11)])
def test_pixel_order_matches_a_sort_with_ties(shape):
    rng = np.random.default_rng(sum(shape))
    for values in (rng.integers(0, 3, shape), rng.normal(size=shape), np.full(shape, -2.0),
                   np.where(rng.random(shape) < 0.5, 1e300, -0.0), rng.integers(0, 2, shape).astype(bool)):
        assert F.pixel_order(values).tolist() == ref_order(values)


def test_pixel_order_refuses_nan_and_bad_shapes():
    with pytest.raises(ValueError, match="NaN"):
        F.pixel_order(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="infinite"):
        F.pixel_order(np.array([[0.0, np.inf]]))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        F.pixel_order(np.zeros((2, 2, 3)))


def test_random_order_is_a_seeded_permutation():
    a = F.random_order((4, 5), np.random.default_rng(3))
    assert sorted(a.tolist()) == list(range(20))
    assert a.tolist() == F.random_order((4, 5), np.random.default_rng(3)).tolist()


@pytest.mark.parametrize("kind", ["some", "all", "none"])
def test_random_order_within_puts_the_mask_first(kind):
    rng = np.random.default_rng(0)
    within = {"some": rng.random((5, 4)) < 0.4, "all": np.ones((5, 4), bool), "none": np.zeros((5, 4), bool)}[kind]
    order = F.random_order((5, 4), rng, within)
    inside = set(np.flatnonzero(within).tolist())
    assert sorted(order.tolist()) == list(range(20))
    assert set(order[: len(inside)].tolist()) == inside


def test_random_order_is_uniform():
    """Each pixel lands first about equally often, inside the mask and outside it (chi-square, 3x3)."""
    from scipy.stats import chisquare

    rng = np.random.default_rng(1)
    within = np.zeros((3, 3), bool)
    within[1, :] = True
    first, after = np.zeros(9), np.zeros(9)
    for _ in range(3000):
        o = F.random_order((3, 3), rng, within)
        first[o[0]] += 1
        after[o[3]] += 1
    assert first[~within.ravel()].sum() == 0 and after[within.ravel()].sum() == 0
    assert chisquare(first[within.ravel()]).pvalue > 1e-3
    assert chisquare(after[~within.ravel()]).pvalue > 1e-3


def test_random_order_refuses_a_bad_mask():
    with pytest.raises(ValueError, match="boolean mask"):
        F.random_order((2, 2), np.random.default_rng(0), np.ones((2, 3), bool))


def test_centre_prior_by_hand():
    prior = F.centre_prior((3, 3))  # sigma = 0.75 px on both axes
    assert prior[1, 1] == 1.0
    assert prior[0, 0] == pytest.approx(math.exp(-1 / 0.5625))  # 0.16901
    assert prior[0, 1] == pytest.approx(math.exp(-0.5 / 0.5625))
    assert F.pixel_order(prior)[0] == 4
    even = F.centre_prior((4, 6))
    assert np.allclose(even, even[::-1, ::-1]) and even.argmax() == 8  # (1, 2): the first of 4 ties


# ------------------------------------------------------------------------------------- fills


@pytest.mark.parametrize(("n", "f", "k"), [(22500, 0.005, 113), (12544, 0.01, 125), (200, 0.0025, 1),
                                           (1, 0.5, 1), (1, 0.3, 0), (3, 0.5, 2), (10, 1.0, 10), (10, 0.0, 0)])
def test_pixel_count_rounds_half_up(n, f, k):
    assert F.pixel_count(n, f) == k == ref_count(n, f)


def test_removed_images_by_hand():
    chip = np.array([[[10, 20, 30], [30, 40, 51]]], np.uint8)
    assert F.removed_image(chip, "black", DLIB_MEAN).tolist() == [[[0, 0, 0]] * 2]
    assert F.removed_image(chip, "mean", DLIB_MEAN).tolist() == [[[123, 117, 104]] * 2]
    assert F.removed_image(chip, "mean", None).tolist() == [[[20, 30, 41]] * 2]  # 40.5 rounds up
    assert F.removed_image(chip, "inpaint", None).tolist() == [[[20, 30, 41]] * 2]
    with pytest.raises(ValueError, match="fill"):
        F.removed_image(chip, "grey", None)
    with pytest.raises(ValueError, match="3 values"):
        F.removed_image(chip, "mean", (1.0, 2.0))
    with pytest.raises(ValueError, match="uint8"):
        F.removed_image(chip.astype(float), "black", None)


@pytest.mark.parametrize("shape", [(1, 1), (3, 8), (21, 20)])
def test_blur_matches_a_loop(shape):
    chip = random_chip(np.random.default_rng(4), *shape)
    got = F.removed_image(chip, "blur", None).astype(int)
    assert np.abs(got - ref_blur(chip)).max() <= 1  # a rounding tie at most
    assert (got == ref_blur(chip)).mean() > 0.99


def test_inpaint_keeps_the_rest_and_handles_empty_and_full_masks():
    rng = np.random.default_rng(5)
    chip = random_chip(rng, 6, 7)
    mask = rng.random((6, 7)) < 0.3
    out = F.inpaint(chip, mask)
    assert out.dtype == np.uint8 and (out[~mask] == chip[~mask]).all()
    assert (F.inpaint(chip, np.zeros((6, 7), bool)) == chip).all()
    assert (F.inpaint(chip, np.ones((6, 7), bool), DLIB_MEAN) == F.removed_image(chip, "mean", DLIB_MEAN)).all()
    with pytest.raises(ValueError, match="boolean mask"):
        F.inpaint(chip, mask.astype(int))


def test_curve_images_by_hand():
    chip = np.array([[[200, 0, 0], [0, 200, 0]], [[0, 0, 200], [50, 50, 50]]], np.uint8)
    order = np.array([3, 0, 2, 1])
    dele = F.curve_images(chip, order, (0.0, 0.25, 0.5, 1.0), "deletion", "black", None)
    assert dele[0].tolist() == chip.tolist()
    assert dele[1].tolist() == [[[200, 0, 0], [0, 200, 0]], [[0, 0, 200], [0, 0, 0]]]
    assert dele[2].tolist() == [[[0, 0, 0], [0, 200, 0]], [[0, 0, 200], [0, 0, 0]]]
    assert dele[3].tolist() == [[[0, 0, 0]] * 2] * 2
    ins = F.curve_images(chip, order, (0.0, 0.25), "insertion", "mean", (10, 20, 30))
    assert ins[0].tolist() == [[[10, 20, 30]] * 2] * 2
    assert ins[1].tolist() == [[[10, 20, 30]] * 2, [[10, 20, 30], [50, 50, 50]]]


CASES = [  # (h, w, seed): a 1-pixel chip, a line, odd sizes
    (1, 1, 0), (1, 5, 1), (2, 2, 2), (5, 7, 3), (9, 6, 4),
]


@pytest.mark.parametrize(("h", "w", "seed"), CASES)
@pytest.mark.parametrize("fill", F.FILLS)
@pytest.mark.parametrize("direction", F.DIRECTIONS)
def test_curve_images_match_the_pixel_loop(h, w, seed, fill, direction):
    rng = np.random.default_rng(seed)
    chip = random_chip(rng, h, w)
    for order in (rng.permutation(h * w), F.pixel_order(rng.integers(0, 2, (h, w)))):
        for mean in (DLIB_MEAN, None):
            got = F.curve_images(chip, order, F.FRACTIONS + (0.8, 1.0), direction, fill, mean)
            want = ref_curve_images(chip, order, F.FRACTIONS + (0.8, 1.0), direction, fill, mean)
            assert got.shape == (len(F.FRACTIONS) + 2, h, w, 3) and got.dtype == np.uint8
            tol = 1 if fill == "blur" else 0
            assert max(int(np.abs(g.astype(int) - x).max()) for g, x in zip(got, want)) <= tol


def test_curve_images_refuse_bad_input():
    chip = np.zeros((2, 2, 3), np.uint8)
    for order in (np.array([0, 1, 2]), np.array([0, 1, 1, 3]), np.array([0, 1, 2, 4]), np.array([-1, 0, 1, 2]),
                  np.array([0.0, 1, 2, 3])):
        with pytest.raises(ValueError, match="permutation"):
            F.curve_images(chip, order, (0.1,), "deletion", "black", None)
    with pytest.raises(ValueError, match="direction"):
        F.curve_images(chip, np.arange(4), (0.1,), "both", "black", None)
    with pytest.raises(ValueError, match="fraction"):
        F.curve_images(chip, np.arange(4), (1.5,), "deletion", "black", None)


# ------------------------------------------------------------------------------------- matching


def test_matches_by_hand():
    ref = np.array([1.0, 0.0])
    emb = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    assert F.matches(emb, ref, 0.5, "cosine").tolist() == [True, True, False, False]  # cosines 1, 0.707, 0, -1
    assert F.matches(emb, ref, 1.2, "euclidean").tolist() == [True, True, False, False]  # distances 0, 1, 1.41, 2
    assert F.matches(emb, ref, 1.0, "euclidean").tolist() == [True, False, False, False]  # below, not at
    with pytest.raises(ValueError, match="metric"):
        F.matches(emb, ref, 1.0, "manhattan")


def test_matches_is_the_verification_rule():
    """The same decision as leam's verification: pair distance below the spec threshold as a distance."""
    from leam.metrics.verification import pair_distances

    rng = np.random.default_rng(6)
    emb, ref = rng.normal(size=(200, 8)), rng.normal(size=8)
    stacked = np.vstack([ref, emb])
    pairs = np.stack([np.zeros(200, int), np.arange(1, 201)], 1)
    for metric, t, limit in (("cosine", 0.1, 0.9), ("euclidean", 4.0, 4.0)):
        assert (F.matches(emb, ref, t, metric) == (pair_distances(stacked, pairs, metric) < limit)).all()


# ------------------------------------------------------------------------------------- curves


def test_curves_by_hand():
    """A 1x2 chip, embed = the sum of its RGB pixels, reference (1, 1, 0), pixel 0 ranked first."""
    chip = np.array([[[200, 0, 0], [0, 200, 0]]], np.uint8)

    def embed(x):
        return x.reshape(len(x), -1, 3).sum(1).astype(float)

    rows = F.curves(embed, chip, np.array([1.0, 1.0, 0.0]), {"map": np.array([0, 1])}, ["mean"], 0.7, "cosine",
                    (0, 0, 100), fractions=(0.0, 0.5))
    got = {(r["direction"], r["fraction"]): (round(r["cosine"], 6), r["match"]) for r in rows}
    assert got == {
        ("deletion", 0.0): (1.0, True),  # (200, 200, 0)
        ("deletion", 0.5): (0.632456, False),  # (0, 200, 100): 200 / (sqrt(50000) sqrt(2)) = 2 / sqrt(10)
        ("insertion", 0.0): (0.0, False),  # (0, 0, 200)
        ("insertion", 0.5): (0.632456, False),  # (200, 0, 100)
    }
    black = F.curves(embed, chip, np.array([1.0, 1.0, 0.0]), {"map": np.array([0, 1])}, ["black"], 0.7, "cosine",
                     None, fractions=(0.0, 0.5), directions=("deletion",))
    assert [(round(r["cosine"], 6), r["match"]) for r in black] == [(1.0, True), (0.707107, True)]  # (0, 200, 0)
    assert [tuple(r) for r in black] == [("method", "fill", "direction", "fraction", "cosine", "match")] * 2


@pytest.mark.parametrize(("h", "w", "metric"), [(1, 1, "cosine"), (3, 5, "euclidean"), (6, 6, "cosine")])
def test_curves_match_the_reference(h, w, metric):
    rng = np.random.default_rng(h * w)
    chip = random_chip(rng, h, w)
    embed = linear_embed(rng.integers(-3, 4, size=(h * w * 3, 5)))
    reference = embed(chip[None])[0] + rng.normal(size=5) * 50
    orders = {"random": F.random_order((h, w), rng), "map": F.pixel_order(rng.integers(0, 3, (h, w))),
              "centre_prior": F.pixel_order(F.centre_prior((h, w)))}
    threshold = 0.9 if metric == "cosine" else float(np.linalg.norm(reference - embed(chip[None])[0]) * 1.5)
    got = F.curves(embed, chip, reference, orders, F.FILLS, threshold, metric, DLIB_MEAN, batch=5)
    want = ref_curves(embed, chip, reference, orders, F.FILLS, threshold, metric, DLIB_MEAN, F.FRACTIONS,
                      F.DIRECTIONS)
    assert_rows_equal(got, want)
    assert any(r["match"] for r in got) and not all(r["match"] for r in got)


class CountingEmbed:
    """A linear embedding that records every image it is given and the size of every call."""

    def __init__(self, weights: np.ndarray) -> None:
        self.inner, self.seen, self.calls = linear_embed(weights), [], []

    def __call__(self, chips: np.ndarray) -> np.ndarray:
        self.calls.append(len(chips))
        self.seen += [hashlib.sha1(c.tobytes()).hexdigest() for c in chips]
        return self.inner(chips)


@pytest.mark.parametrize("with_base", [False, True])
def test_curves_embed_each_distinct_image_once(with_base):
    rng = np.random.default_rng(7)
    chip = random_chip(rng, 20, 20)  # 400 pixels: every fraction removes a different count
    weights = rng.integers(-3, 4, size=(1200, 6))
    embed = CountingEmbed(weights)
    orders = {f"r{i}": F.random_order((20, 20), rng) for i in range(3)}
    reference = rng.normal(size=6)
    base = linear_embed(weights)(chip[None])[0] if with_base else None
    rows = F.curves(embed, chip, reference, orders, F.FILLS, 0.5, "cosine", DLIB_MEAN, batch=16, base=base)
    distinct = {hashlib.sha1(im.tobytes()).hexdigest()
                for order in orders.values() for fill in F.FILLS for d in F.DIRECTIONS
                for im in F.curve_images(chip, order, F.FRACTIONS, d, fill, DLIB_MEAN)}
    chip_key = hashlib.sha1(chip.tobytes()).hexdigest()
    assert len(embed.seen) == len(set(embed.seen))  # nothing embedded twice
    assert set(embed.seen) == distinct - ({chip_key} if with_base else set())
    assert len(embed.seen) == F.forwards_per_photo(3, F.FILLS, base=with_base)
    assert all(c <= 16 for c in embed.calls) and all(c == 16 for c in embed.calls[:-1])
    assert len(rows) == 3 * 4 * 2 * len(F.FRACTIONS)


def test_curves_do_not_depend_on_the_batch():
    rng = np.random.default_rng(8)
    chip = random_chip(rng, 7, 9)
    embed = linear_embed(rng.integers(-3, 4, size=(7 * 9 * 3, 4)))
    orders = {"a": F.random_order((7, 9), rng), "b": F.random_order((7, 9), rng, rng.random((7, 9)) < 0.5)}
    args = (embed, chip, rng.normal(size=4), orders, F.FILLS, 0.2, "cosine", None)
    one, big = F.curves(*args, batch=1), F.curves(*args, batch=64)
    assert one == big == F.curves(*args, batch=7)


def test_curves_refuse_bad_arguments():
    chip = np.zeros((2, 2, 3), np.uint8)
    args = (lambda x: np.ones((len(x), 2)), chip, np.ones(2), {"m": np.arange(4)})
    with pytest.raises(ValueError, match="fills"):
        F.curves(*args, ["grey"], 0.5, "cosine", None)
    with pytest.raises(ValueError, match="metric"):
        F.curves(*args, ["black"], 0.5, "l1", None)
    with pytest.raises(ValueError, match="batch"):
        F.curves(*args, ["black"], 0.5, "cosine", None, batch=0)
    with pytest.raises(ValueError, match=r"return \(1, D\) embeddings, got shape \(1,\)"):
        F.curves(lambda x: np.ones(len(x)), chip, np.ones(2), {"m": np.arange(4)}, ["black"], 0.5, "cosine", None,
                 fractions=(0.5, 1.0))


def test_forwards_per_photo_by_hand():
    # 10 rankings x 4 fills x 2 directions x 11 fractions in (0, 1), the chip, 4 (or 3) removed chips
    assert F.forwards_per_photo(10, 4) == 880 + 1 + 4
    assert F.forwards_per_photo(10, F.FILLS) == 880 + 1 + 3
    assert F.forwards_per_photo(10, ["black"], base=True) == 220 + 1
    assert F.forwards_per_photo(2, 1, fractions=(0.0, 0.1, 1.0), directions=("deletion",)) == 2 + 1 + 1
    assert F.forwards_per_photo(0, 4) == 0


# ------------------------------------------------------------------------------------- per curve


def test_curve_auc_by_hand():
    assert F.curve_auc([0.0, 0.25, 0.5], [1.0, 0.5, 0.0]) == 0.5
    assert F.curve_auc([0.0, 0.1, 0.2], [1.2, -0.3, 0.5]) == 0.375  # clipped to 1, 0, 0.5: 0.25 + 0.125
    assert F.curve_auc(F.FRACTIONS, [0.8] * len(F.FRACTIONS)) == pytest.approx(0.8)
    assert math.isnan(F.curve_auc([0.0, 0.5], [1.0, np.nan]))
    rng = np.random.default_rng(9)
    cos = rng.uniform(-0.2, 1.1, len(F.FRACTIONS))
    assert F.curve_auc(F.FRACTIONS, cos) == pytest.approx(
        trapezoid(np.clip(cos, 0, 1), np.array(F.FRACTIONS) / 0.5))
    for bad in (([0.0], [1.0]), ([0.0, 0.1], [1.0]), ([0.1, 0.1], [1.0, 1.0]), ([0.0, 0.0], [1.0, 1.0])):
        with pytest.raises(ValueError):
            F.curve_auc(*bad)


def test_pixels_to_unmatch_by_hand():
    fr = (0.0, 0.01, 0.02, 0.05)
    assert F.pixels_to_unmatch(fr, [True, True, False, False]) == (0.02, False)
    assert F.pixels_to_unmatch(fr, [True, False, True, True]) == (0.01, False)  # the first failure counts
    assert F.pixels_to_unmatch(fr, [False, False, False, False]) == (0.0, False)
    assert F.pixels_to_unmatch(fr, [True] * 4) == (0.05, True)
    assert F.pixels_to_unmatch(F.FRACTIONS, [True] * 12) == (0.5, True)
    with pytest.raises(ValueError):
        F.pixels_to_unmatch(fr, [True] * 3)


# ------------------------------------------------------------------------------------- real photos, layering


def test_inpainting_a_real_chip_restores_what_little_is_removed():
    """On an aligned lfw-demo chip, 0.5 % random pixels inpainted differ from the original by a few grey
    levels, a small part of what black, mean or blur fills change; 50 % random pixels revealed and the rest
    inpainted rebuild the chip closely."""
    photo = SHARED_DATA / "lfw-demo" / "Cameron_Diaz" / "Cameron_Diaz_0001.jpg"
    if not photo.is_file():
        pytest.skip(f"shared photos not found at {photo.parent} (expected ../shared/data next to the repo)")
    pytest.importorskip("dlib")
    from leam.face import align_file
    from leam.face.templates import DLIB_TEMPLATE

    chip = align_file(photo, DLIB_TEMPLATE, largest_face=True).chip
    order = F.random_order(chip.shape[:2], np.random.default_rng(0))
    k = F.pixel_count(chip.shape[0] * chip.shape[1], 0.005)
    removed = np.zeros(chip.shape[0] * chip.shape[1], bool)
    removed[order[:k]] = True
    removed = removed.reshape(chip.shape[:2])

    def error(fill: str, fraction: float = 0.005, direction: str = "deletion") -> float:
        image = F.curve_images(chip, order, (fraction,), direction, fill, DLIB_MEAN)[0]
        return float(np.abs(image.astype(int) - chip)[removed].mean())

    assert error("inpaint") < 8
    assert error("inpaint") < 0.25 * min(error("black"), error("mean"), error("blur"))
    rebuilt = F.curve_images(chip, order, (0.5,), "insertion", "inpaint", DLIB_MEAN)[0]
    assert float(np.abs(rebuilt.astype(int) - chip).mean()) < 2


def test_the_modules_do_not_import_torch():
    code = ("import sys, leam.metrics.faithfulness, leam.metrics.paired; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'leam.models'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_docstring_examples():
    import doctest

    assert doctest.testmod(F).failed == 0


def test_pixel_order_with_rng_breaks_only_ties_at_random():
    values = np.array([[0.0, 2.0, 0.0], [1.0, 0.0, 2.0]])
    orders = {tuple(F.pixel_order(values, np.random.default_rng(s)).tolist()) for s in range(40)}
    assert all(o[:2] in ((1, 5), (5, 1)) and o[2] == 3 and set(o[3:]) == {0, 2, 4} for o in orders)
    assert len({o[:2] for o in orders}) == 2 and len({o[3:] for o in orders}) == 6  # every tie order occurs
    distinct = np.random.default_rng(0).random((7, 5))
    np.testing.assert_array_equal(F.pixel_order(distinct, np.random.default_rng(1)), F.pixel_order(distinct))
