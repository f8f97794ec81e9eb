"""Faces in, aligned chips out: detection, landmarks, alignment with the warp kept."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leam._io import text_name
from leam.data.images import load_image
from leam.face.align import Warp, chip_to_chip, estimate_warp, warp_to_chip, warp_to_photo
from leam.face.detect import FACE_CHOICES, Face, choose_face, detect_faces, select_face
from leam.face.templates import AlignmentTemplate


@dataclass(frozen=True)
class AlignedFace:
    """A face cut out for a model: the chip, the warp photo→chip, the detection, the photo's size."""

    chip: np.ndarray  # (H, W, 3) uint8 RGB
    warp: Warp
    face: Face
    photo_shape: tuple[int, int]
    source: str


def align_photo(
    photo: np.ndarray, template: AlignmentTemplate, source: str = "<array>", largest_face: bool | str = False
) -> AlignedFace:
    """Detect the face in ``photo`` and align it to ``template``. ``largest_face``: False for exactly
    one face, True for the largest, or a rule of ``FACE_CHOICES`` ("only", "largest", "central")."""
    rule = largest_face if isinstance(largest_face, str) else ("largest" if largest_face else "only")
    face = choose_face(detect_faces(photo), photo.shape[:2], source, rule)
    warp = estimate_warp(face.landmarks, template)
    return AlignedFace(warp_to_chip(photo, warp), warp, face, photo.shape[:2], source)


def align_file(path: str | Path, template: AlignmentTemplate, largest_face: bool | str = False) -> AlignedFace:
    """Load the photo at ``path`` and align its face; errors name the file (as ``text_name`` writes it)."""
    return align_photo(load_image(path), template, text_name(str(path)), largest_face)


__all__ = [
    "FACE_CHOICES",
    "AlignedFace",
    "AlignmentTemplate",
    "Face",
    "Warp",
    "align_file",
    "chip_to_chip",
    "choose_face",
    "align_photo",
    "detect_faces",
    "estimate_warp",
    "select_face",
    "warp_to_chip",
    "warp_to_photo",
]
