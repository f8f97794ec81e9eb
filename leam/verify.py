"""Face-verification accuracy of models on same/different pairs from a folder ``<identity>/<images>``.

The plain functions behind ``leam verify``: pairs are drawn with a seed (``build_pairs``), every
photo of a pair is detected once and aligned and embedded once per model, batched
(``embed_photos``), and the distances of the pairs are scored (``verification_metrics``):

* 10-fold accuracy as LFW's protocol: the threshold that maximises accuracy on nine folds is tested
  on the tenth; the mean (and standard deviation) over the ten held-out folds. It needs a scored same
  and a scored different pair in every fold (so at least 10 of each); with fewer it is not computed
  (None, "—" in the table, with the reason), and the scores below are still given;
* the accuracy at the model spec's own threshold;
* ROC AUC (the Mann-Whitney statistic: the chance a different pair lies further apart than a same
  pair, ties counting a half) and TAR at FAR = 1e-3 when there are at least 1,000 different pairs;
* median distances of same and different pairs.

Distances are in the unit of the model's own threshold: Euclidean, or 1 − cosine for models with a
cosine threshold (the spec's cosine threshold t becomes the distance 1 − t). A pair is called "same"
when its distance is below the threshold.

Photos in which no face is found (or that cannot be read) are recorded with the reason, counted, and
their pairs left out of the scores and counted. Of several faces in a photo, the largest is taken by
default (LFW photos often show other people behind the subject); ``face="central"`` takes the one
nearest the photo's centre instead (LFW centres each photo on its subject, and a bystander is
sometimes larger), ``face="only"`` refuses such photos.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import rankdata
from tqdm import tqdm

from leam.dataset import identity_folders, text_name
from leam.errors import LeamError, MultipleFacesError, NoFaceError
from leam.face import FACE_CHOICES, choose_face, detect_faces, estimate_warp, warp_to_chip
from leam.image import load_image
from leam.models import FaceModel

N_FOLDS = 10
FAR = 1e-3


# ------------------------------------------------------------------------------------- the pairs


@dataclass(frozen=True)
class PairSet:
    """Photos and index pairs into them; ``*_folds`` give each pair's cross-validation fold."""

    photos: list[Path]
    identities: list[str]  # of each photo
    same: np.ndarray  # (n, 2) int, indices into photos
    different: np.ndarray  # (m, 2) int
    same_folds: np.ndarray  # (n,) int in [0, N_FOLDS)
    different_folds: np.ndarray  # (m,) int
    available_same: int  # all same-person pairs the folder holds


