"""The photo → chip warp of ``leam.face.align.warp_to_chip``, differentiable (torch ``grid_sample``).

``warp_to_chip`` cuts a model's aligned chip from a photo with bilinear sampling (after an integer
box reduction when the chip is much smaller than the face). To optimise pixels of the *photo* for
several models at once, each model must see the photo through its own warp, with gradients flowing
back to the photo: ``ChipSampler`` does the same sampling in torch. It differs from ``warp_to_chip``
only by what ``warp_to_chip`` rounds: PIL's box reduction rounds to integers and the chip is
truncated to uint8; here both stay floats (``tests/protect/test_warp.py`` checks the agreement).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from leam.face.align import Warp


def reduce_factor(w: Warp) -> int:
    """The integer box-reduction factor ``warp_to_chip`` applies before sampling (1: none)."""
    return int(1.0 / w.scale) if w.scale < 0.5 else 1


def reduced_warp(w: Warp, factor: int) -> Warp:
    """``w`` for a photo reduced by ``factor``: reduced pixel i has its centre at photo factor*i + (factor-1)/2."""
    if factor == 1:
        return w
    to_photo = np.array([[factor, 0.0, (factor - 1) / 2.0], [0.0, factor, (factor - 1) / 2.0], [0.0, 0.0, 1.0]])
    return Warp((w.full @ to_photo)[:2], w.size)


def sampling_grid(w: Warp, photo_shape: tuple[int, int]) -> torch.Tensor:
    """(1, h, w, 2) ``grid_sample`` grid (align_corners=True) of the photo points each chip pixel samples."""
    rows, cols = w.size
    ys, xs = np.mgrid[0:rows, 0:cols].astype(np.float64)
    inv = np.linalg.inv(w.full)
    px = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    py = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    height, width = photo_shape
    gx = 2.0 * px / max(width - 1, 1) - 1.0
    gy = 2.0 * py / max(height - 1, 1) - 1.0
    return torch.from_numpy(np.stack([gx, gy], axis=-1)[None]).float()


class ChipSampler:
    """Cut one model's chip from photos of one size, differentiably.

    >>> sampler = ChipSampler(face.warp, face.photo_shape)               # doctest: +SKIP
    >>> chips = sampler(photos)   # (N, 3, H, W) float in [0, 255] → (N, 3, h, w)  # doctest: +SKIP
    """

    def __init__(self, w: Warp, photo_shape: tuple[int, int]) -> None:
        self.factor = reduce_factor(w)
        self.photo_shape = (int(photo_shape[0]), int(photo_shape[1]))
        h, wd = self.photo_shape
        reduced_shape = (-(-h // self.factor), -(-wd // self.factor))  # PIL's reduce keeps partial blocks
        self.grid = sampling_grid(reduced_warp(w, self.factor), reduced_shape)

    def __call__(self, photos: torch.Tensor) -> torch.Tensor:
        if photos.dim() != 4 or photos.shape[1] != 3 or tuple(photos.shape[-2:]) != self.photo_shape:
            raise ValueError(f"expected photos of shape (N, 3, {self.photo_shape[0]}, {self.photo_shape[1]}), "
                             f"got {tuple(photos.shape)}")
        x = photos
        if self.factor > 1:
            # PIL's Image.reduce: the mean of each factor x factor block, partial blocks at the right and
            # bottom edges averaged over the pixels they hold (ceil_mode windows, divisor = pixels inside)
            x = F.avg_pool2d(x, self.factor, self.factor, ceil_mode=True, count_include_pad=False)
        grid = self.grid.to(x.dtype).expand(x.shape[0], -1, -1, -1)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def footprint(w: Warp, photo_shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: photo pixels that map inside the chip ([0, w-1] x [0, h-1] in chip coordinates)."""
    height, width = photo_shape
    m = w.matrix
    rows, cols = w.size
    out = np.zeros((height, width), dtype=bool)
    # only the box around the chip's corners in the photo is tested: a large photo costs one bool per pixel
    corners = np.linalg.inv(w.full) @ np.array([[0, cols - 1, 0, cols - 1], [0, 0, rows - 1, rows - 1], [1, 1, 1, 1.0]])
    top, left = (max(0, int(np.floor(v.min())) - 1) for v in (corners[1], corners[0]))
    bottom, right = min(height, int(np.ceil(corners[1].max())) + 2), min(width, int(np.ceil(corners[0].max())) + 2)
    if top >= bottom or left >= right:
        return out
    ys, xs = np.mgrid[top:bottom, left:right].astype(np.float64)
    cx = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
    cy = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
    out[top:bottom, left:right] = (cx >= 0) & (cx <= cols - 1) & (cy >= 0) & (cy <= rows - 1)
    return out
