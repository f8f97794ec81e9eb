"""Deletion and insertion curves: how a face's similarity to its reference changes as the pixels a ranking
puts first are removed (deletion) or revealed on a removed face (insertion). numpy, scipy and scikit-image only.

* a ranking is a permutation of the chip's flat pixel indices, best first: ``pixel_order`` of a map,
  ``random_order`` (optionally inside the face first), or a fixed ``centre_prior`` map;
* a fill says what removed pixels show (``FILLS``): ``black``; ``mean``, the model's mean colour (the colour its
  normalisation maps to zero, ``ModelSpec.mean_colour``); ``blur``, a Gaussian blur of the whole chip
  (sigma ``BLUR_SIGMA_FRACTION`` of the chip's side); ``inpaint``, biharmonic inpainting of the removed pixels
  from the others (scikit-image), built per mask;
* ``curves`` embeds every image of every ranking, fill, direction and fraction in batches, each distinct
  image once, and returns one row per point: cosine to the reference and whether the pair still matches;
* per curve: ``curve_auc`` (lower for deletion / higher for insertion = more faithful) and, for deletion,
  ``pixels_to_unmatch``.

At fraction f, ``pixel_count(H·W, f)`` pixels are removed or revealed: f·H·W rounded half up.

>>> order = pixel_order(np.array([[0.1, 0.9], [0.5, 0.9]]))
>>> order.tolist()
[1, 3, 2, 0]
>>> curve_images(np.full((2, 2, 3), 200, np.uint8), order, (0.0, 0.5), "deletion", "black", None)[1, ..., 0].tolist()
[[200, 0], [200, 0]]
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy.ndimage import gaussian_filter
from skimage.restoration import inpaint_biharmonic

from leam.metrics.occlusion import cosine
from leam.metrics.regions import pixel_ranking
from leam.metrics.verification import pair_distances

FRACTIONS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.10, 0.15, 0.20, 0.30, 0.50)
FILLS = ("black", "mean", "blur", "inpaint")
DIRECTIONS = ("deletion", "insertion")
BLUR_SIGMA_FRACTION = 0.05  # the blur fill's Gaussian sigma, per axis, as a share of the chip's side (7.5 px at 150)

Embed = Callable[[np.ndarray], np.ndarray]  # (N, H, W, 3) uint8 chips -> (N, D) embeddings


# ------------------------------------------------------------------------------------- rankings


def pixel_order(values: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Flat indices of an (H, W) map, highest value first; ties in raster order (the lower flat index first)
    (``leam.metrics.regions.pixel_ranking``), or with ``rng`` in a random order (so that a blank map, or the
    zeros of a map's ReLU, rank like random pixels instead of the chip's top rows). NaN and infinite values
    are refused.

    >>> pixel_order(np.array([[1, 3], [3, 2]])).tolist()
    [1, 2, 3, 0]
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"expected a map of shape (H, W), got shape {values.shape}")
    if np.isnan(values).any():
        raise ValueError(f"the map holds {int(np.isnan(values).sum())} NaN values; cannot rank its pixels")
    if rng is None:
        return pixel_ranking(values)
    if not np.isfinite(values).all():
        raise ValueError("map holds NaN or infinite values")
    return np.lexsort((rng.permutation(values.size), -values.ravel()))


def random_order(shape: tuple[int, int], rng: np.random.Generator, within: np.ndarray | None = None) -> np.ndarray:
    """A uniformly random order of the flat pixels of ``shape``; with ``within`` (an (H, W) bool mask, e.g. the
    face), its pixels first (in random order), then the others (in random order)."""
    n = int(shape[0]) * int(shape[1])
    if within is None:
        return rng.permutation(n)
    within = np.asarray(within)
    if within.shape != tuple(shape) or within.dtype != bool:
        raise ValueError(f"expected a boolean mask of shape {tuple(shape)}, got {within.dtype} {within.shape}")
    flat = within.ravel()
    return np.concatenate([rng.permutation(np.flatnonzero(flat)), rng.permutation(np.flatnonzero(~flat))])


def centre_prior(shape: tuple[int, int], sigma_fraction: float = 0.25) -> np.ndarray:
    """An (H, W) Gaussian on the chip's centre, sigma ``sigma_fraction`` of the height (rows) and width (columns);
    rank it with ``pixel_order``."""
    h, w = int(shape[0]), int(shape[1])
    if sigma_fraction <= 0:
        raise ValueError(f"expected sigma_fraction > 0, got {sigma_fraction}")
    y = (np.arange(h) - (h - 1) / 2) / (sigma_fraction * h)
    x = (np.arange(w) - (w - 1) / 2) / (sigma_fraction * w)
    return np.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2))


# ------------------------------------------------------------------------------------- fills


def pixel_count(n_pixels: int, fraction: float) -> int:
    """How many of ``n_pixels`` a fraction removes or reveals: ``fraction · n_pixels`` rounded half up."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"expected a fraction in [0, 1], got {fraction}")
    return min(n_pixels, int(math.floor(fraction * n_pixels + 0.5 + 1e-9)))


