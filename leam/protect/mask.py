"""Which photo pixels to change: LEAM maps drawn onto the photo, per image or per person, at a budget.

All masks live in the *photo* frame, so one mask serves every model of an ensemble (each sees the
photo through its own alignment warp):

* ``photo_map``: the mean over the ensemble's models of each model's aggregate LEAM map drawn back
  onto the photo (``warp_to_photo``; 0 outside a model's chip), and the *region* the models see: the
  photo pixels inside at least one model's chip.
* ``consensus_map``: one map per person. Every photo's map of every model is carried into one
  canonical aligned frame (the first model's chip: chip m → photo → chip of the first model) and
  averaged where it covers the frame; the mean is drawn back onto each photo. Its top pixels mark
  the same places of the face in every photo of the person.
* The budget is a pixel count: ``budget_pixels`` = ⌈p % of the face box⌉ (dlib's detection
  rectangle, clipped to the photo), so a budget means the same share of a face in a small or a large
  photo. ``top_pixels`` takes that many of the region's most activated pixels (ties in raster
  order); ``random_pixels`` as many uniformly from the region (the random-mask baseline).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from leam.face import AlignedFace, Warp, warp_to_photo
from leam.face.align import chip_to_chip
from leam.maps import LEAM
from leam.metrics.occlusion import random_mask
from leam.metrics.regions import pixel_ranking, top_count
from leam.models import FaceModel, check_finite
from leam.protect.warp import footprint


def leam_aggregates(model: FaceModel, faces: Sequence[AlignedFace], references: np.ndarray) -> np.ndarray:
    """(N, h, w) aggregate LEAM maps of ``faces`` against ``references`` (N, D): each face's own reference
    embedding (e.g. the mean of the person's others). Always the reference study's map (the mean of the default
    layers' normalised maps, ``loss`` direction), whatever ``explain``'s default: protection was measured with
    it. ``NonFiniteError`` names a face whose map holds NaN or Inf."""
    engine = LEAM(model.net, list(model.spec.default_layers), direction="loss")
    x = model.chips_to_tensor(np.stack([f.chip for f in faces]))
    result = engine(x, torch.as_tensor(np.asarray(references, dtype=np.float32)), allow_self_reference=True)
    agg = result.aggregate("mean").numpy().astype(np.float64)
    return check_finite(agg, model.spec.name, [f.source for f in faces], "LEAM map")


def budget_pixels(box: tuple[int, int, int, int], photo_shape: tuple[int, int], percent: float) -> int:
    """⌈``percent`` % of the face box's pixels⌉ (box (left, top, right, bottom) clipped to the photo)."""
    left, top, right, bottom = box
    height, width = photo_shape
    area = max(0, min(right, width) - max(left, 0)) * max(0, min(bottom, height) - max(top, 0))
    if area == 0:
        raise ValueError(f"face box {box} lies outside the {width}x{height} photo")
    return top_count(area, percent)


def photo_map(
    chip_maps: Mapping[str, np.ndarray], warps: Mapping[str, Warp], photo_shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(values, region): the mean of the models' chip maps drawn onto the photo (H, W) float, and the
    pixels at least one model's chip covers (H, W) bool."""
    if not chip_maps:
        raise ValueError("expected at least one model's map")
    values, region = None, None
    for m in chip_maps:  # one model at a time (a running sum adds as np.mean does: a large photo holds two maps)
        drawn = warp_to_photo(chip_maps[m], warps[m], photo_shape)
        values = drawn if values is None else np.add(values, drawn, out=values)
        seen = footprint(warps[m], photo_shape)
        region = seen if region is None else np.logical_or(region, seen, out=region)
    return np.divide(values, len(chip_maps), out=values), region


def top_pixels(values: np.ndarray, region: np.ndarray, count: int) -> np.ndarray:
    """(H, W) bool: the ``count`` highest ``values`` inside ``region``, ties in raster order."""
    _check_count(region, count)
    inside = np.flatnonzero(region)  # in raster order: ranking only these keeps the ties' order
    ranked = pixel_ranking(np.asarray(values).ravel()[inside])
    mask = np.zeros(values.size, dtype=bool)
    mask[inside[ranked[:count]]] = True
    return mask.reshape(values.shape)


def random_pixels(region: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """(H, W) bool: ``count`` distinct pixels drawn uniformly from ``region``."""
    _check_count(region, count)
    return random_mask(region.shape, count, rng, within=region)


def _check_count(region: np.ndarray, count: int) -> None:
    if not 0 < count <= int(region.sum()):
        raise ValueError(f"cannot choose {count} pixels from a region of {int(region.sum())}")


def consensus_map(chip_maps: Sequence[Mapping[str, np.ndarray]], warps: Sequence[Mapping[str, Warp]],
                  frame: str) -> np.ndarray:
    """The person's consensus map in the ``frame`` model's chip frame: the mean, at each pixel, of
    every photo's and model's map carried there (over the maps that cover the pixel; 0 where none).

    ``chip_maps[i][m]`` is photo i's aggregate map of model m and ``warps[i][m]`` its warp."""
    total = np.zeros(warps[0][frame].size)
    cover = np.zeros_like(total)
    for maps, ws in zip(chip_maps, warps):
        for m, values in maps.items():
            total += chip_to_chip(values, ws[m], ws[frame])
            cover += chip_to_chip(np.ones_like(values), ws[m], ws[frame])
    return np.where(cover > 1e-9, total / np.maximum(cover, 1e-9), 0.0)
