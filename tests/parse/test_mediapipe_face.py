"""The mediapipe parser: its contour geometry by hand, and (when mediapipe is installed) real LFW faces.

mediapipe 0.10.21 needs numpy < 2, so it lives behind the ``leam[mediapipe]`` extra; the tests that
run it skip with the reason when it is absent. The geometry tests need no mediapipe.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from leam.data.images import load_image
from leam.errors import LeamError, ModelError
from leam.face import align_file
from leam.models.dlib_resnet import DLIB_TEMPLATE
from leam.parse import CLASSES, UNLABELLED, create_parser, list_parsers
from leam.parse.landmarks import landmarks68
from leam.parse.mediapipe_face import PROVIDES, MeshTopology, chains, join_lines, rasterize, split_loop

HAVE_MEDIAPIPE = importlib.util.find_spec("mediapipe") is not None
needs_mediapipe = pytest.mark.skipif(
    not HAVE_MEDIAPIPE, reason="mediapipe is not installed (pip install 'leam[mediapipe]': mediapipe==0.10.21, numpy<2)"
)
FACE_PARTS = ("skin", "l_brow", "r_brow", "l_eye", "r_eye", "nose", "mouth", "u_lip", "l_lip")

# ------------------------------------------------------------------------------ geometry by hand


def test_chains_follow_paths_and_loops() -> None:
    assert chains([(1, 2), (2, 3), (3, 1)]) == [[1, 2, 3]]  # a loop, each point once
    assert chains([(5, 6), (7, 8), (6, 9)]) == [[5, 6, 9], [7, 8]]  # two open lines, from their ends
    with pytest.raises(ValueError, match="at most two neighbours"):
        chains([(0, 1), (0, 2), (0, 3)])


def test_split_loop_and_join_lines() -> None:
    loop = np.array([[0.0, 0.0], [2.0, -1.0], [4.0, 0.0], [2.0, 1.0]])  # y grows downwards
    upper, lower = split_loop(loop)
    np.testing.assert_array_equal(upper, [[0, 0], [2, -1], [4, 0]])
    np.testing.assert_array_equal(lower, [[0, 0], [2, 1], [4, 0]])
    top, bottom = np.array([[0.0, 0.0], [4.0, 0.0]]), np.array([[0.0, 1.0], [4.0, 1.0]])
    np.testing.assert_array_equal(join_lines(top, bottom), [[0, 0], [4, 0], [4, 1], [0, 1]])


# a mesh drawn by hand on a 60 x 80 (W x H) picture: face oval 20..40 x 20..50 (chin at 50, height 30)
HAND_POINTS = np.array([
    (20, 20), (40, 20), (40, 50), (20, 50),                  # 0-3 oval
    (30, 28), (27, 38), (33, 38), (30, 36),                  # 4-7 nose: a tree, hull = triangle 4, 5, 6
    (22, 23), (27, 23), (22, 25), (27, 25),                  # 8-11 right brow (image left): two lines
    (33, 23), (38, 23), (33, 25), (38, 25),                  # 12-15 left brow
    (22, 30), (25, 28), (28, 30), (25, 32),                  # 16-19 right eye
    (25, 29.5), (26, 30), (25, 30.5), (24, 30),              # 20-23 right iris
    (32, 30), (35, 28), (38, 30), (35, 32),                  # 24-27 left eye
    (35, 29.5), (36, 30), (35, 30.5), (34, 30),              # 28-31 left iris
    (24, 44), (30, 41), (36, 44), (30, 48),                  # 32-35 outer lips
    (26, 44), (30, 43), (34, 44), (30, 45),                  # 36-39 inner lips
], dtype=np.float64)  # fmt: skip


def ring(*idx: int) -> list[tuple[int, int]]:
    return [(a, b) for a, b in zip(idx, idx[1:] + idx[:1])]


HAND_TOPOLOGY = MeshTopology(
    oval=ring(0, 1, 2, 3), nose=[(4, 7), (7, 5), (7, 6)], r_brow=[(8, 9), (10, 11)], l_brow=[(12, 13), (14, 15)],
    r_eye=ring(16, 17, 18, 19), r_iris=ring(20, 21, 22, 23), l_eye=ring(24, 25, 26, 27), l_iris=ring(28, 29, 30, 31),
    lips=ring(32, 33, 34, 35) + ring(36, 37, 38, 39),
)  # fmt: skip


def test_rasterize_by_hand() -> None:
    person = np.zeros((80, 60), dtype=bool)
    person[:, 10:50] = True  # the person is a vertical band
    labels = rasterize(HAND_POINTS, person, HAND_TOPOLOGY)
    expected = {  # (x, y): class
        (5, 40): "background", (30, 10): "hair", (30, 58): "neck", (30, 70): "cloth", (45, 45): "hair",
        (21, 40): "skin", (30, 33): "nose", (24, 24): "r_brow", (36, 24): "l_brow", (25, 30): "r_eye",
        (35, 30): "l_eye", (30, 42): "u_lip", (30, 44): "mouth", (30, 47): "l_lip",
    }  # fmt: skip
    for (x, y), name in expected.items():
        assert CLASSES[labels[y, x]] == name, (x, y)
    assert {CLASSES[v] for v in np.unique(labels)} <= set(PROVIDES)


# ------------------------------------------------------------------------------ the parser


def test_registered_takes_no_weights() -> None:
    assert "mediapipe" in list_parsers()
    with pytest.raises(ModelError, match="takes no weights"):
        create_parser("mediapipe", weights="x.pth")


@pytest.mark.skipif(HAVE_MEDIAPIPE, reason="mediapipe is installed")
def test_missing_mediapipe_says_how_to_install() -> None:
    with pytest.raises(ModelError, match=r"pip install 'leam\[mediapipe\]'"):
        create_parser("mediapipe")


def centroid(labels: np.ndarray, name: str) -> np.ndarray:
    ys, xs = np.nonzero(labels == CLASSES.index(name))
    return np.array([xs.mean(), ys.mean()])


@needs_mediapipe
def test_real_faces_agree_with_the_landmark_parser(lfw_dir: Path) -> None:
    parser, reference = create_parser("mediapipe"), create_parser("landmarks")
    checked = 0
    for path in sorted(lfw_dir.glob("*/*.jpg"))[::400][:4]:
        try:
            photo, face = load_image(path), align_file(path, DLIB_TEMPLATE, largest_face=True)
        except LeamError:
            continue
        result = parser.parse(photo, face)
        labels, ref = result.labels, reference.parse(photo, face).labels
        assert labels.shape == face.warp.size and labels.dtype == np.uint8 and result.classes == PROVIDES
        assert set(np.unique(labels)) <= {CLASSES.index(c) for c in PROVIDES} | {UNLABELLED}
        tip = np.rint(face.warp.to_chip(landmarks68(photo, face.face.box)[30:31])[0]).astype(int)
        assert labels[tip[1], tip[0]] == CLASSES.index("nose"), path.name
        assert centroid(labels, "l_eye")[0] > centroid(labels, "r_eye")[0], path.name  # person's left: image right
        # two independent landmark models (dlib's 68 points, mediapipe's mesh) outline the same face
        ours, theirs = np.isin(labels, [CLASSES.index(c) for c in FACE_PARTS]), ref != UNLABELLED
        assert (ours & theirs).sum() / (ours | theirs).sum() > 0.8, path.name
        for name, tolerance in (("l_eye", 3), ("r_eye", 3), ("u_lip", 3), ("l_lip", 3), ("nose", 5), ("l_brow", 7)):
            distance = np.linalg.norm(centroid(labels, name) - centroid(ref, name))
            assert distance < tolerance, (path.name, name, distance)
        checked += 1
    assert checked >= 3