def removed_image(chip: np.ndarray, fill: str, mean_colour: np.ndarray | Sequence[float] | None) -> np.ndarray:
    """What every pixel of the (H, W, 3) uint8 chip shows once removed, as an (H, W, 3) uint8 image.

    ``mean_colour``: the model's mean colour (RGB, [0, 255]; rounded half up to uint8), or None for the chip's own
    (per-channel) mean colour, as for a model that prewhitens each image. ``inpaint`` with everything removed
    has nothing to inpaint from: its removed image is the mean fill.
    """
    _check_chip(chip)
    if fill == "black":
        return np.zeros_like(chip)
    if fill in ("mean", "inpaint"):
        colour = chip.reshape(-1, 3).mean(0) if mean_colour is None else np.asarray(mean_colour, np.float64)
        if colour.shape != (3,):
            raise ValueError(f"expected a mean colour of 3 values (RGB), got shape {colour.shape}")
        return np.broadcast_to(_to_uint8(colour), chip.shape).copy()
    if fill == "blur":
        h, w = chip.shape[:2]
        sigma = (BLUR_SIGMA_FRACTION * h, BLUR_SIGMA_FRACTION * w, 0)
        return _to_uint8(gaussian_filter(chip.astype(np.float64), sigma, mode="nearest"))
    raise ValueError(f"expected a fill in {FILLS}, got {fill!r}")


def inpaint(chip: np.ndarray, mask: np.ndarray, mean_colour: np.ndarray | Sequence[float] | None = None) -> np.ndarray:
    """The (H, W, 3) uint8 chip with the pixels of the (H, W) bool ``mask`` inpainted from the others
    (``skimage.restoration.inpaint_biharmonic``); the others unchanged. All masked: the mean fill."""
    _check_chip(chip)
    mask = np.asarray(mask)
    if mask.shape != chip.shape[:2] or mask.dtype != bool:
        raise ValueError(f"expected a boolean mask of shape {chip.shape[:2]}, got {mask.dtype} {mask.shape}")
    if not mask.any():
        return chip.copy()
    if mask.all():
        return removed_image(chip, "mean", mean_colour)
    out = _to_uint8(inpaint_biharmonic(chip, mask, channel_axis=-1) * 255.0)
    out[~mask] = chip[~mask]
    return out


def curve_images(
    chip: np.ndarray,
    order: np.ndarray,
    fractions: Sequence[float],
    direction: str,
    fill: str,
    mean_colour: np.ndarray | Sequence[float] | None,
) -> np.ndarray:
    """The (F, H, W, 3) uint8 images of one curve.

    Deletion: the first ``pixel_count(H·W, f)`` pixels of ``order`` show the fill. Insertion: the removed chip
    with those pixels of the original revealed. Inpaint: deletion inpaints the deleted pixels from the rest;
    insertion inpaints the unrevealed pixels from the revealed ones (nothing revealed: the mean fill).
    """
    _check_direction(direction)
    return np.stack([_curve_image(chip, order, k, direction, fill, mean_colour, removed)
                     for k, removed in _curve_plan(chip, order, fractions, fill, mean_colour)])


def _curve_plan(chip, order, fractions, fill, mean_colour) -> list[tuple[int, np.ndarray]]:
    """(pixel count, removed image) per fraction, after checking the inputs."""
    _check_chip(chip)
    n = chip.shape[0] * chip.shape[1]
    _check_order(order, n)
    counts = [pixel_count(n, float(f)) for f in np.atleast_1d(np.asarray(fractions, np.float64))]
    removed = removed_image(chip, fill, mean_colour)  # for inpaint: unused, but the mean colour is checked
    return [(k, removed) for k in counts]


def _curve_image(chip, order, k, direction, fill, mean_colour, removed) -> np.ndarray:
    mask = np.zeros(chip.shape[0] * chip.shape[1], dtype=bool)
    mask[order[:k]] = True
    mask = mask.reshape(chip.shape[:2])
    hidden = mask if direction == "deletion" else ~mask
    if fill == "inpaint":
        return inpaint(chip, hidden, mean_colour)
    out = chip.copy()
    out[hidden] = removed[hidden]
    return out


# ------------------------------------------------------------------------------------- the curves


