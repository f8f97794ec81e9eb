"""Plumbing shared by the network parsers: a square head crop of the photo, and labels carried back.

Networks trained on CelebAMask-HQ see faces framed as in CelebA-HQ/FFHQ: an oriented square from the
eye centres and the mouth corners (Karras et al.'s alignment rule, which facer's ``celebm``
alignment for FaRL reuses):

    e = mean of the eye centres, m = mean of the mouth corners,
    x = (right eye - left eye) - rot90(m - e), normalised, times
        max(2.0 x |eye to eye|, 1.8 x |e to m|)           (half the side, pointing right)
    y = rot90(x)                                             (half the side, pointing down)
    centre c = e + 0.1 (m - e); corners c - x - y, c + x - y, c + x + y, c - x + y

The square's corners go to the crop's outer edges (pixel centres at integers, so corners at
-0.5 and size - 0.5). The crop holds the head, the hair and the top of the neck. Labels predicted
in the crop are carried to a chip frame by composing the two warps (crop <- photo <- chip) and
sampling with the nearest neighbour; chip pixels that fall outside the crop, or outside the photo
(the black padding, which a network would label too), are left unlabelled.
"""

from __future__ import annotations

import numpy as np
from skimage.transform import SimilarityTransform

from leam.face import AlignedFace
from leam.face.align import Warp
from leam.face.labels import UNLABELLED


def _rot90(v: np.ndarray) -> np.ndarray:
    """(x, y) turned by +90 degrees in image coordinates (y down): right -> down."""
    return np.array([-v[1], v[0]])


def head_quad(points68: np.ndarray) -> np.ndarray:
    """(4, 2) corners (top-left, top-right, bottom-right, bottom-left) of the head square, photo (x, y).

    ``points68`` are dlib's 68 landmarks; the eye centres are the means of 36-41 and 42-47 and the
    mouth corners are 48 and 54 (what 5-point detectors such as RetinaFace report).
    """
    p = np.asarray(points68, dtype=np.float64)
    eye_left_img, eye_right_img = p[36:42].mean(0), p[42:48].mean(0)  # image left, image right
    eye_mid = (eye_left_img + eye_right_img) / 2.0
    mouth_mid = (p[48] + p[54]) / 2.0
    eye_to_eye, eye_to_mouth = eye_right_img - eye_left_img, mouth_mid - eye_mid
    x = eye_to_eye - _rot90(eye_to_mouth)
    x = x / np.hypot(*x) * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = _rot90(x)
    c = eye_mid + eye_to_mouth * 0.1
    return np.stack([c - x - y, c + x - y, c + x + y, c - x + y])


def quad_warp(quad: np.ndarray, size: int) -> Warp:
    """The similarity photo -> (size, size) crop that puts ``quad``'s corners on the crop's edges."""
    edges = np.array([[-0.5, -0.5], [size - 0.5, -0.5], [size - 0.5, size - 0.5], [-0.5, size - 0.5]])
    tform = SimilarityTransform.from_estimate(np.asarray(quad, dtype=np.float64), edges)
    if not tform:
        raise ValueError("degenerate face quad: cannot fit a similarity transform")
    return Warp(tform.params[:2].copy(), (size, size))


def head_crop_warp(photo: np.ndarray, face: AlignedFace, size: int) -> Warp:
    """The head crop's warp for ``face`` (68 landmarks found on the photo inside the detection box)."""
    from leam.parse.landmarks import landmarks68

    return quad_warp(head_quad(landmarks68(photo, face.face.box)), size)


def labels_to_chip(
    labels: np.ndarray, crop: Warp, chip: Warp, photo_shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Carry (h, w) uint8 labels from a crop frame to a chip frame (nearest neighbour).

    Chip pixel (x, y) reads the crop label at ``round(crop(chip^-1(x, y)))``. Chip pixels whose
    source lies outside the crop, or outside the photo when ``photo_shape`` (H, W) is given (the
    black padding a network would label too), get ``UNLABELLED``.
    """
    labels = np.asarray(labels)
    if labels.shape != crop.size:
        raise ValueError(f"expected labels of the crop's shape {crop.size}, got {labels.shape}")
    chip_to_crop = crop.full @ np.linalg.inv(chip.full)
    rows, cols = chip.size
    yy, xx = np.mgrid[0:rows, 0:cols]
    pts = np.stack([xx.ravel(), yy.ravel(), np.ones(xx.size)]).astype(np.float64)
    cx, cy = np.rint((chip_to_crop @ pts)[:2]).astype(np.int64)
    inside = (cx >= 0) & (cx < labels.shape[1]) & (cy >= 0) & (cy < labels.shape[0])
    if photo_shape is not None:
        px, py = (np.linalg.inv(chip.full) @ pts)[:2]
        inside &= (px >= -0.5) & (px < photo_shape[1] - 0.5) & (py >= -0.5) & (py < photo_shape[0] - 0.5)
    out = np.full(rows * cols, UNLABELLED, dtype=np.uint8)
    out[inside] = labels[cy[inside], cx[inside]]
    return out.reshape(rows, cols)
