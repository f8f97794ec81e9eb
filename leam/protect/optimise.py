"""Projected gradient steps on the photo: push its embeddings away from the person's references.

For one photo x (H, W, 3) in [0, 255] and V variants (a mask M_v, an L∞ bound ε_v, optionally an L2
bound ρ_v), each variant's perturbation δ_v lives in the photo frame and is zero outside its mask.
Every model m of the ensemble sees x + δ_v through its own differentiable warp (``ChipSampler``),
and the objective, minimised, is the mean over models and over the model's reference embeddings r of

    margin:  1 − d_m(f_m(chip_m(x + δ_v)), r) / t_m     (default)
    cosine:  cos(f_m(chip_m(x + δ_v)), r)

with d_m the model's verification distance (Euclidean, or 1 − cos) and t_m its threshold: the margin
is > 0 while the pair verifies and < 0 once it does not, in the same unit for every model, so no
model of the ensemble is neglected because its cosines span a narrower range (dlib's do).

Each step (PGD, Madry et al. 2018): δ ← δ − α_t · sign(∇δ), α_t decaying linearly from 2α to 0
(mean α = 2.5 ε / steps by default), then the projection: δ ← δ · M, clipped
to [−ε, ε], to x + δ ∈ [0, 255], and scaled down to ‖δ‖₂ ≤ ρ (when given; scaling keeps the L∞
bound, so the result satisfies both, though it is not the Euclidean projection onto their
intersection). δ starts uniformly in [−ε, ε] inside the mask (seeded). The δ with the lowest
objective seen over the steps (and after the last) is kept. ``quantise`` rounds x + δ to uint8
with the bound kept exactly: pixels outside the mask keep their values, those inside move at most
⌊ε⌋ grey levels.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from leam._torch_state import preserved_state
from leam.models import FaceModel, check_finite
from leam.protect.warp import ChipSampler

OBJECTIVES = ("cosine", "margin")
PRECISIONS = ("float32", "bfloat16")


@dataclass
class Target:
    """One model of the ensemble for one photo: the net, its warp sampler, its references (R, D)."""

    model: FaceModel
    sampler: ChipSampler
    references: torch.Tensor

    def score(self, embeddings: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
        """(V,) mean over the references of cos(e, r) ("cosine"), or of 1 − d(e, r) / t ("margin": d
        the model's verification distance, t its threshold; > 0 while a pair verifies, < 0 after)."""
        refs = self.references
        if kind == "cosine" or (kind == "margin" and self.model.spec.threshold_metric == "cosine"):
            cos = F.cosine_similarity(embeddings[:, None, :], refs[None], dim=2)
            if kind == "cosine":
                return cos.mean(1)
            return (1.0 - (1.0 - cos) / (1.0 - self.model.spec.threshold)).mean(1)
        if kind == "margin":
            dist = (embeddings[:, None, :] - refs[None]).pow(2).sum(2).clamp_min(1e-12).sqrt()
            return (1.0 - dist / self.model.spec.threshold).mean(1)
        raise ValueError(f"expected an objective in {OBJECTIVES}, got {kind!r}")


@dataclass
class PGDResult:
    photos: np.ndarray  # (V, H, W, 3) float64, x + δ before quantisation
    objective: np.ndarray  # (V,) the kept δ's objective (mean cosine to the references)
    start_objective: float  # the unperturbed photo's objective
    history: np.ndarray  # (steps + 1, V) objective of the current δ at each step


def make_targets(models: Sequence[FaceModel], faces: Sequence, references: Sequence[np.ndarray]) -> list[Target]:
    """Targets for one photo: ``faces[k]`` (an ``AlignedFace``) and ``references[k]`` (R, D) of ``models[k]``."""
    return [Target(m, ChipSampler(f.warp, f.photo_shape), torch.as_tensor(np.atleast_2d(r), dtype=torch.float32))
            for m, f, r in zip(models, faces, references)]


def objective(targets: Sequence[Target], photos: torch.Tensor, kind: str = "cosine",
              precision: str = "float32", source: str = "the photo") -> torch.Tensor:
    """(V,) mean over the targets of their ``score`` of ``photos`` (V, 3, H, W); the networks run in
    ``precision`` ("bfloat16": CPU autocast, ~2x faster where the CPU has bf16 units), the scores in float32.
    ``NonFiniteError`` (naming the model and ``source``) when an embedding or a score holds NaN or Inf."""
    if precision not in PRECISIONS:
        raise ValueError(f"expected a precision in {PRECISIONS}, got {precision!r}")
    total = photos.new_zeros(photos.shape[0])
    for t in targets:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
            emb = t.model.net(t.sampler(photos))
        score = t.score(emb.float(), kind)
        _check_finite(emb, t.model.spec.name, source, "embedding while protecting")
        _check_finite(score, t.model.spec.name, source, f"{kind} objective while protecting")
        total = total + score
    return total / len(targets)


def _check_finite(values: torch.Tensor, model: str, source: str, what: str) -> None:
    """``check_finite`` of all of ``values`` as one row named ``source`` (one cheap test when they are finite)."""
    if not bool(torch.isfinite(values).all()):
        check_finite(values.detach().float().reshape(1, -1).cpu().numpy(), model, [source], what)


def pgd(
    photo: np.ndarray,
    masks: np.ndarray,
    epsilon: Sequence[float],
    targets: Sequence[Target],
    steps: int = 50,
    step_size: Sequence[float] | None = None,
    l2: Sequence[float | None] | None = None,
    seed: int = 0,
    kind: str = "margin",
    decay: bool = True,
    precision: str = "float32",
    source: str = "the photo",
) -> PGDResult:
    """Optimise V perturbations of ``photo`` (H, W, 3) uint8 under ``masks`` (V, H, W) bool.

    ``epsilon`` (V,) L∞ bounds in grey levels (255: any content); ``step_size`` (V,) the mean α per
    step (default 2.5 ε / steps), decaying linearly from 2α to 0 over the steps when ``decay``;
    ``l2`` (V,) optional L2 bounds in grey levels (None: none); ``kind``: the objective, "margin"
    or "cosine" (``Target.score``); ``precision`` of the networks' forward and backward passes
    (``objective``; the kept δ is chosen on those objectives). An embedding, objective or gradient
    that holds NaN or Inf raises ``NonFiniteError`` naming the model(s) and ``source`` (the photo):
    no photo is made from it.
    """
    masks = np.asarray(masks, dtype=bool)
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
        raise ValueError(f"expected a (H, W, 3) uint8 photo, got {photo.dtype} {photo.shape}")
    if masks.ndim != 3 or masks.shape[1:] != photo.shape[:2]:
        raise ValueError(f"expected masks of shape (V, {photo.shape[0]}, {photo.shape[1]}), got {masks.shape}")
    n = masks.shape[0]
    eps = _per_variant(epsilon, n, "epsilon")
    if (eps <= 0).any() or (eps > 255).any():
        raise ValueError(f"expected epsilon in (0, 255], got {eps.tolist()}")
    if steps < 1:
        raise ValueError(f"expected steps >= 1, got {steps}")
    alpha = _per_variant(step_size, n, "step_size") if step_size is not None else 2.5 * eps / steps
    radius = None if l2 is None else torch.tensor([np.inf if r is None else float(r) for r in l2])

    x = torch.from_numpy(photo).permute(2, 0, 1)[None].double()
    m = torch.from_numpy(masks)[:, None].double()
    e = torch.from_numpy(eps).view(-1, 1, 1, 1)
    a = torch.from_numpy(alpha).view(-1, 1, 1, 1)
    gen = torch.Generator().manual_seed(seed)
    delta = _project((torch.rand(n, 3, *photo.shape[:2], generator=gen, dtype=torch.float64) * 2 - 1) * e, x, m, e,
                     radius)
    best, best_obj = delta.clone(), torch.full((n,), np.inf, dtype=torch.float64)
    history = []
    with ExitStack() as stack:
        for t in targets:
            stack.enter_context(preserved_state(t.model.net, eval_mode=True, freeze=True))
        with torch.no_grad():
            start = float(objective(targets, x.float(), kind, precision, source)[0])
        for step in range(steps + 1):
            d = delta.float().requires_grad_(step < steps)
            with torch.set_grad_enabled(step < steps):
                obj = objective(targets, x.float() + d, kind, precision, source)
                grad = torch.autograd.grad(obj.sum(), d)[0].double() if step < steps else None
            if grad is not None:  # sign(NaN) is NaN: one NaN would spread over the photo
                _check_finite(grad, "+".join(t.model.spec.name for t in targets), source, "gradient while protecting")
            obj = obj.detach().double()
            history.append(obj.numpy().copy())
            better = obj < best_obj
            best[better], best_obj[better] = delta[better], obj[better]
            if grad is not None:
                rate = 2.0 * (1.0 - step / steps) if decay else 1.0
                delta = _project(delta - rate * a * grad.sign(), x, m, e, radius)
    photos = (x + best)[:, :, :, :].permute(0, 2, 3, 1).numpy()
    return PGDResult(photos, best_obj.numpy(), start, np.array(history))


def _project(delta: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, eps: torch.Tensor,
             radius: torch.Tensor | None) -> torch.Tensor:
    delta = torch.maximum(torch.minimum(delta * mask, eps), -eps)
    delta = (x + delta).clamp(0, 255) - x
    if radius is not None:
        norm = delta.flatten(1).norm(dim=1)
        scale = torch.where(norm > radius, radius / norm.clamp_min(1e-12), torch.ones_like(norm))
        delta = delta * scale.view(-1, 1, 1, 1)
    return delta


def _per_variant(values, n: int, name: str) -> np.ndarray:
    out = np.broadcast_to(np.asarray(values, dtype=np.float64), (n,)).copy() if np.ndim(values) == 0 else \
        np.asarray(values, dtype=np.float64)
    if out.shape != (n,):
        raise ValueError(f"expected {n} values of {name}, got {out.shape}")
    return out


def quantise(photo: np.ndarray, perturbed: np.ndarray, mask: np.ndarray, epsilon: float) -> np.ndarray:
    """(H, W, 3) uint8: ``perturbed`` rounded, equal to ``photo`` outside ``mask`` (H, W), and inside
    within ⌊``epsilon``⌋ grey levels of ``photo``."""
    x = photo.astype(np.int64)
    q = np.clip(np.rint(perturbed), 0, 255).astype(np.int64)
    bound = int(np.floor(epsilon + 1e-9))
    q = np.clip(q, x - bound, x + bound)
    return np.where(mask[..., None], q, x).astype(np.uint8)


def dense_epsilon(l2: float, pixels: int) -> float:
    """The L∞ bound at which a perturbation of ±ε on every channel of ``pixels`` pixels has L2 norm ``l2``."""
    return float(l2 / np.sqrt(3.0 * pixels)) if pixels > 0 else 0.0
