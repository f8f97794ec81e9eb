"""Face regions from mediapipe's face mesh (478 points) and selfie segmentation (optional extra).

``pip install 'leam[mediapipe]'`` installs mediapipe 0.10.21, the last release that bundles the
face-mesh and selfie-segmentation models for Python 3.11; it needs numpy < 2. Both models run on
the 512 x 512 head crop of ``leam.parse._crop`` (face upright and centred); the labels are then
carried to the chip frame with the nearest neighbour.

Regions, from mediapipe's own contour lists (``face_mesh_connections``; "left" is the person's
left, on the image's right, as in leam's class names):
- skin: the face oval (``FACEMESH_FACE_OVAL``), drawn first;
- nose: the convex hull of ``FACEMESH_NOSE`` (the bridge from between the eyes down to the tip, and
  the nostril outline), so its top is narrow and its base as wide as the nostrils;
- brows: each brow's upper and lower lines joined into one polygon;
- eyes: the lid contour, united with the iris (``refine_landmarks=True``, the 4-point iris outline);
- lips: ``FACEMESH_LIPS`` is an outer and an inner loop; each is split at its corners (leftmost and
  rightmost points) into an upper and a lower path: u_lip lies between the upper paths, l_lip
  between the lower ones, and the inner loop is the mouth;
- outside the face oval, selfie segmentation (person probability >= 0.5) separates the person from
  the background, and the person is split by height along the face's vertical axis, roughly:
  above the chin is "hair" (really the rest of the head: hair, ears, a hat), from the chin down to
  ``NECK_LENGTH`` x the face's height is "neck", and lower is "cloth".
Later regions overwrite earlier ones, so a pixel has one class. Crop pixels outside the photo are
left unlabelled.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import ConvexHull
from skimage.draw import polygon as fill_polygon

from leam.errors import ModelError, NoFaceError
from leam.face import AlignedFace
from leam.face.align import warp_to_chip
from leam.face.labels import CLASSES, LabelMap
from leam.parse import register_parser
from leam.parse._crop import head_crop_warp, labels_to_chip

NAME = "mediapipe"
PROVIDES = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "nose", "mouth", "u_lip", "l_lip",
    "neck", "cloth", "hair",
)  # fmt: skip
CROP_SIZE = 512
PERSON_THRESHOLD = 0.5
NECK_LENGTH = 0.5  # x the face oval's height, below the chin
INSTALL_HINT = "install the extra: pip install 'leam[mediapipe]' (mediapipe==0.10.21, numpy<2)"

Edges = Iterable[tuple[int, int]]


@dataclass(frozen=True)
class MeshTopology:
    """mediapipe's contour lists (edges between mesh point indices)."""

    oval: Edges
    nose: Edges
    l_brow: Edges
    r_brow: Edges
    l_eye: Edges
    r_eye: Edges
    l_iris: Edges
    r_iris: Edges
    lips: Edges


def _mediapipe():
    try:
        import mediapipe
    except ImportError as exc:
        raise ModelError(f"the mediapipe parser needs mediapipe: {INSTALL_HINT}") from exc
    return mediapipe


def mesh_topology() -> MeshTopology:
    from mediapipe.python.solutions import face_mesh_connections as c

    return MeshTopology(
        c.FACEMESH_FACE_OVAL, c.FACEMESH_NOSE, c.FACEMESH_LEFT_EYEBROW, c.FACEMESH_RIGHT_EYEBROW,
        c.FACEMESH_LEFT_EYE, c.FACEMESH_RIGHT_EYE, c.FACEMESH_LEFT_IRIS, c.FACEMESH_RIGHT_IRIS, c.FACEMESH_LIPS,
    )  # fmt: skip


# ------------------------------------------------------------------------------ contours to polygons


def chains(edges: Edges) -> list[list[int]]:
    """The connected paths of an edge list whose points have at most two neighbours.

    Open paths start at an end point; closed loops list each point once (the last joins the first).
    """
    neighbours: dict[int, list[int]] = defaultdict(list)
    for a, b in edges:
        neighbours[a].append(b)
        neighbours[b].append(a)
    if any(len(n) > 2 for n in neighbours.values()):
        raise ValueError("expected paths or loops (at most two neighbours per point)")
    ends = sorted(p for p, n in neighbours.items() if len(n) == 1)
    seen: set[int] = set()
    out = []
    for start in ends + sorted(neighbours):
        if start in seen:
            continue
        path, current = [start], start
        seen.add(start)
        while nxt := [n for n in neighbours[current] if n not in seen]:
            current = nxt[0]
            path.append(current)
            seen.add(current)
        out.append(path)
    return out


def join_lines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One polygon from two open lines (K, 2): ``a`` then ``b`` in the direction that closes it."""
    if np.linalg.norm(a[-1] - b[-1]) < np.linalg.norm(a[-1] - b[0]):
        b = b[::-1]
    return np.vstack([a, b])


def split_loop(loop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A closed loop (K, 2) cut at its leftmost and rightmost points: (upper, lower), left to right."""
    i, j = int(np.argmin(loop[:, 0])), int(np.argmax(loop[:, 0]))
    rolled = np.roll(loop, -i, axis=0)
    k = (j - i) % len(loop)
    one, other = rolled[: k + 1], np.vstack([rolled[k:], rolled[:1]])[::-1]
    return (one, other) if one[:, 1].mean() < other[:, 1].mean() else (other, one)


