"""Occlusion sensitivity: the black-box map. Slide a square patch over the chip, fill it, and score each
position by how much the chip's cosine similarity to its reference drops; a pixel's value is the mean score
of the patches that cover it. Gradient-free and slow (one forward per patch position); NumPy only.

The patch positions are captum's ``Occlusion``'s: 0, s, 2s, ... along each axis, ceil((H - p) / s) + 1 of
them, the last one cut at the border when (H - p) is not a multiple of s, so every row and column is covered.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from leam.metrics.occlusion import cosine

Embed = Callable[[np.ndarray], np.ndarray]  # (N, H, W, 3) uint8 chips -> (N, D) embeddings


def patch_starts(length: int, patch: int, stride: int) -> list[int]:
    """Where the patches start along an axis of ``length`` pixels: 0, stride, ..., covering the last pixel."""
    if not 1 <= patch <= length:
        raise ValueError(f"expected a patch of 1 to {length} pixels, got {patch}")
    if not 1 <= stride <= patch:
        raise ValueError(f"expected a stride of 1 to the patch size {patch} (no pixel left uncovered), got {stride}")
    return [i * stride for i in range(-(-(length - patch) // stride) + 1)]


def occlusion_forwards(size: tuple[int, int], patch: int, stride: int, base_known: bool = False) -> int:
    """How many chips ``occlusion_sensitivity`` embeds for a chip of ``size`` (H, W): one per patch position,
    plus the unoccluded chip unless its embedding is passed as ``base`` (``base_known``).

    >>> occlusion_forwards((150, 150), patch=16, stride=8)  # 18 x 18 positions + the chip
    325
    """
    count = len(patch_starts(size[0], patch, stride)) * len(patch_starts(size[1], patch, stride))
    return count + (0 if base_known else 1)


def _fill_image(fill: np.ndarray | float, shape: tuple[int, ...]) -> np.ndarray:
    """``fill`` (a value, a colour (3,), or an (H, W, 3) image) as a uint8 image of ``shape``, rounded."""
    fill = np.asarray(fill, dtype=np.float64)
    try:
        image = np.broadcast_to(fill, shape)
    except ValueError:
        raise ValueError(f"expected fill to be a value, a colour (3,) or an image {shape}, got {fill.shape}") from None
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def occlusion_sensitivity(
    embed: Embed,
    chip: np.ndarray,
    reference: np.ndarray,
    patch: int,
    stride: int,
    fill: np.ndarray | float = 0.0,
    batch: int = 64,
    base: np.ndarray | None = None,
) -> np.ndarray:
    """The (H, W) float64 occlusion-sensitivity map of an (H, W, 3) uint8 ``chip`` against the (D,) ``reference``.

    Each patch x patch square (positions every ``stride`` pixels, see the module's note) is set to ``fill`` (a
    value, a colour, or an (H, W, 3) image whose pixels are pasted in, e.g. a blurred chip; rounded to uint8)
    and scored cos(embed(chip), reference) - cos(embed(occluded), reference): positive where hiding the
    square lowers the similarity. Each pixel gets the mean score of the squares covering it. ``embed`` is
    called on at most ``batch`` chips at a time; ``base``: the chip's own (D,) embedding when the caller has
    it (its forward is then saved). ``occlusion_forwards`` says how many chips are embedded.
    """
    chip = np.asarray(chip)
    if chip.ndim != 3 or chip.shape[2] != 3 or chip.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 chip, got {chip.dtype} {chip.shape}")
    if batch < 1:
        raise ValueError(f"expected a batch of at least 1, got {batch}")
    height, width = chip.shape[:2]
    windows = [
        (slice(y, y + patch), slice(x, x + patch))
        for y in patch_starts(height, patch, stride)
        for x in patch_starts(width, patch, stride)
    ]
    filled = _fill_image(fill, chip.shape)
    base_cos = cosine(embed(chip[None]) if base is None else base, reference)[0]

    total = np.zeros((height, width))
    covers = np.zeros((height, width))
    for start in range(0, len(windows), batch):
        chunk = windows[start : start + batch]
        occluded = np.repeat(chip[None], len(chunk), axis=0)
        for k, (rows, cols) in enumerate(chunk):
            occluded[k, rows, cols] = filled[rows, cols]
        for (rows, cols), cos in zip(chunk, cosine(embed(occluded), reference)):
            total[rows, cols] += base_cos - cos
            covers[rows, cols] += 1
    return total / covers
