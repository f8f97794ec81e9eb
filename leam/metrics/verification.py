"""Face-verification scores, pure functions of pair distances (numpy and scipy only: no model, no file).

* ``draw_pairs``: same-person and different-person index pairs drawn with a seed from identity sizes;
* 10-fold accuracy as LFW's protocol (``cross_validated_accuracy``): the threshold that maximises accuracy
  on nine folds (``best_threshold``) is tested on the tenth; the mean (and standard deviation) over the
  ten held-out folds. It needs a same and a different pair in every fold (``ten_fold_shortfall`` says why
  not otherwise);
* ROC AUC (the Mann-Whitney statistic: the chance a different pair lies further apart than a same pair,
  ties counting a half), the ROC curve, and TAR at FAR = 1e-3 when there are at least 1,000 different pairs;
* ``verification_metrics``: all of them for one model, with the accuracy at the model's own threshold and
  the median distances; ``pair_distances``: Euclidean or 1 − cosine distances of index pairs.

A pair is called "same" when its distance is below the threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from leam.errors import LeamError

N_FOLDS = 10
FAR = 1e-3


# ------------------------------------------------------------------------------------- the pairs


def draw_pairs(counts: np.ndarray, n_pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n_pairs`` same-person index pairs (n, 2) and as many different-person ones, drawn with ``seed``,
    for identities of ``counts`` photos each, laid out one after another (identity k's photos are
    ``starts[k] .. starts[k] + counts[k] - 1``).

    Same pairs are spread over identities: identities are shuffled and each in turn gives its next
    (shuffled) pair until ``n_pairs`` are drawn, so a person with 500 photos does not fill the set.
    With fewer same pairs, all of them are taken, and as many different pairs. Different pairs: two
    distinct identities, then one photo of each, uniformly; no pair twice.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if n_pairs < 1:
        raise ValueError(f"expected n_pairs >= 1, got {n_pairs}")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    rng = np.random.default_rng(seed)
    same = _same_pairs(starts, counts, min(n_pairs, available_same_pairs(counts)), rng)
    return same, _different_pairs(starts, counts, len(same), rng)


def available_same_pairs(counts: np.ndarray) -> int:
    """How many same-person pairs identities of ``counts`` photos hold."""
    counts = np.asarray(counts, dtype=np.int64)
    return int((counts * (counts - 1) // 2).sum())


def pair_folds(n: int) -> np.ndarray:
    """Pair i of each kind is in fold i mod ``N_FOLDS`` (the draw's order is random)."""
    return np.arange(n) % N_FOLDS


def _same_pairs(starts: np.ndarray, counts: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    pools = []
    for start, count in zip(starts, counts):
        a, b = np.triu_indices(count, 1)
        pools.append(rng.permutation(np.stack([a, b], 1) + start) if len(a) else np.empty((0, 2), int))
    order = rng.permutation(len(pools))
    taken, depth = [], 0
    while len(taken) < n:
        for k in order:
            if depth < len(pools[k]):
                taken.append(pools[k][depth])
                if len(taken) == n:
                    break
        depth += 1
    return np.array(taken, dtype=np.int64).reshape(-1, 2)


def _different_pairs(starts: np.ndarray, counts: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    total = int((counts.sum() ** 2 - (counts**2).sum()) // 2)
    n = min(n, total)
    if total <= 4 * n:  # a small folder: list them all and draw without replacement
        owner = np.repeat(np.arange(len(counts)), counts)
        a, b = np.triu_indices(len(owner), 1)
        keep = owner[a] != owner[b]
        pick = rng.choice(int(keep.sum()), size=n, replace=False)
        return np.stack([a[keep][pick], b[keep][pick]], 1).astype(np.int64)
    seen, taken = set(), []
    while len(taken) < n:
        i, j = rng.choice(len(counts), size=2, replace=False)
        pair = (int(starts[i] + rng.integers(counts[i])), int(starts[j] + rng.integers(counts[j])))
        key = (min(pair), max(pair))
        if key not in seen:
            seen.add(key)
            taken.append(pair)
    return np.array(taken, dtype=np.int64).reshape(-1, 2)


# ----------------------------------------------------------------------------------- the metrics


def best_threshold(dist: np.ndarray, is_same: np.ndarray) -> float:
    """The distance threshold (same if below it) with the highest accuracy on ``dist``.

    Candidates lie midway between consecutive distinct distances, and below and above them all;
    the smallest of equally good thresholds wins.
    """
    order = np.argsort(dist, kind="stable")
    d, s = dist[order], is_same[order].astype(bool)
    n = len(d)
    # cut i: the i smallest distances are called same
    correct = np.concatenate([[0], np.cumsum(s)]) + (~s).sum() - np.concatenate([[0], np.cumsum(~s)])
    valid = np.ones(n + 1, bool)
    valid[1:n] = d[1:] > d[:-1]
    i = int(np.argmax(np.where(valid, correct, -1)))
    if i == 0:
        return float(d[0])
    if i == n:
        return float(np.nextafter(d[-1], np.inf))
    return float((d[i - 1] + d[i]) / 2)


def cross_validated_accuracy(
    same: np.ndarray, different: np.ndarray, same_folds: np.ndarray, different_folds: np.ndarray
) -> tuple[float, float, list[float]]:
    """LFW's protocol: per fold, the best threshold on the other folds, tested on this one.

    Returns the mean and the standard deviation of the held-out accuracies and the thresholds.
    """
    dist = np.concatenate([same, different])
    is_same = np.concatenate([np.ones(len(same), bool), np.zeros(len(different), bool)])
    fold = np.concatenate([same_folds, different_folds])
    if len(np.unique(fold)) < 2:
        raise ValueError(f"expected pairs in two or more folds to cross-validate, got folds {np.unique(fold).tolist()}")
    accuracies, thresholds = [], []
    for k in np.unique(fold):
        train, test = fold != k, fold == k
        t = best_threshold(dist[train], is_same[train])
        thresholds.append(t)
        accuracies.append(float(((dist[test] < t) == is_same[test]).mean()))
    return float(np.mean(accuracies)), float(np.std(accuracies)), thresholds


def ten_fold_shortfall(same_folds: np.ndarray, different_folds: np.ndarray) -> str | None:
    """Why the 10-fold accuracy cannot be computed from pairs in these folds (a fold without a same or
    a different pair), or None when every fold holds both."""
    short = [k for k in range(N_FOLDS) if not ((same_folds == k).any() and (different_folds == k).any())]
    if not short:
        return None
    return (f"it needs a same and a different pair in each of the {N_FOLDS} folds (at least "
            f"{N_FOLDS} of each kind), got {len(same_folds)} same and {len(different_folds)} different scored pairs "
            f"({len(short)} fold{'s' if len(short) > 1 else ''} lacking one); draw more with --pairs, or add photos")


def roc_auc(same: np.ndarray, different: np.ndarray) -> float:
    """P(a different pair is further apart than a same pair), ties counting a half (rank formula)."""
    ranks = rankdata(np.concatenate([same, different]))
    n_same, n_diff = len(same), len(different)
    u = ranks[n_same:].sum() - n_diff * (n_diff + 1) / 2
    return float(u / (n_same * n_diff))


def roc_curve(same: np.ndarray, different: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(FAR, TAR, threshold) for every distinct distance t as threshold, accepting d <= t."""
    thresholds = np.unique(np.concatenate([same, different]))
    far = np.searchsorted(np.sort(different), thresholds, side="right") / len(different)
    tar = np.searchsorted(np.sort(same), thresholds, side="right") / len(same)
    return np.concatenate([[0.0], far]), np.concatenate([[0.0], tar]), np.concatenate([[-np.inf], thresholds])


def tar_at_far(same: np.ndarray, different: np.ndarray, far: float = FAR) -> float | None:
    """Share of same pairs accepted when at most ⌊far · m⌋ of the m different pairs are (d < t).

    The threshold t is the (⌊far · m⌋ + 1)-th smallest different distance. None with fewer than
    1/far different pairs (the FAR cannot be resolved).
    """
    if len(different) < round(1 / far):
        return None
    k = int(math.floor(far * len(different) + 1e-9))
    t = np.sort(different)[k]
    return float((same < t).mean())


@dataclass(frozen=True)
class VerifyMetrics:
    n_same: int
    n_different: int
    accuracy_10fold: float | None  # None with too few pairs for 10 folds (``ten_fold_shortfall``)
    accuracy_10fold_std: float | None
    threshold_10fold: float | None  # median of the ten chosen thresholds
    accuracy_at_spec: float | None
    spec_threshold: float | None  # as a distance
    auc: float
    tar_at_far: float | None
    median_same: float
    median_different: float


def verification_metrics(
    same: np.ndarray,
    different: np.ndarray,
    same_folds: np.ndarray,
    different_folds: np.ndarray,
    threshold: float | None = None,
    far: float = FAR,
) -> VerifyMetrics:
    """All scores of one model from the distances of its same and different pairs (one or more of each;
    the 10-fold accuracy is None unless every fold holds both kinds)."""
    if len(same) == 0 or len(different) == 0:
        raise LeamError(f"expected same and different pairs to score, got {len(same)} same and {len(different)} "
                        "different pairs with a face in both photos; add photos of more people")
    acc = std = t10 = None
    if ten_fold_shortfall(same_folds, different_folds) is None:
        acc, std, thresholds = cross_validated_accuracy(same, different, same_folds, different_folds)
        t10 = float(np.median(thresholds))
    at_spec = None
    if threshold is not None:
        at_spec = float(((same < threshold).sum() + (different >= threshold).sum()) / (len(same) + len(different)))
    return VerifyMetrics(
        len(same), len(different), acc, std, t10, at_spec, threshold,
        roc_auc(same, different), tar_at_far(same, different, far), float(np.median(same)),
        float(np.median(different)),
    )


def pair_distances(embeddings: np.ndarray, pairs: np.ndarray, metric: str) -> np.ndarray:
    """Distances of index pairs (n, 2): Euclidean, or 1 − cosine similarity for ``metric="cosine"``."""
    a, b = embeddings[pairs[:, 0]], embeddings[pairs[:, 1]]
    if metric == "euclidean":
        return np.linalg.norm(a - b, axis=1)
    if metric == "cosine":
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        return 1.0 - cos
    raise ValueError(f"expected metric 'euclidean' or 'cosine', got {metric!r}")