def matches(embeddings: np.ndarray, reference: np.ndarray, threshold: float, metric: str) -> np.ndarray:
    """Whether each of the (N, D) embeddings verifies against the (D,) reference, by leam's one rule
    (``leam.study.verification``, ``leam.protect.evaluate``): same person when the pair's distance
    (``pair_distances``: Euclidean, or 1 − cosine) is below the threshold as a distance (cosine t → 1 − t)."""
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"expected metric 'euclidean' or 'cosine', got {metric!r}")
    embeddings = np.atleast_2d(embeddings)
    stacked = np.vstack([np.asarray(reference).reshape(1, -1), embeddings])
    pairs = np.stack([np.arange(1, len(stacked)), np.zeros(len(embeddings), np.int64)], axis=1)
    limit = 1.0 - threshold if metric == "cosine" else threshold
    return pair_distances(stacked, pairs, metric) < limit


def curves(
    embed: Embed,
    chip: np.ndarray,
    reference: np.ndarray,
    orders: Mapping[str, np.ndarray],
    fills: Sequence[str],
    threshold: float,
    metric: str,
    mean_colour: np.ndarray | Sequence[float] | None,
    fractions: Sequence[float] = FRACTIONS,
    directions: Sequence[str] = DIRECTIONS,
    batch: int = 64,
    base: np.ndarray | None = None,
) -> list[dict]:
    """Rows {"method", "fill", "direction", "fraction", "cosine", "match"} for every ranking of ``orders``
    (by method name), fill, direction and fraction, in that nesting order.

    Images are built curve by curve and embedded in calls of ``batch`` images, each distinct image once
    (deletion at fraction 0 is the chip itself for every ranking and fill, insertion at 0 the removed chip
    of each fill). ``base``: the chip's (D,) embedding when the caller has it (that forward is saved).
    """
    if batch < 1:
        raise ValueError(f"expected batch >= 1, got {batch}")
    for fill in fills:
        if fill not in FILLS:
            raise ValueError(f"expected fills in {FILLS}, got {fill!r}")
    for direction in directions:
        _check_direction(direction)
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"expected metric 'euclidean' or 'cosine', got {metric!r}")
    fractions = tuple(float(f) for f in fractions)
    cache = _EmbeddingCache(embed, batch)
    if base is not None:
        cache.known(chip, np.asarray(base))
    points: list[tuple[str, str, str, float, bytes]] = []
    for method, order in orders.items():
        for fill in fills:
            plan = _curve_plan(chip, order, fractions, fill, mean_colour)
            for direction in directions:
                for f, (k, removed) in zip(fractions, plan):
                    image = _curve_image(chip, np.asarray(order), k, direction, fill, mean_colour, removed)
                    points.append((method, fill, direction, f, cache.add(image)))
    embeddings = cache.finish()
    keys = [p[-1] for p in points]
    got = np.stack([embeddings[k] for k in keys]) if keys else np.empty((0, np.size(reference)))
    cos = cosine(got, reference) if keys else np.empty(0)
    same = matches(got, reference, threshold, metric) if keys else np.empty(0, bool)
    return [{"method": m, "fill": fl, "direction": d, "fraction": f, "cosine": float(c), "match": bool(s)}
            for (m, fl, d, f, _), c, s in zip(points, cos, same)]


class _EmbeddingCache:
    """Distinct images (by content) queued and embedded in calls of ``batch``; embeddings by content key."""

    def __init__(self, embed: Embed, batch: int) -> None:
        self.embed, self.batch = embed, batch
        self.embeddings: dict[bytes, np.ndarray] = {}
        self.pending: dict[bytes, np.ndarray] = {}

    @staticmethod
    def key(image: np.ndarray) -> bytes:
        return hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=20).digest()

    def known(self, image: np.ndarray, embedding: np.ndarray) -> None:
        self.embeddings[self.key(image)] = embedding.reshape(-1)

    def add(self, image: np.ndarray) -> bytes:
        k = self.key(image)
        if k not in self.embeddings and k not in self.pending:
            self.pending[k] = image
            if len(self.pending) == self.batch:
                self.flush()
        return k

    def flush(self) -> None:
        if self.pending:
            out = np.asarray(self.embed(np.stack(list(self.pending.values()))))
            if out.ndim != 2 or len(out) != len(self.pending):
                raise ValueError(f"expected embed to return ({len(self.pending)}, D) embeddings, got shape {out.shape}")
            self.embeddings.update(zip(self.pending, out))
            self.pending = {}

    def finish(self) -> dict[bytes, np.ndarray]:
        self.flush()
        return self.embeddings


