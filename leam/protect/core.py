"""Protect one photo against an ensemble of models at one or more budgets, by several methods.

Every method (``leam.protect.methods``: leam, consensus, random, black, dense, one file each) works at
the same budget of k pixels (``budget_pixels``: ⌈p % of the face box⌉). ``protect_photo`` draws the
ensemble's LEAM map onto the photo (``photo_map``), lets each method choose its k pixels
(``Method.pixels``), optimises the content of every optimised method's pixels in one batch of
projected gradient steps (``pgd``), then lets the other methods make their versions (``Method.protect``).

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
from leam.protect.mask import budget_pixels, photo_map
from leam.protect.methods import Protected, get_method, list_methods, method_spec
from leam.protect.optimise import OBJECTIVES, PRECISIONS, Target, pgd, quantise
from leam.protect.person import PersonPhoto, stable_seed
from leam.protect.warp import ChipSampler, reduce_factor

METHODS = tuple(list_methods())  # the methods registered when leam loads (``list_methods`` for the current ones)
OPTIMISED = tuple(m for m in METHODS if method_spec(m).optimised)
__all__ = ["METHODS", "OPTIMISED", "ProtectConfig", "Protected", "Scene", "crop_box", "protect_photo"]


@dataclass(frozen=True)
class ProtectConfig:
    epsilon: float = 255.0  # L∞ bound inside the mask, grey levels in [1, 255] (255: any content)
    steps: int = 50
    step_size: float | None = None  # default 2.5 ε / steps
    seed: int = 0
    jpeg_quality: int = 95
    objective: str = "margin"  # or "cosine" (``leam.protect.optimise.Target.score``)
    precision: str = "float32"  # of the networks during optimisation; "bfloat16" is ~2x faster on CPUs with bf16

    def __post_init__(self) -> None:
        if not 1 <= self.epsilon <= 255:  # pixels move by whole grey levels (``quantise``): below 1, by none
            raise ValueError(f"expected epsilon in [1, 255] grey levels (a pixel moves by whole grey levels, "
                             f"⌊epsilon⌋ at most: below 1 nothing would change), got {self.epsilon}")
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
class Scene:
    """What a method sees of one photo: the photo and its ensemble, the ensemble's map drawn onto it
    (``values``, (H, W) float), the pixels the models see (``region``, (H, W) bool), the person's
    consensus map drawn onto it (or None), the settings; ``optimise`` and ``seed`` for methods that
    optimise their own versions."""

    photo: PersonPhoto
    ensemble: Sequence[FaceModel]
    references: Mapping[str, np.ndarray]
    values: np.ndarray
    region: np.ndarray
    consensus: np.ndarray | None
    config: ProtectConfig

    def seed(self, *parts: str) -> int:
        """A seed for torch's generator from the settings' seed, the photo's name and ``parts``."""
        return stable_seed(self.config.seed, self.photo.name, *parts)[1]

    def optimise(self, masks: Sequence[np.ndarray], eps: Sequence[float], l2: Sequence[float] | None, seed: int,
                 exact_bound: bool = True) -> list[tuple[np.ndarray, float]]:
        """Full-size uint8 photos and objectives of one ``pgd`` batch over ``masks`` (``_optimise``)."""
        return _optimise(self.photo, self.ensemble, self.references, masks, eps, l2, self.config, self.region,
                         seed, exact_bound)


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
    unknown = [m for m in methods if m not in list_methods()]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; expected some of {tuple(list_methods())}")
    for m in methods:
        if method_spec(m).needs_consensus and consensus is None:
            raise ValueError(f"method {m!r} needs the person's consensus map")
    names = [m.spec.name for m in ensemble]
    warps = {n: photo.aligned[n].warp for n in names}
    shape = photo.photo.shape[:2]
    values, region = photo_map({n: chip_maps[n] for n in names}, warps, shape)
    scene = Scene(photo, ensemble, references, values, region, consensus, config)
    masks = _masks(scene, budgets, methods, "+".join(names))
    out: list[Protected] = []
    jobs = [(m, b) for b in budgets for m in methods if method_spec(m).optimised]
    if jobs:
        done = scene.optimise([masks[j] for j in jobs], [config.epsilon] * len(jobs), None,
                              scene.seed("+".join(names), "pgd"))
        for (m, b), (pixels, obj) in zip(jobs, done):
            out.append(Protected(m, b, masks[m, b], pixels, obj, config.epsilon))
    for m in list_methods():  # the others in registration order (black before dense)
        if m in methods and not method_spec(m).optimised:
            out += get_method(m).protect(scene, masks, budgets, out)
    return out


def _masks(scene: Scene, budgets: Sequence[float], methods: Sequence[str], ensemble: str
           ) -> dict[tuple[str, float], np.ndarray]:
    """{(method, budget): pixels} of every method whose pixels ``methods`` change, in registration order;
    at each budget one generator (seeded by photo, ensemble and budget) serves the methods that draw."""
    sources = {method_spec(m).pixels_from or m for m in methods}
    shape = scene.photo.photo.shape[:2]
    masks = {}
    for b in budgets:
        k = min(budget_pixels(scene.photo.face.box, shape, b), int(scene.region.sum()))
        rng = np.random.default_rng(stable_seed(scene.config.seed, scene.photo.name, ensemble, f"{b:g}"))
        for m in list_methods():
            if m in sources:
                masks[m, b] = get_method(m).pixels(scene, k, rng)
    return masks


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
              precision=config.precision, source=str(photo.path))
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
