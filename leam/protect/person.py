"""One person's photos, ready to protect: decoded, the face found once, aligned for every model, embedded.

References: each photo is protected against the person's *other* photos (their embeddings, per
model), unless reference photos are given, which then serve every photo.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leam.data.images import load_image
from leam.errors import LeamError
from leam.face import AlignedFace, Face, detector_template, estimate_warp, find_faces, warp_to_chip
from leam.face.detect import choose_face
from leam.models import FaceModel


@dataclass
class PersonPhoto:
    """A photo (H, W, 3) uint8 upright, its chosen face and that face aligned for each model by name."""

    path: Path
    photo: np.ndarray
    face: Face
    aligned: dict[str, AlignedFace]

    @property
    def name(self) -> str:
        return self.path.name


def load_photo(
    path: str | Path, models: Sequence[FaceModel], face_rule: str = "largest", detector: str = "dlib"
) -> PersonPhoto:
    """Decode ``path``, choose its face (found by ``detector``) by ``face_rule`` ("only", "largest", "central"),
    align it per model."""
    path = Path(path)
    photo = load_image(path)
    face = choose_face(find_faces(photo, detector), photo.shape[:2], str(path), face_rule)
    aligned = {}
    for m in models:
        w = estimate_warp(face.landmarks, detector_template(m.spec.template, detector))
        aligned[m.spec.name] = AlignedFace(warp_to_chip(photo, w), w, face, photo.shape[:2], str(path))
    return PersonPhoto(path, photo, face, aligned)


def embed_all(models: Sequence[FaceModel], photos: Sequence[PersonPhoto]) -> dict[str, np.ndarray]:
    """{model: (N, D) embeddings of the photos' aligned faces}; ``NonFiniteError`` names a photo whose
    embedding holds NaN or Inf."""
    return {m.spec.name: m.embed(np.stack([p.aligned[m.spec.name].chip for p in photos]),
                                 names=[str(p.path) for p in photos]) for m in models}


def references_for(
    index: int, embeddings: Mapping[str, np.ndarray], external: Mapping[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """{model: (R, D)} references of photo ``index``: ``external`` when given, else the other photos'."""
    if external is not None:
        return {k: np.asarray(v) for k, v in external.items()}
    out = {}
    for name, emb in embeddings.items():
        if len(emb) < 2:
            raise LeamError("a photo needs another photo of the person as reference: give two or more photos "
                            "of the person, or --reference PHOTO")
        out[name] = np.delete(emb, index, axis=0)
    return out


def stable_seed(seed: int, *parts: str) -> list[int]:
    """A seed sequence for numpy/torch generators from ``seed`` and names (e.g. photo, ensemble, budget)."""
    digest = hashlib.sha1("\x1f".join(parts).encode()).digest()
    return [int(seed), int.from_bytes(digest[:4], "little")]


def ensemble_name(models: Sequence[str]) -> str:
    return "+".join(models)