def build_pairs(data: str | Path, n_pairs: int = 3000, seed: int = 0) -> PairSet:
    """``n_pairs`` same-person and as many different-person pairs from ``data``, drawn with ``seed``.

    Same pairs are spread over identities: identities are shuffled and each in turn gives its next
    (shuffled) pair until ``n_pairs`` are drawn, so a person with 500 photos does not fill the set.
    With fewer same pairs in the folder, all of them are taken, and as many different pairs.
    Different pairs: two distinct identities, then one photo of each, uniformly; no pair twice.
    Pair i of each kind is in fold i mod 10 (the order is random).
    """
    if n_pairs < 1:
        raise ValueError(f"expected n_pairs >= 1, got {n_pairs}")
    folders = identity_folders(data)
    photos = [p for images in folders.values() for p in images]
    identities = [name for name, images in folders.items() for _ in images]
    starts = np.cumsum([0] + [len(v) for v in folders.values()])
    counts = np.diff(starts)
    available = int((counts * (counts - 1) // 2).sum())
    if available == 0:
        raise LeamError(f"{data}: no identity folder with at least two images (expected <identity>/<image files>)")
    rng = np.random.default_rng(seed)
    same = _same_pairs(starts, counts, min(n_pairs, available), rng)
    different = _different_pairs(starts, counts, len(same), rng)
    folds = lambda n: np.arange(n) % N_FOLDS  # noqa: E731
    return PairSet(photos, identities, same, different, folds(len(same)), folds(len(different)), available)


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


# ------------------------------------------------------------------------- photos → embeddings


@dataclass
class PhotoStatus:
    """What happened to one photo: ``status`` is "ok", "no_face", "several_faces" or "unreadable"."""

    path: str
    identity: str
    status: str = "ok"
    reason: str = ""
    faces_found: int = 0


def embed_photos(
    models: Sequence[FaceModel],
    photos: Sequence[Path],
    identities: Sequence[str],
    face: str = "largest",
    batch_size: int = 32,
    progress: bool = True,
) -> tuple[dict[str, np.ndarray], list[PhotoStatus]]:
    """Embeddings (N, D) per model name (NaN rows for photos without a usable face) and statuses.

    Each photo is read and its face detected once; its chip is cut for every model's template and
    embedded in batches of ``batch_size``.
    """
    if face not in FACE_CHOICES:
        raise ValueError(f"expected face to be one of {FACE_CHOICES}, got {face!r}")
    if batch_size < 1:
        raise ValueError(f"expected batch_size >= 1, got {batch_size}")
    out = {m.spec.name: np.full((len(photos), m.spec.embedding_size), np.nan, np.float32) for m in models}
    statuses, pending, chips = [], [], {m.spec.name: [] for m in models}

    def flush() -> None:
        for m in models:
            if pending:
                out[m.spec.name][pending] = m.embed(np.stack(chips[m.spec.name]), batch_size)
            chips[m.spec.name].clear()
        pending.clear()

    for i, (path, identity) in enumerate(
        tqdm(list(zip(photos, identities)), desc="embedding", unit="photo", disable=not progress)
    ):
        status = PhotoStatus(text_name(str(path)), identity)
        statuses.append(status)
        try:
            photo = load_image(path)
            faces = detect_faces(photo)
            status.faces_found = len(faces)
            chosen = choose_face(faces, photo.shape[:2], text_name(str(path)), face)
        except NoFaceError as exc:
            status.status, status.reason = "no_face", str(exc)
            continue
        except MultipleFacesError as exc:
            status.status, status.reason = "several_faces", str(exc)
            continue
        except LeamError as exc:
            status.status, status.reason = "unreadable", str(exc)
            continue
        for m in models:
            chips[m.spec.name].append(warp_to_chip(photo, estimate_warp(chosen.landmarks, m.spec.template)))
        pending.append(i)
        if len(pending) == batch_size:
            flush()
    flush()
    return out, statuses


def pair_distances(embeddings: np.ndarray, pairs: np.ndarray, metric: str) -> np.ndarray:
    """Distances of index pairs (n, 2): Euclidean, or 1 − cosine similarity for ``metric="cosine"``."""
    a, b = embeddings[pairs[:, 0]], embeddings[pairs[:, 1]]
    if metric == "euclidean":
        return np.linalg.norm(a - b, axis=1)
    if metric == "cosine":
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        return 1.0 - cos
    raise ValueError(f"expected metric 'euclidean' or 'cosine', got {metric!r}")


def spec_distance_threshold(model: FaceModel) -> float:
    """The spec's same-person threshold as a distance (cosine threshold t → 1 − t)."""
    t = model.spec.threshold
    return 1.0 - t if model.spec.threshold_metric == "cosine" else t


# ------------------------------------------------------------------------------------- the run


@dataclass
class ModelResult:
    name: str
    metric: str  # "euclidean" or "1 - cosine"
    metrics: VerifyMetrics
    same: np.ndarray = field(repr=False)  # distances of the scored pairs
    different: np.ndarray = field(repr=False)


@dataclass
class VerifyReport:
    data: str
    seed: int
    pairs: PairSet
    photos: list[PhotoStatus]
    results: list[ModelResult]
    scored_same: np.ndarray  # (n,) bool: both photos of the pair have a face
    scored_different: np.ndarray
    face: str  # which of several faces: one of FACE_CHOICES

    @property
    def failed_photos(self) -> list[PhotoStatus]:
        return [p for p in self.photos if p.status != "ok"]


def run_verify(
    models: Sequence[FaceModel],
    data: str | Path,
    n_pairs: int = 3000,
    seed: int = 0,
    face: str = "largest",
    batch_size: int = 32,
    progress: bool = True,
) -> VerifyReport:
    """Build the pairs, embed the photos they use with every model, and score each model."""
    names = [m.spec.name for m in models]
    if not models or len(set(names)) != len(names):
        raise LeamError(f"expected one or more distinct models, got {names}")
    pairs = build_pairs(data, n_pairs, seed)
    used = np.unique(np.concatenate([pairs.same.ravel(), pairs.different.ravel()]))
    embeddings, statuses = embed_photos(
        models, [pairs.photos[i] for i in used], [pairs.identities[i] for i in used], face, batch_size,
        progress,
    )
    ok = np.zeros(len(pairs.photos), bool)
    ok[used] = [s.status == "ok" for s in statuses]
    scored_same, scored_diff = ok[pairs.same].all(1), ok[pairs.different].all(1)
    remap = np.zeros(len(pairs.photos), np.int64)
    remap[used] = np.arange(len(used))
    results = []
    for m in models:
        metric = m.spec.threshold_metric
        same = pair_distances(embeddings[m.spec.name], remap[pairs.same[scored_same]], metric)
        diff = pair_distances(embeddings[m.spec.name], remap[pairs.different[scored_diff]], metric)
        scores = verification_metrics(
            same, diff, pairs.same_folds[scored_same], pairs.different_folds[scored_diff], spec_distance_threshold(m)
        )
        results.append(ModelResult(m.spec.name, "1 - cosine" if metric == "cosine" else metric, scores, same, diff))
    return VerifyReport(str(data), seed, pairs, statuses, results, scored_same, scored_diff, face)


# ----------------------------------------------------------------------------------- the outputs


def summary_dict(report: VerifyReport) -> dict:
    """Everything ``summary.json`` holds: the set-up, the counts, each model's scores, the failures."""
    statuses = [p.status for p in report.photos]
    return {
        "data": report.data,
        "seed": report.seed,
        "face": report.face,
        "pairs": {
            "same": len(report.pairs.same),
            "different": len(report.pairs.different),
            "available_same": report.pairs.available_same,
            "scored_same": int(report.scored_same.sum()),
            "scored_different": int(report.scored_different.sum()),
            "left_out_same": int((~report.scored_same).sum()),
            "left_out_different": int((~report.scored_different).sum()),
            "ten_fold_not_computed": ten_fold_shortfall(report.pairs.same_folds[report.scored_same],
                                                        report.pairs.different_folds[report.scored_different]),
        },
        "photos": {
            "used": len(report.photos),
            "ok": statuses.count("ok"),
            **{s: statuses.count(s) for s in ("no_face", "several_faces", "unreadable")},
            "ok_with_several_faces": sum(p.status == "ok" and p.faces_found > 1 for p in report.photos),
        },
        "models": {r.name: {"distance": r.metric, **vars(r.metrics)} for r in report.results},
        "failed_photos": [vars(p) for p in report.failed_photos],
    }


REPORT_FILES = ("summary.json", "verify.csv", "pairs.csv", "photos.csv", "roc.png")  # of ``write_report``


def write_report(report: VerifyReport, out: str | Path) -> dict[str, Path]:
    """Write ``summary.json``, ``verify.csv`` (a row per model), ``pairs.csv``, ``photos.csv`` and
    ``roc.png`` into ``out``; returns their paths by name."""
    import json

    import pandas as pd

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in REPORT_FILES}
    paths["summary.json"].write_text(json.dumps(summary_dict(report), indent=2) + "\n")
    rows = [{"model": r.name, "distance": r.metric, **vars(r.metrics)} for r in report.results]
    pd.DataFrame(rows).to_csv(paths["verify.csv"], index=False)
    pd.DataFrame([vars(p) for p in report.photos]).to_csv(paths["photos.csv"], index=False)
    pairs = []
    for kind, idx, folds, scored in (
        ("same", report.pairs.same, report.pairs.same_folds, report.scored_same),
        ("different", report.pairs.different, report.pairs.different_folds, report.scored_different),
    ):
        table = pd.DataFrame({
            "kind": kind,
            "fold": folds,
            "photo_a": [text_name(str(report.pairs.photos[i])) for i in idx[:, 0]],
            "photo_b": [text_name(str(report.pairs.photos[i])) for i in idx[:, 1]],
            "scored": scored,
        })
        for r in report.results:
            table[r.name] = np.nan
            table.loc[scored, r.name] = r.same if kind == "same" else r.different
        pairs.append(table)
    pd.concat(pairs, ignore_index=True).to_csv(paths["pairs.csv"], index=False)
    plot_roc(report.results, paths["roc.png"])
    return paths


def plot_roc(results: Sequence[ModelResult], path: Path) -> None:
    """TAR against FAR (log scale) for each model, with its AUC in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for r in results:
        far, tar, _ = roc_curve(r.same, r.different)
        ax.step(np.maximum(far, 0.5 / len(r.different)), tar, where="post", label=f"{r.name} (AUC {r.metrics.auc:.4f})")
    ax.set_xscale("log")
    ax.set(xlabel="false accept rate (different pairs accepted)", ylabel="true accept rate (same pairs accepted)",
           ylim=(0, 1.01), title="verification ROC")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plus_minus(value: float | None, spread: float | None) -> str:
    """``value ± spread`` in percent, or "—" when not computed."""
    return "—" if value is None else f"{100 * value:.2f} ± {100 * spread:.2f}"


_FACE_RULE = {"largest": "the largest taken", "central": "the most central taken", "only": "refused"}


def format_table(report: VerifyReport) -> str:
    """The scores as a plain-text table, a row per model, with the pair and photo counts."""
    s = summary_dict(report)
    pct = lambda v: "—" if v is None else f"{100 * v:.2f}"  # noqa: E731
    head = f"{'model':<16} {'pairs s/d':>11} {'10-fold %':>14} {'@spec %':>8} {'AUC':>7} {'TAR@1e-3':>9} " \
           f"{'med same':>9} {'med diff':>9}  distance (spec threshold)"
    lines = [head]
    for r in report.results:
        m = r.metrics
        lines.append(
            f"{r.name:<16} {f'{m.n_same}/{m.n_different}':>11} "
            f"{_plus_minus(m.accuracy_10fold, m.accuracy_10fold_std):>14} {pct(m.accuracy_at_spec):>8} "
            f"{m.auc:>7.4f} {pct(m.tar_at_far):>9} {m.median_same:>9.3f} {m.median_different:>9.3f}  "
            f"{r.metric} ({m.spec_threshold:g})"
        )
    if s["pairs"]["ten_fold_not_computed"]:
        lines.append(f"10-fold accuracy not computed: {s['pairs']['ten_fold_not_computed']}")
    p, ph = s["pairs"], s["photos"]
    lines.append(
        f"pairs drawn: {p['same']} same / {p['different']} different (seed {report.seed}; {p['available_same']} "
        f"same pairs available); left out for want of a face: {p['left_out_same']} same, "
        f"{p['left_out_different']} different"
    )
    lines.append(
        f"photos: {ph['used']} used, {ph['ok']} with a face ({ph['ok_with_several_faces']} with several faces: "
        f"{_FACE_RULE[report.face]}), {ph['no_face']} without a face, "
        f"{ph['several_faces']} with several faces refused, {ph['unreadable']} unreadable"
    )
    return "\n".join(lines)