def _area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def region_polygons(points: np.ndarray, topo: MeshTopology) -> list[tuple[str, np.ndarray]]:
    """(class, (K, 2) polygon) in drawing order, from the mesh points (N, 2) in any upright frame."""

    def loop(edges: Edges) -> np.ndarray:
        (path,) = chains(edges)
        return points[path]

    def brow(edges: Edges) -> np.ndarray:
        a, b = chains(edges)
        return join_lines(points[a], points[b])

    nose_points = points[sorted({i for edge in topo.nose for i in edge})]
    nose = nose_points[ConvexHull(nose_points).vertices]
    outer, inner = sorted((points[p] for p in chains(topo.lips)), key=_area, reverse=True)
    outer_up, outer_low = split_loop(outer)
    inner_up, inner_low = split_loop(inner)
    return [
        ("skin", loop(topo.oval)),
        ("nose", nose),
        ("r_brow", brow(topo.r_brow)),
        ("l_brow", brow(topo.l_brow)),
        ("r_eye", loop(topo.r_eye)),
        ("r_eye", loop(topo.r_iris)),
        ("l_eye", loop(topo.l_eye)),
        ("l_eye", loop(topo.l_iris)),
        ("u_lip", np.vstack([outer_up, inner_up[::-1]])),
        ("l_lip", np.vstack([outer_low, inner_low[::-1]])),
        ("mouth", inner),
    ]


def rasterize(points: np.ndarray, person: np.ndarray, topo: MeshTopology) -> np.ndarray:
    """(H, W) uint8 labels from mesh points (x, y) and a person mask (H, W) bool in one upright frame."""
    shape = person.shape
    labels = np.full(shape, CLASSES.index("background"), dtype=np.uint8)
    oval = points[chains(topo.oval)[0]]
    top, chin = oval[:, 1].min(), oval[:, 1].max()
    rows = np.arange(shape[0])[:, None]
    neck_end = chin + NECK_LENGTH * (chin - top)
    labels[person & (rows < chin)] = CLASSES.index("hair")
    labels[person & (rows >= chin) & (rows < neck_end)] = CLASSES.index("neck")
    labels[person & (rows >= neck_end)] = CLASSES.index("cloth")
    for name, poly in region_polygons(points, topo):
        rr, cc = fill_polygon(poly[:, 1], poly[:, 0], shape)
        labels[rr, cc] = CLASSES.index(name)
    return labels


# ------------------------------------------------------------------------------ the parser


class MediapipeParser:
    """Face-mesh contours and selfie segmentation on the head crop, carried to the chip."""

    name = NAME
    classes = PROVIDES

    def __init__(self) -> None:
        self._mp = _mediapipe()
        self.topology = mesh_topology()

    def mesh(self, crop: np.ndarray, source: str = "<array>") -> np.ndarray:
        """(478, 2) mesh points (x, y) in crop pixels of the face nearest the crop's centre."""
        with self._mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=4, refine_landmarks=True, min_detection_confidence=0.5
        ) as face_mesh:
            found = face_mesh.process(np.ascontiguousarray(crop)).multi_face_landmarks
        if not found:
            raise NoFaceError(f"{source}: mediapipe's face mesh found no face in the head crop")
        h, w = crop.shape[:2]
        # normalised coordinates span the image's outer edges; leam's pixel centres are integers
        meshes = [np.array([[p.x * w - 0.5, p.y * h - 0.5] for p in f.landmark]) for f in found]
        centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
        return min(meshes, key=lambda m: float(np.linalg.norm(m.mean(0) - centre)))

    def person(self, crop: np.ndarray) -> np.ndarray:
        """(H, W) bool: selfie segmentation's person mask of the crop."""
        with self._mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as segmenter:
            mask = segmenter.process(np.ascontiguousarray(crop)).segmentation_mask
        return np.asarray(mask) >= PERSON_THRESHOLD

    def parse(self, photo: np.ndarray, face: AlignedFace) -> LabelMap:
        """The label map of ``face`` in its aligned frame."""
        crop_warp = head_crop_warp(photo, face, CROP_SIZE)
        crop = warp_to_chip(photo, crop_warp)
        labels = rasterize(self.mesh(crop, face.source), self.person(crop), self.topology)
        return LabelMap(labels_to_chip(labels, crop_warp, face.warp, face.photo_shape), self.classes, self.name)


@register_parser(NAME, "mediapipe face mesh + selfie segmentation: 13 classes (extra: leam[mediapipe])")
def create(weights: str | Path | None = None) -> MediapipeParser:
    if weights is not None:
        raise ModelError("the mediapipe parser uses the models bundled with mediapipe; it takes no weights")
    return MediapipeParser()
