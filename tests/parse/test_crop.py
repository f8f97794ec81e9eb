"""The head crop and the carrying of labels to a chip frame, on geometry worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from leam.face.align import Warp
from leam.parse import UNLABELLED
from leam.parse._crop import head_quad, labels_to_chip, quad_warp

# a 4 x 4 label image with every value different, so any misplaced pixel shows
BASE = np.arange(16, dtype=np.uint8).reshape(4, 4)


def synthetic_points68() -> np.ndarray:
    """68 points whose eye centres are (40, 50) and (60, 50) and mouth corners (42, 75), (58, 75)."""
    p = np.zeros((68, 2))
    p[36:42], p[42:48] = (40.0, 50.0), (60.0, 50.0)
    p[48], p[54] = (42.0, 75.0), (58.0, 75.0)
    return p


def test_head_quad_by_hand() -> None:
    # eye to eye (20, 0), eye to mouth (0, 25): x = (20, 0) - rot90(0, 25) = (45, 0), normalised and
    # scaled by max(2 * 20, 1.8 * 25) = 45; y = (0, 45); centre (50, 50) + 0.1 * (0, 25) = (50, 52.5)
    quad = head_quad(synthetic_points68())
    np.testing.assert_allclose(quad, [[5.0, 7.5], [95.0, 7.5], [95.0, 97.5], [5.0, 97.5]], atol=1e-12)


def test_head_quad_turns_with_the_face() -> None:
    angle = np.deg2rad(30.0)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = synthetic_points68() @ rot.T
    np.testing.assert_allclose(head_quad(points), head_quad(synthetic_points68()) @ rot.T, atol=1e-9)


def test_quad_warp_puts_the_corners_on_the_edges() -> None:
    # side 90 onto 90 pixels: scale 1, corner (5, 7.5) onto (-0.5, -0.5)
    w = quad_warp(head_quad(synthetic_points68()), 90)
    assert w.size == (90, 90)
    np.testing.assert_allclose(w.matrix, [[1.0, 0.0, -5.5], [0.0, 1.0, -8.0]], atol=1e-9)
    np.testing.assert_allclose(w.to_chip(np.array([[50.0, 52.5]])), [[44.5, 44.5]], atol=1e-9)


def test_labels_scaled_down() -> None:
    # the crop is the photo at twice the size; the chip is the photo: chip (x, y) reads crop (2x, 2y)
    crop = Warp(np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]), (8, 8))
    chip = Warp(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), (4, 4))
    labels = np.kron(BASE, np.ones((2, 2), dtype=np.uint8))
    np.testing.assert_array_equal(labels_to_chip(labels, crop, chip), BASE)


def test_labels_turned_a_quarter() -> None:
    # chip (x, y) = (y_photo, 3 - x_photo): the chip is the photo turned a quarter anticlockwise
    crop = Warp(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), (4, 4))
    chip = Warp(np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 3.0]]), (4, 4))
    np.testing.assert_array_equal(labels_to_chip(BASE, crop, chip), np.rot90(BASE))


def test_outside_the_crop_or_the_photo_is_unlabelled() -> None:
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    out = labels_to_chip(BASE, Warp(identity, (4, 4)), Warp(identity, (6, 6)))
    np.testing.assert_array_equal(out[:4, :4], BASE)
    assert (out[4:, :] == UNLABELLED).all() and (out[:, 4:] == UNLABELLED).all()
    # a photo of 3 x 2 pixels (H, W): only chip pixels x < 2, y < 3 come from it
    out = labels_to_chip(BASE, Warp(identity, (4, 4)), Warp(identity, (4, 4)), photo_shape=(3, 2))
    np.testing.assert_array_equal(out[:3, :2], BASE[:3, :2])
    assert (out[3:, :] == UNLABELLED).all() and (out[:, 2:] == UNLABELLED).all()


def test_labels_must_have_the_crop_shape() -> None:
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    with pytest.raises(ValueError, match=r"expected labels of the crop's shape \(5, 5\), got \(4, 4\)"):
        labels_to_chip(BASE, Warp(identity, (5, 5)), Warp(identity, (4, 4)))
