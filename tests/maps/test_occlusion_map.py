"""Occlusion sensitivity: by hand on a 4x4 chip, and against captum 0.8's ``Occlusion`` on a seeded network.

By hand: ``corner_embed`` reads two pixels, f = (1 + chip[0, 0, 0], 1 + chip[3, 3, 0]), against the
reference (1, 0), so cos = f1 / |f|. The all-ones chip gives f = (2, 2), cos = 1/sqrt(2). Filling with 0:
    a square over (0, 0) gives f = (1, 2): score a = 1/sqrt(2) - 1/sqrt(5) (about  .2599)
    a square over (3, 3) gives f = (2, 1): score b = 1/sqrt(2) - 2/sqrt(5) (about -.1873: hiding it helps)
    any other square changes nothing:       score 0
2x2 squares at stride 2 tile the chip (each pixel in one square): a on the top-left quarter, b on the
bottom-right. At stride 1 they start at 0, 1, 2 on each axis (9 squares); a pixel's value is the mean over
the 1, 2 or 4 squares covering it, e.g. (1, 1) lies in four squares, one of which holds (0, 0): a / 4.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from leam.maps import occlusion_forwards, occlusion_sensitivity
from leam.maps.occlusion_map import patch_starts
from tests.helpers.seeded_models import SIZE, seeded_batch, seeded_embedder

A = 1 / np.sqrt(2) - 1 / np.sqrt(5)
B = 1 / np.sqrt(2) - 2 / np.sqrt(5)
ONES = np.ones((4, 4, 3), dtype=np.uint8)
REFERENCE = np.array([1.0, 0.0])


class CornerEmbed:
    """f = (1 + chip[0, 0, 0], 1 + chip[3, 3, 0]); records the batches it is given."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def __call__(self, chips: np.ndarray) -> np.ndarray:
        self.batches.append(chips.copy())
        return np.stack([1.0 + chips[:, 0, 0, 0], 1.0 + chips[:, 3, 3, 0]], axis=1)


def test_stride_two_tiles_literal():
    expected = [[A, A, 0, 0], [A, A, 0, 0], [0, 0, B, B], [0, 0, B, B]]
    np.testing.assert_allclose(occlusion_sensitivity(CornerEmbed(), ONES, REFERENCE, 2, 2), expected, atol=1e-15)


def test_stride_one_means_over_covering_squares_literal():
    expected = [
        [A, A / 2, 0, 0],
        [A / 2, A / 4, 0, 0],
        [0, 0, B / 4, B / 2],
        [0, 0, B / 2, B],
    ]
    embed = CornerEmbed()
    result = occlusion_sensitivity(embed, ONES, REFERENCE, patch=2, stride=1, batch=4)
    np.testing.assert_allclose(result, expected, atol=1e-15)
    # the chip once, then 9 squares in batches of 4, 4, 1
    assert [len(b) for b in embed.batches] == [1, 4, 4, 1]
    assert sum(map(len, embed.batches)) == occlusion_forwards((4, 4), 2, 1) == 10


def test_base_saves_the_chips_forward():
    embed = CornerEmbed()
    result = occlusion_sensitivity(embed, ONES, REFERENCE, 2, 1, base=np.array([2.0, 2.0]))
    assert [len(b) for b in embed.batches] == [9] == [occlusion_forwards((4, 4), 2, 1, base_known=True)]
    np.testing.assert_allclose(result[0, 0], A, atol=1e-15)


def test_fill_image_is_pasted_inside_the_square_only():
    fill = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3) + 100
    embed = CornerEmbed()
    occlusion_sensitivity(embed, ONES, REFERENCE, 2, 2, fill=fill)
    occluded = embed.batches[1]
    assert len(occluded) == 4  # squares at (0, 0), (0, 2), (2, 0), (2, 2), in that order
    for k, (y, x) in enumerate([(0, 0), (0, 2), (2, 0), (2, 2)]):
        inside = np.zeros((4, 4), dtype=bool)
        inside[y : y + 2, x : x + 2] = True
        np.testing.assert_array_equal(occluded[k][inside], fill[inside])
        np.testing.assert_array_equal(occluded[k][~inside], ONES[~inside])


def test_fill_value_and_colour_are_rounded_to_uint8():
    embed = CornerEmbed()
    occlusion_sensitivity(embed, ONES, REFERENCE, 4, 4, fill=127.6)
    assert embed.batches[1].dtype == np.uint8 and (embed.batches[1] == 128).all()
    occlusion_sensitivity(embed, ONES, REFERENCE, 4, 4, fill=np.array([10, 20, 300]))
    assert embed.batches[3][0, 0, 0].tolist() == [10, 20, 255]