def forwards_per_photo(
    n_methods: int,
    n_fills: int | Sequence[str],
    fractions: Sequence[float] = FRACTIONS,
    directions: Sequence[str] = DIRECTIONS,
    base: bool = False,
) -> int:
    """How many images ``curves`` embeds for one photo when no two rankings share a prefix and distinct
    fractions remove distinct pixel counts (a chip large enough): one per ranking, fill, direction and
    fraction strictly between 0 and 1, plus the chip itself (unless ``base``: its embedding given) for
    deletion at 0 or insertion at 1, plus one removed chip per fill for insertion at 0 or deletion at 1.
    ``n_fills``: a count, or the fill names (exact then: "mean" and "inpaint" share their removed chip).

    >>> forwards_per_photo(10, 4), forwards_per_photo(10, FILLS), forwards_per_photo(10, FILLS, base=True)
    (885, 884, 883)
    """
    names = None if isinstance(n_fills, (int, np.integer)) else set(n_fills)
    n_curves = int(n_fills) if names is None else len(names)
    if n_methods < 1 or n_curves < 1:
        return 0
    n_removed = n_curves if names is None else len(names - ({"inpaint"} if "mean" in names else set()))
    has, ways = set(map(float, fractions)), set(directions)
    n_mid = sum(1 for f in has if 0 < f < 1)
    original = not base and (("deletion" in ways and 0.0 in has) or ("insertion" in ways and 1.0 in has))
    removed = ("insertion" in ways and 0.0 in has) or ("deletion" in ways and 1.0 in has)
    return n_methods * n_curves * len(ways) * n_mid + int(original) + n_removed * int(removed)


# ------------------------------------------------------------------------------------- per curve


def curve_auc(fractions: Sequence[float], cosines: Sequence[float]) -> float:
    """Area under the cosine curve, the fraction axis scaled to [0, 1] (divided by the last fraction) and the
    cosine clipped to [0, 1], by the trapezoid rule. Lower deletion AUC (similarity lost with few pixels)
    and higher insertion AUC (regained with few) mean a more faithful ranking. NaN cosines give NaN.

    >>> curve_auc([0.0, 0.25, 0.5], [1.0, 0.5, 0.0])
    0.5
    """
    x = np.asarray(fractions, np.float64)
    y = np.asarray(cosines, np.float64)
    if x.ndim != 1 or x.shape != y.shape or len(x) < 2:
        raise ValueError(f"expected fractions and cosines of the same length >= 2, got shapes {x.shape} and {y.shape}")
    if not (np.diff(x) > 0).all() or x[-1] <= 0:
        raise ValueError(f"expected increasing fractions ending above 0, got {x.tolist()}")
    return float(np.trapezoid(np.clip(y, 0.0, 1.0), x / x[-1]))


def pixels_to_unmatch(fractions: Sequence[float], match: Sequence[bool]) -> tuple[float, bool]:
    """The smallest fraction whose deletion makes the pair fail verification, and whether censored: a pair
    that never fails gives (the last fraction, True); one that fails at fraction 0, (0.0, False).

    >>> pixels_to_unmatch([0.0, 0.01, 0.02], [True, True, False])
    (0.02, False)
    """
    x = np.asarray(fractions, np.float64)
    m = np.asarray(match, dtype=bool)
    if x.ndim != 1 or x.shape != m.shape or len(x) < 1:
        raise ValueError(f"expected fractions and matches of the same length >= 1, got shapes {x.shape} and {m.shape}")
    if not (np.diff(x) > 0).all():
        raise ValueError(f"expected increasing fractions, got {x.tolist()}")
    failed = np.flatnonzero(~m)
    return (float(x[failed[0]]), False) if len(failed) else (float(x[-1]), True)


# ------------------------------------------------------------------------------------- checks


def _check_chip(chip: np.ndarray) -> None:
    if not isinstance(chip, np.ndarray) or chip.ndim != 3 or chip.shape[2] != 3 or chip.dtype != np.uint8:
        got = f"{chip.dtype} {chip.shape}" if isinstance(chip, np.ndarray) else type(chip).__name__
        raise ValueError(f"expected a uint8 chip of shape (H, W, 3), got {got}")
    if chip.shape[0] < 1 or chip.shape[1] < 1:
        raise ValueError(f"expected a chip of at least one pixel, got shape {chip.shape}")


def _check_order(order: np.ndarray, n: int) -> None:
    order = np.asarray(order)
    ok = order.shape == (n,) and np.issubdtype(order.dtype, np.integer)
    if ok and n:
        ok = order.min() >= 0 and order.max() < n and (np.bincount(order, minlength=n) == 1).all()
    if not ok:
        raise ValueError(f"expected an order: a permutation of the {n} flat pixel indices, got {order.dtype} "
                         f"{order.shape}")


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"expected a direction in {DIRECTIONS}, got {direction!r}")


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """Rounded half up (40.5 → 41), clipped to [0, 255]."""
    return np.clip(np.floor(np.asarray(values, np.float64) + 0.5), 0, 255).astype(np.uint8)
