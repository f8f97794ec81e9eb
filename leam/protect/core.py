"""Protect one photo against an ensemble of models at one or more budgets, by several methods.

Methods, all at the same budget of k pixels (``budget_pixels``: ⌈p % of the face box⌉):

* ``leam``: the k most activated pixels of the photo's LEAM map (ensemble mean, ``photo_map``),
  their content optimised (``pgd``) within the L∞ bound ε;
* ``consensus``: the same with the person's consensus map (``consensus_map``) drawn onto the photo;
* ``random``: k pixels drawn uniformly from the pixels the models see, optimised the same way;
* ``black``: the ``leam`` pixels set to black, no optimisation (the reference study's occlusion);
* ``dense``: every pixel the models see, optimised under the L∞ bound ε_d = ‖δ_leam‖₂ / √(3n)
  (n such pixels) and the L2 bound ‖δ_leam‖₂ — the ``leam`` perturbation's L2 norm spread over the
  whole face (pixels no model sees are left alone: changing them cannot move an embedding). ε_d is
  the bound at which ±ε_d everywhere has exactly that norm; the optimiser need not use all of it, so
  a dense perturbation's L2 norm is at most the leam one's (the evaluation reports both).

Large photos are optimised on a crop around the pixels the models see (its corner on the box-reduction
grid of every model, so each model samples the crop exactly as it samples the photo).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from leam.face import Warp
from leam.models import FaceModel
from leam.protect.mask import budget_pixels, photo_map, random_pixels, top_pixels
from leam.protect.optimise import OBJECTIVES, PRECISIONS, Target, dense_epsilon, pgd, quantise
from leam.protect.person import PersonPhoto, stable_seed
from leam.protect.warp import ChipSampler, reduce_factor

METHODS = ("leam", "consensus", "random", "black", "dense")
OPTIMISED = ("leam", "consensus", "random")


@dataclass(frozen=True)
class ProtectConfig:
    epsilon: float = 255.0  # L∞ bound inside the mask, grey levels (255: any content)
    steps: int = 50
    step_size: float | None = None  # default 2.5 ε / steps
    seed: int = 0
    jpeg_quality: int = 95
    objective: str = "margin"  # or "cosine" (``leam.protect.optimise.Target.score``)
    precision: str = "float32"  # of the networks during optimisation; "bfloat16" is ~2x faster on CPUs with bf16

    def __post_init__(self) -> None:
        if not 0 < self.epsilon <= 255:
            raise ValueError(f"expected epsilon in (0, 255] grey levels, got {self.epsilon}")
        if self.steps < 1:
            raise ValueError(f"expected at least 1 step, got {self.steps}")
        if self.step_size is not None and not (math.isfinite(self.step_size) and self.step_size > 0):
            raise ValueError(f"expected a step size above 0 grey levels (a negative one makes the face more "
                             f"recognisable), got {self.step_size}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"expected an objective in {OBJECTIVES}, got {self.objective!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"expected a precision in {PRECISIONS}, got {self.precision!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"expected a JPEG quality in [1, 100], got {self.jpeg_quality}")


@dataclass
class Protected:
    """One protected version of a photo: the method, the budget, the mask and the uint8 pixels."""

    method: str
    budget: float
    mask: np.ndarray  # (H, W) bool, the pixels allowed to change
    pixels: np.ndarray  # (H, W, 3) uint8
    objective: float  # the optimised objective over the ensemble (ProtectConfig.objective; NaN for black)
    epsilon: float


def protect_photo(
    photo: PersonPhoto,
    ensemble: Sequence[FaceModel],
    references: Mapping[str, np.ndarray],
    chip_maps: Mapping[str, np.ndarray],
    budgets: Sequence[float],
    methods: Sequence[str] = ("leam",),
    config: ProtectConfig | None = None,
    consensus: np.ndarray | None = None,
) -> list[Protected]:
    """Protected versions of ``photo`` for every budget (percent) and method.

    ``chip_maps``: {model: (h, w) aggregate LEAM map} of this photo for each ensemble model;
    ``consensus``: the person's consensus map drawn onto this photo (H, W), needed by "consensus".
    """
    config = config or ProtectConfig()
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; expected some of {METHODS}")
    if "consensus" in methods and consensus is None:
        raise ValueError("method 'consensus' needs the person's consensus map")
    names = [m.spec.name for m in ensemble]
    warps = {n: photo.aligned[n].warp for n in names}
    shape = photo.photo.shape[:2]
    values, region = photo_map({n: chip_maps[n] for n in names}, warps, shape)
    masks: dict[tuple[str, float], np.ndarray] = {}
    for b in budgets:
        k = min(budget_pixels(photo.face.box, shape, b), int(region.sum()))
        rng = np.random.default_rng(stable_seed(config.seed, photo.name, "+".join(names), f"{b:g}"))
        if {"leam", "black", "dense"} & set(methods):
            masks["leam", b] = top_pixels(values, region, k)
        if "consensus" in methods:
            masks["consensus", b] = top_pixels(consensus, region, k)
        if "random" in methods:
            masks["random", b] = random_pixels(region, k, rng)

    out: list[Protected] = []
    jobs = [(m, b) for b in budgets for m in methods if m in OPTIMISED]
    if jobs:
        seed = stable_seed(config.seed, photo.name, "+".join(names), "pgd")[1]
        done = _optimise(photo, ensemble, references, [masks[j] for j in jobs], [config.epsilon] * len(jobs),
                         None, config, region, seed)
        for (m, b), (pixels, obj) in zip(jobs, done):
            out.append(Protected(m, b, masks[m, b], pixels, obj, config.epsilon))
    if "black" in methods:
        for b in budgets:
            pixels = photo.photo.copy()
            pixels[masks["leam", b]] = 0
            out.append(Protected("black", b, masks["leam", b], pixels, math.nan, 255.0))
    if "dense" in methods:
        out += _dense(photo, ensemble, references, masks, budgets, methods, out, config, region)
    return out


def _dense(photo, ensemble, references, masks, budgets, methods, done, config, region) -> list[Protected]:
    leam = {p.budget: p for p in done if p.method == "leam"}
    if len(leam) < len(budgets):  # the dense baseline matches the leam perturbation's L2 norm
        seed = stable_seed(config.seed, photo.name, "dense-leam")[1]
        missing = [b for b in budgets if b not in leam]
        res = _optimise(photo, ensemble, references, [masks["leam", b] for b in missing],
                        [config.epsilon] * len(missing), None, config, region, seed)
        for b, (pixels, obj) in zip(missing, res):
            leam[b] = Protected("leam", b, masks["leam", b], pixels, obj, config.epsilon)
    l2 = [float(np.linalg.norm(leam[b].pixels.astype(np.float64) - photo.photo)) for b in budgets]
    eps = [min(255.0, dense_epsilon(r, int(region.sum()))) for r in l2]
    keep = [i for i, e in enumerate(eps) if e > 0]
    out = []
    if keep:
        seed = stable_seed(config.seed, photo.name, "dense")[1]
        res = _optimise(photo, ensemble, references, [region] * len(keep), [eps[i] for i in keep],
                        [l2[i] for i in keep], config, region, seed, exact_bound=False)
        for i, (pixels, obj) in zip(keep, res):
            out.append(Protected("dense", budgets[i], region, pixels, obj, eps[i]))
    for i in set(range(len(budgets))) - set(keep):
        out.append(Protected("dense", budgets[i], region, photo.photo.copy(), math.nan, 0.0))
    return sorted(out, key=lambda p: budgets.index(p.budget))


def _optimise(photo: PersonPhoto, ensemble, references, masks, eps, l2, config: ProtectConfig, region, seed,
              exact_bound: bool = True) -> list[tuple[np.ndarray, float]]:
    """Run ``pgd`` on a crop around ``region``; return full-size uint8 photos and objectives."""
    factors = [reduce_factor(photo.aligned[m.spec.name].warp) for m in ensemble]
    top, left, bottom, right = crop_box(region, math.lcm(*factors))
    crop = np.ascontiguousarray(photo.photo[top:bottom, left:right])
    targets = []
    for m in ensemble:
        w = photo.aligned[m.spec.name].warp
        shifted = Warp((w.full @ np.array([[1.0, 0, left], [0, 1.0, top], [0, 0, 1.0]]))[:2], w.size)
        targets.append(Target(m, ChipSampler(shifted, crop.shape[:2]), _tensor(references[m.spec.name])))
    cropped_masks = np.stack([mk[top:bottom, left:right] for mk in masks])
    step = None if config.step_size is None else [config.step_size] * len(masks)
    res = pgd(crop, cropped_masks, eps, targets, config.steps, step, l2, seed, config.objective,
              precision=config.precision)
    out = []
    for v in range(len(masks)):
        bound = math.floor(eps[v] + 1e-9) if exact_bound else math.ceil(eps[v] - 1e-9)
        pixels = photo.photo.copy()
        pixels[top:bottom, left:right] = quantise(crop, res.photos[v], cropped_masks[v], bound)
        out.append((pixels, float(res.objective[v])))
    return out


def crop_box(region: np.ndarray, grid: int = 1, margin: int = 2) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) around ``region``'s pixels plus ``margin`` x ``grid`` pixels, its
    corners on multiples of ``grid`` (or the photo's edge)."""
    ys, xs = np.nonzero(region)
    h, w = region.shape
    pad = margin * grid
    top = max(0, (int(ys.min()) - pad) // grid * grid)
    left = max(0, (int(xs.min()) - pad) // grid * grid)
    bottom = min(h, -(-(int(ys.max()) + 1 + pad) // grid) * grid)
    right = min(w, -(-(int(xs.max()) + 1 + pad) // grid) * grid)
    return top, left, bottom, right


def _tensor(a: np.ndarray):
    import torch

    return torch.as_tensor(np.atleast_2d(a), dtype=torch.float32)