def test_patch_starts_cover_the_last_pixel():
    assert patch_starts(4, 2, 2) == [0, 2]
    assert patch_starts(5, 2, 2) == [0, 2, 4]  # the last square is cut to one pixel, as captum's
    assert patch_starts(150, 16, 8)[-1] == 136 and len(patch_starts(150, 16, 8)) == 18
    assert patch_starts(7, 7, 3) == [0]
    assert occlusion_forwards((150, 150), 16, 8) == 18 * 18 + 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"patch": 5}, "patch of 1 to 4"),
        ({"patch": 0}, "patch of 1 to 4"),
        ({"stride": 3}, "stride of 1 to the patch size 2"),
        ({"fill": np.zeros((3, 3, 3))}, "expected fill"),
        ({"chip": ONES.astype(np.float32)}, "uint8 chip"),
        ({"chip": ONES[..., 0]}, "uint8 chip"),
        ({"batch": 0}, "batch of at least 1"),
    ],
)
def test_arguments_checked(kwargs, message):
    args = {"embed": CornerEmbed(), "chip": ONES, "reference": REFERENCE, "patch": 2, "stride": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        occlusion_sensitivity(**args)


# ------------------------------------------------------------------------------- against captum


def slow_occlusion(similarity, image: torch.Tensor, patch: int, stride: int, fill) -> torch.Tensor:
    """One square at a time, positions 0, stride, ... while the square still starts inside the image."""
    h, w = image.shape[-2:]
    total, covers = torch.zeros(h, w, dtype=image.dtype), torch.zeros(h, w, dtype=image.dtype)
    with torch.no_grad():
        base = similarity(image[None])
        for y in range(0, h - patch + stride, stride):
            for x in range(0, w - patch + stride, stride):
                occluded = image.clone()
                occluded[:, y : y + patch, x : x + patch] = fill[:, y : y + patch, x : x + patch]
                total[y : y + patch, x : x + patch] += (base - similarity(occluded[None]))[0]
                covers[y : y + patch, x : x + patch] += 1
    return total / covers


@pytest.mark.parametrize(
    ("patch", "stride", "fill"),
    [(6, 4, 0.0), (5, 5, 100.0), (4, 3, "image"), (24, 1, 0.0)],
    ids=["cut-edge-black", "tiles-grey", "image-fill", "whole-chip"],
)
def test_matches_captum_occlusion_and_a_slow_reference(patch, stride, fill):
    # captum's Occlusion measures f(x) - f(occluded) and averages over the windows covering each pixel,
    # so its forward function is the cosine to the reference. The network runs in float64 and the chips are
    # integer-valued, so all three see the same pixels. Against the slow float64 reference: 1e-12 (seen:
    # ~4e-16). captum 0.8 returns float32 attributions for float64 inputs, so against it: 1e-6 of the map's
    # largest magnitude (seen: ~5e-8).
    captum = pytest.importorskip("captum.attr")
    net = seeded_embedder()
    images, references = seeded_batch(2)
    chip = images[0].permute(1, 2, 0).numpy().astype(np.uint8)
    reference = references[0]
    if fill == "image":
        fill = images[1].permute(1, 2, 0).numpy().astype(np.uint8)
        baseline = images[1:2]
    else:
        baseline = fill

    def embed(chips: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(chips).permute(0, 3, 1, 2).double()).numpy()

    def similarity(x: torch.Tensor) -> torch.Tensor:
        return F.cosine_similarity(net(x), reference[None], dim=1)

    ours = occlusion_sensitivity(embed, chip, reference.numpy(), patch, stride, fill=fill, batch=7)
    slow = slow_occlusion(similarity, images[0], patch, stride, torch.as_tensor(baseline).expand(1, 3, *SIZE)[0])
    np.testing.assert_allclose(ours, slow.numpy(), rtol=0, atol=1e-12)
    theirs = captum.Occlusion(similarity).attribute(
        images[:1], sliding_window_shapes=(3, patch, patch), strides=(3, stride, stride), baselines=baseline,
        perturbations_per_eval=16,
    )[0].double().numpy()
    scale = np.abs(theirs).max()
    assert theirs.shape == (3, *SIZE) and scale > 1e-3
    np.testing.assert_allclose(ours, theirs[0], rtol=0, atol=1e-6 * scale)
    assert (theirs == theirs[:1]).all()  # the same for every colour channel
