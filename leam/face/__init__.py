"""Faces in, aligned chips out: detection, landmarks, alignment with the warp kept."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leam._io import text_name
from leam.data.images import load_image
from leam.errors import FaceError
from leam.face.align import Warp, chip_to_chip, estimate_warp, warp_to_chip, warp_to_photo
from leam.face.detect import FACE_CHOICES, Face, choose_face, detect_faces, select_face
from leam.face.templates import ARCFACE_TEMPLATE, AlignmentTemplate

DETECTORS = ("dlib", "scrfd")  # dlib's HOG + 5-point predictor (the default); insightface's SCRFD-500M


@dataclass(frozen=True)
class AlignedFace:
    """A face cut out for a model: the chip, the warp photo→chip, the detection, the photo's size."""

    chip: np.ndarray  # (H, W, 3) uint8 RGB
    warp: Warp
    face: Face
    photo_shape: tuple[int, int]
    source: str


def find_faces(photo: np.ndarray, detector: str = "dlib") -> list[Face]:
    """All faces in an (H, W, 3) uint8 RGB photo, largest first, found by ``detector`` (``DETECTORS``);
    SCRFD's faces carry insightface's five keypoints (``leam.face.scrfd.KEYPOINT_ORDER``), dlib's its own."""
    if detector == "dlib":
        return detect_faces(photo)
    if detector == "scrfd":
        from leam.face.scrfd import detect_faces_scrfd

        return detect_faces_scrfd(photo)
    raise ValueError(f"expected a detector in {DETECTORS}, got {detector!r}")


def detector_template(template: AlignmentTemplate, detector: str = "dlib") -> AlignmentTemplate:
    """The template that ``detector``'s landmarks are fitted to for a model aligned with ``template``:
    for SCRFD, insightface's ``arcface_dst`` directly (112x112 ArcFace-aligned models only)."""
    if detector != "scrfd":
        return template
    from leam.face.templates import ARCFACE_KEYPOINT_TEMPLATE

    if template.name != ARCFACE_TEMPLATE.name:
        raise FaceError(
            f"the scrfd detector's five points (eye centres, nose tip, mouth corners) align 112x112 ArcFace-style "
            f"chips only; this model expects {template.name} ({template.size[0]}x{template.size[1]}): "
            "use --detector dlib"
        )
    return ARCFACE_KEYPOINT_TEMPLATE


def align_photo(
    photo: np.ndarray, template: AlignmentTemplate, source: str = "<array>", largest_face: bool | str = False,
    detector: str = "dlib",
) -> AlignedFace:
    """Detect the face in ``photo`` with ``detector`` (``DETECTORS``) and align it to ``template`` (for
    SCRFD: ``detector_template``). ``largest_face``: False for exactly one face, True for the largest,
    or a rule of ``FACE_CHOICES`` ("only", "largest", "central")."""
    template = detector_template(template, detector)
    rule = largest_face if isinstance(largest_face, str) else ("largest" if largest_face else "only")
    face = choose_face(find_faces(photo, detector), photo.shape[:2], source, rule)
    warp = estimate_warp(face.landmarks, template)
    return AlignedFace(warp_to_chip(photo, warp), warp, face, photo.shape[:2], source)


def align_file(
    path: str | Path, template: AlignmentTemplate, largest_face: bool | str = False, detector: str = "dlib"
) -> AlignedFace:
    """Load the photo at ``path`` and align its face; errors name the file (as ``text_name`` writes it)."""
    return align_photo(load_image(path), template, text_name(str(path)), largest_face, detector)


__all__ = [
    "DETECTORS",
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
    "detector_template",
    "find_faces",
    "estimate_warp",
    "select_face",
    "warp_to_chip",
    "warp_to_photo",
]
