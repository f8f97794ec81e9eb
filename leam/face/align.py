"""Alignment: fit a similarity warp from five landmarks to a model's template, cut the chip.

A ``Warp`` keeps the 2x3 matrix from photo pixels to chip pixels (x, y; pixel centres at integers),
so anything computed on the chip (a LEAM map) can be drawn back onto the photo.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.transform import AffineTransform, SimilarityTransform, warp

from leam.face.templates import AlignmentTemplate


@dataclass(frozen=True)
class Warp:
    """``matrix`` (2x3) maps photo (x, y) to chip (x, y); ``size`` is the chip's (height, width)."""

    matrix: np.ndarray
    size: tuple[int, int]

    @property
    def full(self) -> np.ndarray:
        return np.vstack([self.matrix, [0.0, 0.0, 1.0]])

    def to_chip(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) photo points → chip points."""
        p = np.asarray(points, dtype=np.float64)
        return p @ self.matrix[:, :2].T + self.matrix[:, 2]

    def to_photo(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) chip points → photo points."""
        inv = np.linalg.inv(self.full)
        return np.asarray(points, dtype=np.float64) @ inv[:2, :2].T + inv[:2, 2]

    @property
    def scale(self) -> float:
        """Chip pixels per photo pixel."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

    def to_dict(self) -> dict:
        return {"matrix": self.matrix.tolist(), "size": list(self.size)}


def estimate_warp(landmarks: np.ndarray, template: AlignmentTemplate) -> Warp:
    """The warp that puts ``landmarks`` (5, 2) onto ``template.points``."""
    src = np.asarray(landmarks, dtype=np.float64)
    if src.shape != template.points.shape:
        raise ValueError(f"expected landmarks of shape {template.points.shape}, got {src.shape}")
    if template.method == "dlib":
        matrix = _dlib_chip_matrix(src, template)
    else:
        matrix = _similarity(src, template.points)[:2]
    return Warp(np.asarray(matrix, dtype=np.float64), template.size)


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama) taking ``src`` onto ``dst``, as a 3x3 matrix."""
    tform = SimilarityTransform.from_estimate(src, dst)
    if not tform:
        raise ValueError("degenerate landmarks: cannot fit a similarity transform")
    return tform.params


def _dlib_chip_matrix(landmarks: np.ndarray, template: AlignmentTemplate) -> np.ndarray:
    """Photo→chip matrix exactly as dlib's ``get_face_chip_details`` + ``extract_image_chip``.

    dlib fits a similarity from chip to photo, keeps its rotation and scale as a ``drectangle`` of
    width ``cols*scale`` centred on the image of the chip centre (a drectangle's width counts both
    end pixels, so its corners are ``cols*scale - 1`` apart), and maps those corners onto chip
    pixels 0 and ``cols - 1``.
    """
    rows, cols = template.size
    m = _similarity(template.points, landmarks)
    angle = np.arctan2(m[1, 0], m[0, 0])
    scale = np.hypot(m[0, 0], m[1, 0])
    centre = (m @ [cols / 2.0, rows / 2.0, 1.0])[:2]
    sx, sy = (cols * scale - 1) / (cols - 1), (rows * scale - 1) / (rows - 1)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    lin = rot @ np.diag([sx, sy])  # chip → photo
    chip_to_photo = np.eye(3)
    chip_to_photo[:2, :2] = lin
    chip_to_photo[:2, 2] = centre - lin @ [(cols - 1) / 2.0, (rows - 1) / 2.0]
    return np.linalg.inv(chip_to_photo)[:2]


def warp_to_chip(image: np.ndarray, w: Warp) -> np.ndarray:
    """Cut the aligned chip (H, W, C) uint8 from ``image`` with bilinear sampling.

    When the chip is much smaller than the face in the photo, the photo is first reduced by an
    integer factor with a box filter (anti-aliasing, as dlib's image pyramid does; the pixels then
    differ slightly from dlib's).
    """
    img = np.asarray(image)
    factor = int(1.0 / w.scale) if w.scale < 0.5 else 1
    if factor > 1:
        img, w = _box_reduce(img, w, factor)
    out = warp(
        img.astype(np.float64),
        AffineTransform(matrix=np.linalg.inv(w.full)),
        output_shape=w.size,
        order=1,
        mode="constant",
        cval=0.0,
        preserve_range=True,
    )
    return np.clip(out, 0, 255).astype(np.uint8)  # truncation, as dlib assigns pixels


def _box_reduce(img: np.ndarray, w: Warp, factor: int) -> tuple[np.ndarray, Warp]:
    """Shrink ``img`` by ``factor`` (mean of factor x factor blocks) and adapt the warp to it.

    Reduced pixel i covers photo pixels factor*i ... factor*i + factor - 1, so its centre is at
    photo coordinate factor*i + (factor - 1)/2.
    """
    from PIL import Image

    small = np.asarray(Image.fromarray(np.ascontiguousarray(img)).reduce(factor))
    to_photo = np.array([[factor, 0.0, (factor - 1) / 2.0], [0.0, factor, (factor - 1) / 2.0], [0.0, 0.0, 1.0]])
    return small, Warp((w.full @ to_photo)[:2], w.size)


def warp_to_photo(chip_values: np.ndarray, w: Warp, photo_shape: tuple[int, int]) -> np.ndarray:
    """Draw a chip-frame array (H, W[, C]) back onto the photo frame; outside the chip → 0."""
    return warp(
        np.asarray(chip_values, dtype=np.float64),
        AffineTransform(matrix=w.full),
        output_shape=photo_shape,
        order=1,
        mode="constant",
        cval=0.0,
        preserve_range=True,
    )


def chip_to_chip(values: np.ndarray, source: Warp, target: Warp) -> np.ndarray:
    """A map in ``source``'s chip frame carried into ``target``'s (chip → photo → chip), bilinear, 0 outside."""
    to_target = target.full @ np.linalg.inv(source.full)
    return warp(
        np.asarray(values, dtype=np.float64),
        AffineTransform(matrix=np.linalg.inv(to_target)),
        output_shape=target.size,
        order=1,
        mode="constant",
        cval=0.0,
        preserve_range=True,
    )
