"""The default landmark parser on real LFW faces: anatomy, left/right, no overlap, consistency with the warp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage.transform import AffineTransform, warp

from leam.data.images import load_image
from leam.errors import LeamError
from leam.face import AlignedFace, align_file
from leam.models.dlib_resnet import DLIB_TEMPLATE
from leam.parse import CLASSES, UNLABELLED, create_parser, list_parsers
from leam.parse.landmarks import PROVIDES, chip_box, landmarks68, rasterize, region_polygons

PIXEL_AGREEMENT = 0.97  # parse-then-align vs parse-in-the-chip-frame, same landmarks
REDETECTED_AGREEMENT = 0.93  # ... vs landmarks found again on the 150-px chip itself
MAX_SHIFT, MIN_PIXELS = 2.0, 40  # chip px (about one LFW photo px) between class centroids, classes >= 40 px


@pytest.fixture(scope="module")
def faces(lfw_dir: Path) -> list[tuple[np.ndarray, AlignedFace]]:
    out = []
    for path in sorted(lfw_dir.glob("*/*.jpg"))[::700]:
        try:
            out.append((load_image(path), align_file(path, DLIB_TEMPLATE, largest_face=True)))
        except LeamError:
            continue
    assert len(out) >= 10
    return out[:12]


def centroid(labels: np.ndarray, name: str) -> np.ndarray:
    ys, xs = np.nonzero(labels == CLASSES.index(name))
    return np.array([xs.mean(), ys.mean()])


def test_registered_as_the_default() -> None:
    assert next(iter(list_parsers())) == "landmarks"
    parser = create_parser()
    assert parser.classes == PROVIDES and "hair" not in parser.classes
    with pytest.raises(LeamError, match="unknown parser 'nope'"):
        create_parser("nope")


def test_anatomy_and_sides(faces) -> None:
    parser = create_parser()
    for photo, face in faces:
        lm = parser.parse(photo, face)
        labels = lm.labels
        assert labels.shape == (150, 150) and labels.dtype == np.uint8
        for name in ("skin", "l_brow", "r_brow", "l_eye", "r_eye", "nose", "u_lip", "l_lip"):
            assert (labels == CLASSES.index(name)).sum() > 5, (face.source, name)
        tip = face.warp.to_chip(landmarks68(photo, face.face.box)[30:31])[0]
        assert labels[int(round(tip[1])), int(round(tip[0]))] == CLASSES.index("nose"), face.source
        nose, eyes = centroid(labels, "nose"), (centroid(labels, "l_eye") + centroid(labels, "r_eye")) / 2
        lips = (centroid(labels, "u_lip") + centroid(labels, "l_lip")) / 2
        assert eyes[1] < nose[1] < lips[1], face.source
        # the person's left is the image's right
        assert centroid(labels, "l_eye")[0] > centroid(labels, "r_eye")[0]
        assert centroid(labels, "l_brow")[0] > centroid(labels, "r_brow")[0]
        assert centroid(labels, "r_brow")[1] < centroid(labels, "r_eye")[1]
        assert centroid(labels, "u_lip")[1] < centroid(labels, "l_lip")[1]
        # the face oval leaves the chip's corners unlabelled (LFW chips hold background there)
        assert labels[0, 0] == UNLABELLED and labels[-1, -1] == UNLABELLED


def test_masks_do_not_overlap_and_cover_the_face(faces) -> None:
    photo, face = faces[0]
    polys = dict(region_polygons(landmarks68(photo, face.face.box)))
    assert set(polys) == set(PROVIDES)
    labels = create_parser().parse(photo, face)
    masks = [labels.mask(c) for c in labels.categories]
    assert (np.sum(masks, axis=0) == 1).all()  # every pixel in exactly one category


def _agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, dict[str, float]]:
    """Share of equal pixels, and per class the distance between the two centroids (chip px).

    (IoU is a poor measure for the thin mouth and lips: a one-pixel edge difference halves it.)
    """
    shifts = {}
    # the inner mouth of a closed mouth is a sliver of near-zero area: rasterised at two resolutions it
    # gives unrelated pixels, so it is left to the pixel agreement
    for name in (c for c in PROVIDES if c != "mouth"):
        x, y = a == CLASSES.index(name), b == CLASSES.index(name)
        if min(x.sum(), y.sum()) >= MIN_PIXELS:
            shifts[name] = float(np.linalg.norm(centroid(a, name) - centroid(b, name)))
    return float((a == b).mean()), shifts


def test_parse_then_align_equals_align_then_parse(faces) -> None:
    parser = create_parser()
    for photo, face in faces:
        in_chip = parser.parse(photo, face).labels
        in_photo = parser.parse_in_photo(photo, face).labels
        to_chip = AffineTransform(matrix=np.linalg.inv(face.warp.full))
        warped = warp(in_photo, to_chip, output_shape=face.warp.size, order=0, preserve_range=True, cval=UNLABELLED)
        agreement, shifts = _agreement(in_chip, warped.astype(np.uint8))
        assert agreement >= PIXEL_AGREEMENT, face.source
        assert max(shifts.values()) <= MAX_SHIFT, (face.source, shifts)


def test_landmarks_found_again_on_the_chip_give_the_same_regions(faces) -> None:
    parser = create_parser()
    for photo, face in faces:
        in_chip = parser.parse(photo, face).labels
        again = rasterize(landmarks68(face.chip, chip_box(face.warp, face.face.box)), face.warp.size)
        agreement, _ = _agreement(in_chip, again)
        assert agreement >= REDETECTED_AGREEMENT, face.source


def test_polygons_follow_a_similarity_transform() -> None:
    """Rules scale with the face: transforming the landmarks transforms every polygon the same way."""
    rng = np.random.default_rng(0)
    base = np.array(rng.random((68, 2)) * 50 + 50)
    base[36:42] = [[60, 60], [63, 58], [66, 58], [69, 60], [66, 62], [63, 62]]
    base[42:48] = base[36:42] + [30, 0]
    t = AffineTransform(scale=1.7, rotation=0.3, translation=(12, -5))
    for (name, poly), (name2, poly2) in zip(region_polygons(base), region_polygons(t(base))):
        assert name == name2
        np.testing.assert_allclose(t(poly), poly2, atol=1e-9)
