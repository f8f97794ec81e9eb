"""The differentiable photo → chip warp against leam's own ``warp_to_chip`` on real photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from leam.data.images import load_image
from leam.face import detect_faces, estimate_warp, warp_to_chip
from leam.models import model_spec
from leam.protect.mask import chip_to_chip
from leam.protect.warp import ChipSampler, footprint, reduce_factor


def _photo_tensor(photo: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(photo).permute(2, 0, 1)[None].float()


def _sampled(photo: np.ndarray, w) -> np.ndarray:
    return ChipSampler(w, photo.shape[:2])(_photo_tensor(photo))[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("model", ["dlib-resnet", "facenet"])
def test_matches_warp_to_chip_on_lfw(lfw_dir, model):
    photo = load_image(sorted(lfw_dir.glob("*/*.jpg"))[0])
    face = detect_faces(photo)[0]
    w = estimate_warp(face.landmarks, model_spec(model).template)
    assert reduce_factor(w) == 1
    ours, theirs = _sampled(photo, w), warp_to_chip(photo, w).astype(np.float64)
    # warp_to_chip truncates to uint8: its pixels are the floor of ours
    assert np.abs(ours - theirs).max() < 1.0 + 1e-3
    assert np.abs(np.floor(ours + 1e-4) - theirs).mean() < 1e-3


def test_matches_warp_to_chip_with_box_reduction(raw_photos_dir):
    photo = load_image(raw_photos_dir / "img1.jpg")
    face = detect_faces(photo)[0]
    w = estimate_warp(face.landmarks, model_spec("dlib-resnet").template)
    assert reduce_factor(w) > 1, "the test needs a face much larger than the chip"
    ours, theirs = _sampled(photo, w), warp_to_chip(photo, w).astype(np.float64)
    # PIL's reduce rounds each block mean (≤ 0.5, ~0.67 for partial blocks) and the chip is truncated
    assert np.abs(ours - theirs).max() <= 1.7
    assert np.abs(ours - 0.5 - theirs).mean() < 0.35


def test_gradient_reaches_exactly_the_sampled_pixels(lfw_dir):
    photo = load_image(sorted(lfw_dir.glob("*/*.jpg"))[0])
    w = estimate_warp(detect_faces(photo)[0].landmarks, model_spec("facenet").template)
    x = _photo_tensor(photo).requires_grad_(True)
    ChipSampler(w, photo.shape[:2])(x).sum().backward()
    touched = (x.grad[0].abs().sum(0) > 0).numpy()
    inside = footprint(w, photo.shape[:2])
    assert touched[inside].mean() > 0.99  # every pixel inside the chip's footprint feeds some chip pixel
    grown = inside.copy()  # and nothing beyond one pixel (8-neighbourhood) outside it
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            grown |= np.roll(np.roll(inside, dy, axis=0), dx, axis=1)
    assert not (touched & ~grown).any()


def test_chip_to_chip_round_trip(lfw_dir):
    photo = load_image(sorted(lfw_dir.glob("*/*.jpg"))[0])
    lm = detect_faces(photo)[0].landmarks
    a, b = estimate_warp(lm, model_spec("dlib-resnet").template), estimate_warp(lm, model_spec("facenet").template)
    yy, xx = np.mgrid[0:150, 0:150]
    smooth = np.sin(xx / 20.0) * np.cos(yy / 25.0)
    back = chip_to_chip(chip_to_chip(smooth, a, b), b, a)
    inner = (slice(40, 110), slice(40, 110))
    assert np.abs(back[inner] - smooth[inner]).max() < 0.01


def test_sampler_refuses_wrong_shape():
    from leam.face import Warp

    sampler = ChipSampler(Warp(np.eye(3)[:2], (10, 10)), (20, 20))
    with pytest.raises(ValueError, match=r"expected photos of shape \(N, 3, 20, 20\)"):
        sampler(torch.zeros(1, 3, 20, 21))
