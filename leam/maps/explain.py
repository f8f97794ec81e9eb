"""Explain one photo against references: the plain functions behind ``leam explain`` and ``leam demo``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from leam._io import text_name
from leam.errors import DegenerateReferenceError, UsageError
from leam.face import AlignedFace, align_file, align_photo
from leam.maps.aggregate import DEFAULT_AGGREGATION
from leam.maps.attribution import DEFAULT_DIRECTION
from leam.maps.leam import LEAM
from leam.models import FaceModel


@dataclass
class Explanation:
    """LEAM maps of one face, all in the model's aligned frame (H, W)."""

    aligned: AlignedFace
    model: str
    layers: list[str]
    direction: str
    aggregation: str
    raw: dict[str, np.ndarray]
    maps: dict[str, np.ndarray]  # min-max normalised to [0, 1]
    aggregate: np.ndarray
    cosine: float  # cosine similarity of the image's embedding to the reference embedding
    distance: float  # Euclidean distance between the two
    references: list[str]


def embed_faces(model: FaceModel, faces: Sequence[AlignedFace]) -> np.ndarray:
    """Embeddings (N, D) of aligned faces."""
    return model.embed(np.stack([f.chip for f in faces]), names=[f.source for f in faces])


def reference_embedding(model: FaceModel, faces: Sequence[AlignedFace]) -> np.ndarray:
    """The reference for LEAM: one face's embedding, or the mean over several faces of a person."""
    if not faces:
        raise UsageError("expected at least one reference face")
    return embed_faces(model, faces).mean(axis=0)


def explain_face(
    model: FaceModel,
    face: AlignedFace,
    reference: np.ndarray,
    layers: Sequence[str] | None = None,
    direction: str = DEFAULT_DIRECTION,
    aggregation: str = DEFAULT_AGGREGATION,
    references: Sequence[str] = (),
) -> Explanation:
    """LEAM maps of ``face`` against the ``reference`` embedding (D,)."""
    layers = [layers] if isinstance(layers, str) else list(layers or model.spec.default_layers)
    engine = LEAM(model.net, layers, direction=direction, name=model.spec.name)
    x = model.chips_to_tensor(face.chip[None])
    ref = torch.as_tensor(np.asarray(reference, dtype=np.float32))
    try:
        result = engine(x, ref, names=[face.source])
    except DegenerateReferenceError:
        raise DegenerateReferenceError(
            f"{face.source}: the reference is this image itself (cosine similarity 1), so the "
            "gradient is zero and the map would be blank; use another photo of the person"
        ) from None
    emb = result.embeddings[0].numpy()
    return Explanation(
        aligned=face,
        model=model.spec.name,
        layers=layers,
        direction=direction,
        aggregation=aggregation,
        raw={k: v[0].numpy() for k, v in result.raw.items()},
        maps={k: v[0].numpy() for k, v in result.maps.items()},
        aggregate=result.aggregate(aggregation)[0].numpy(),
        cosine=float(result.cosine[0]),
        distance=float(np.linalg.norm(emb - np.asarray(reference))),
        references=list(references),
    )


def explain_file(
    model: FaceModel,
    image: str | Path,
    references: Sequence[str | Path],
    layers: Sequence[str] | None = None,
    direction: str = DEFAULT_DIRECTION,
    aggregation: str = DEFAULT_AGGREGATION,
    largest_face: bool | str = False,
    photo: np.ndarray | None = None,
    detector: str = "dlib",
) -> Explanation:
    """Detect, align and explain the face in ``image`` against the faces in ``references``.

    ``largest_face``: the face rule of ``leam.face.align_photo`` ("only", "largest", "central"; True/False
    for "largest"/"only").
    ``photo``: the image already decoded (``load_image(image)``), so it is not decoded twice.
    ``detector``: the face detector of ``leam.face.DETECTORS``.
    """
    template = model.spec.template
    if photo is None:
        face = align_file(image, template, largest_face, detector)
    else:
        face = align_photo(photo, template, text_name(str(image)), largest_face, detector)
    ref_faces = [align_file(r, template, largest_face, detector) for r in references]
    ref = reference_embedding(model, ref_faces)
    return explain_face(model, face, ref, layers, direction, aggregation, [text_name(str(r)) for r in references])
