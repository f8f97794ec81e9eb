"""Face-verification accuracy of models on same/different pairs from a folder ``<identity>/<images>``:
the runner behind ``leam verify``. Pairs are drawn with a seed (``build_pairs``), every photo of a pair
is detected once and aligned and embedded once per model, batched (``embed_photos``), and the distances
of the pairs are scored (``leam.metrics.verification``); ``leam.report.verification`` writes the files.

Distances are in the unit of the model's own threshold: Euclidean, or 1 − cosine for models with a
cosine threshold (the spec's cosine threshold t becomes the distance 1 − t).

Photos in which no face is found (or that cannot be read) are recorded with the reason, counted, and
their pairs left out of the scores and counted. Of several faces in a photo, the largest is taken by
default (LFW photos often show other people behind the subject); ``face="central"`` takes the one
nearest the photo's centre instead (LFW centres each photo on its subject, and a bystander is
sometimes larger), ``face="only"`` refuses such photos.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from leam._io import text_name
from leam.data.folders import identity_folders
from leam.data.images import load_image
from leam.errors import LeamError, MultipleFacesError, NoFaceError
from leam.face import FACE_CHOICES, Face, choose_face, detector_template, estimate_warp, find_faces, warp_to_chip
from leam.metrics.verification import (
    VerifyMetrics,
    available_same_pairs,
    draw_pairs,
    pair_distances,
    pair_folds,
    verification_metrics,
)
from leam.models import FaceModel

Progress = Callable[[int, int], None]  # progress(done, total)


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
    """``n_pairs`` same-person and as many different-person pairs from ``data``, drawn with ``seed``
    (``draw_pairs``: spread over identities; all same pairs when the folder holds fewer)."""
    if n_pairs < 1:
        raise ValueError(f"expected n_pairs >= 1, got {n_pairs}")
    folders = identity_folders(data)
    photos = [p for images in folders.values() for p in images]
    identities = [name for name, images in folders.items() for _ in images]
    counts = np.array([len(v) for v in folders.values()], dtype=np.int64)
    available = available_same_pairs(counts)
    if available == 0:
        raise LeamError(f"{data}: no identity folder with at least two images (expected <identity>/<image files>)")
    same, different = draw_pairs(counts, n_pairs, seed)
    return PairSet(photos, identities, same, different, pair_folds(len(same)), pair_folds(len(different)), available)


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
    progress: Progress | None = None,
    detector: str = "dlib",
) -> tuple[dict[str, np.ndarray], list[PhotoStatus]]:
    """Embeddings (N, D) per model name (NaN rows for photos without a usable face) and statuses.

    Each photo is read and its face detected once; its chip is cut for every model's template and
    embedded in batches of ``batch_size``; ``progress(done, total)`` as the photos are read; ``detector``
    finds the faces (``leam.face.DETECTORS``; a model it cannot align is refused before any photo is read).
    """
    if face not in FACE_CHOICES:
        raise ValueError(f"expected face to be one of {FACE_CHOICES}, got {face!r}")
    if batch_size < 1:
        raise ValueError(f"expected batch_size >= 1, got {batch_size}")
    templates = {m.spec.name: detector_template(m.spec.template, detector) for m in models}
    out = {m.spec.name: np.full((len(photos), m.spec.embedding_size), np.nan, np.float32) for m in models}
    statuses, pending, chips = [], [], {m.spec.name: [] for m in models}

    def flush() -> None:
        for m in models:
            if pending:
                out[m.spec.name][pending] = m.embed(np.stack(chips[m.spec.name]), batch_size,
                                                    names=[text_name(str(photos[i])) for i in pending])
            chips[m.spec.name].clear()
        pending.clear()

    for i, (path, identity) in enumerate(zip(photos, identities)):
        if progress:
            progress(i, len(photos))
        status, photo, chosen = detect_photo(path, identity, face, detector)
        statuses.append(status)
        if chosen is None:
            continue
        for m in models:
            chips[m.spec.name].append(warp_to_chip(photo, estimate_warp(chosen.landmarks, templates[m.spec.name])))
        pending.append(i)
        if len(pending) == batch_size:
            flush()
    flush()
    if progress:
        progress(len(photos), len(photos))
    return out, statuses


def detect_photo(
    path: Path, identity: str, face: str, detector: str = "dlib"
) -> tuple[PhotoStatus, np.ndarray | None, Face | None]:
    """Read ``path`` and choose its face: (status, photo, face), the last two None when it failed."""
    status = PhotoStatus(text_name(str(path)), identity)
    try:
        photo = load_image(path)
        faces = find_faces(photo, detector)
        status.faces_found = len(faces)
        return status, photo, choose_face(faces, photo.shape[:2], text_name(str(path)), face)
    except NoFaceError as exc:
        status.status, status.reason = "no_face", str(exc)
    except MultipleFacesError as exc:
        status.status, status.reason = "several_faces", str(exc)
    except LeamError as exc:
        status.status, status.reason = "unreadable", str(exc)
    return status, None, None


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
    progress: Progress | None = None,
    detector: str = "dlib",
) -> VerifyReport:
    """Build the pairs, embed the photos they use with every model (faces found by ``detector``), and
    score each model."""
    for m in models:  # refused before the pairs are drawn
        detector_template(m.spec.template, detector)
    names = [m.spec.name for m in models]
    if not models or len(set(names)) != len(names):
        raise LeamError(f"expected one or more distinct models, got {names}")
    pairs = build_pairs(data, n_pairs, seed)
    used = np.unique(np.concatenate([pairs.same.ravel(), pairs.different.ravel()]))
    embeddings, statuses = embed_photos(
        models, [pairs.photos[i] for i in used], [pairs.identities[i] for i in used], face, batch_size,
        progress, detector,
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
