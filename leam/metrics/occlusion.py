"""Validation by occlusion: black out the pixels a map marks, or as many random ones, and measure
how much the face's similarity to its reference drops."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from leam.metrics.regions import top_count, top_mask

Embed = Callable[[np.ndarray], np.ndarray]  # (N, H, W, 3) uint8 chips -> (N, D) embeddings


def occlude(chip: np.ndarray, mask: np.ndarray, value: int = 0) -> np.ndarray:
    """A copy of the (H, W, 3) chip with the pixels of the (H, W) ``mask`` set to ``value`` (black)."""
    if mask.shape != chip.shape[:2] or mask.dtype != bool:
        raise ValueError(f"expected a boolean mask of shape {chip.shape[:2]}, got {mask.dtype} {mask.shape}")
    out = chip.copy()
    out[mask] = value
    return out


def random_mask(
    shape: tuple[int, int], count: int, rng: np.random.Generator, within: np.ndarray | None = None
) -> np.ndarray:
    """``count`` distinct pixels drawn uniformly (from ``within`` when given, e.g. the face region)."""
    candidates = np.flatnonzero(within.ravel()) if within is not None else np.arange(shape[0] * shape[1])
    if count > candidates.size:
        raise ValueError(f"cannot draw {count} pixels from {candidates.size}")
    mask = np.zeros(shape[0] * shape[1], dtype=bool)
    mask[rng.choice(candidates, size=count, replace=False)] = True
    return mask.reshape(shape)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of (N, D) and (N, D) or (D,)."""
    a = np.atleast_2d(a).astype(np.float64)
    b = np.broadcast_to(np.atleast_2d(b), a.shape).astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def occlusion_drops(
    embed: Embed,
    chip: np.ndarray,
    reference: np.ndarray,
    values: np.ndarray | Mapping[str, np.ndarray],
    percents: tuple[float, ...] = (0.5, 1, 2, 5),
    seeds: int = 5,
    face_region: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    base: np.ndarray | None = None,
) -> list[dict]:
    """For each p: the cosine drop when the map's top-p % pixels are blacked out, and the mean drop
    over ``seeds`` random masks of the same size (anywhere, and inside ``face_region`` when given).

    ``values`` is one map, or several by name (e.g. per layer): all are scored in one batch of
    forwards, and their rows carry ``"layer"``: the name. ``base``: the (D,) embedding of the unoccluded
    chip when the caller has it (its forward is then saved), else the chip is embedded with the occluded
    ones. Returns rows {"percent", "kind", "drop"}; kind is "map", "random" or "random_face".
    """
    rng = rng or np.random.default_rng(0)
    named = dict(values) if isinstance(values, Mapping) else {None: values}
    shape = chip.shape[:2]
    batches: list[tuple[float, str, str | None, np.ndarray]] = []
    for p in percents:
        k = top_count(shape[0] * shape[1], p)
        batches += [(p, "map", name, top_mask(v, p)) for name, v in named.items()]
        batches += [(p, "random", None, random_mask(shape, k, rng)) for _ in range(seeds)]
        if face_region is not None:
            batches += [(p, "random_face", None, random_mask(shape, k, rng, face_region)) for _ in range(seeds)]
    occluded = [occlude(chip, m) for *_, m in batches]
    if base is None:
        embeddings = embed(np.stack([chip, *occluded]))
    else:
        embeddings = np.vstack([np.atleast_2d(base), embed(np.stack(occluded))]) if occluded else np.atleast_2d(base)
    cos = cosine(embeddings, reference)
    base = cos[0]
    rows: dict[tuple[float, str, str | None], list[float]] = {}
    for (p, kind, name, _), c in zip(batches, cos[1:]):
        rows.setdefault((p, kind, name), []).append(float(base - c))
    return [{"percent": p, "kind": kind, "drop": float(np.mean(d)), **({} if name is None else {"layer": name})}
            for (p, kind, name), d in rows.items()]
