"""Alignment: leam's warps and chips against dlib's ``get_face_chip`` and a closed-form Umeyama."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.transform import SimilarityTransform

from leam.data.images import load_image
from leam.face import Warp, detect_faces, estimate_warp, warp_to_chip, warp_to_photo
from leam.models import AlignmentTemplate
from leam.models.dlib_resnet import DLIB_TEMPLATE

CHIP_CORNERS = np.array([[0.0, 0.0], [149.0, 0.0], [149.0, 149.0], [0.0, 149.0]])


@pytest.fixture(scope="module")
def inside_faces(lfw_dlib_faces):
    faces = [f for f in lfw_dlib_faces if f.chip_inside]
    assert len(faces) >= 10, "too few LFW faces whose chip lies inside the photo"
    return faces


def similarity_matrix(scale: float, angle: float, tx: float, ty: float) -> np.ndarray:
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty], [0.0, 0.0, 1.0]])


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity src → dst (Umeyama 1991, eqs. 34-43), as a 3x3 matrix."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sv, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt))])
    rot = u @ sign @ vt
    scale = np.trace(np.diag(sv) @ sign) / s.var(0).sum()
    m = np.eye(3)
    m[:2, :2] = scale * rot
    m[:2, 2] = mu_d - scale * rot @ mu_s
    return m


# ------------------------------------------------------------------------------ dlib's chips exactly


def test_chip_equals_dlib_get_face_chip(inside_faces):
    for f in inside_faces:
        chip = warp_to_chip(f.image, estimate_warp(f.landmarks, DLIB_TEMPLATE))
        assert chip.shape == f.chip.shape == (150, 150, 3) and chip.dtype == np.uint8
        diff = np.abs(chip.astype(int) - f.chip)
        assert diff.max() <= 1, f"{f.path.name}: max diff {diff.max()} grey levels"
        assert (diff == 0).mean() > 0.999, f"{f.path.name}: {(diff != 0).sum()} pixels differ"


def test_warp_geometry_equals_dlib_chip_details(lfw_dlib_faces):
    # where dlib samples the chip's corner pixels, from get_face_chip_details (all photos, inside or not)
    for f in lfw_dlib_faces:
        warp = estimate_warp(f.landmarks, DLIB_TEMPLATE)
        np.testing.assert_allclose(warp.to_photo(CHIP_CORNERS), f.chip_corners, atol=1e-6, err_msg=str(f.path))


def test_landmarks_land_near_the_template_points(lfw_dlib_faces):
    worst = []
    for f in lfw_dlib_faces:
        mapped = estimate_warp(f.landmarks, DLIB_TEMPLATE).to_chip(f.landmarks)
        # where the least-squares similarity chip → photo (dlib fits that way round; closed form here)
        # puts them, give or take dlib's chip convention: the template's centre 75 lands on pixel 74.5,
        # and the scale is stretched by (1 - s) / (150 s - 1) for s photo pixels per chip pixel (under
        # 0.5 px at the chip's edge for faces at least a third of the chip's size)
        fit = np.linalg.inv(umeyama(DLIB_TEMPLATE.points, f.landmarks))
        best = f.landmarks @ fit[:2, :2].T + fit[:2, 2]
        np.testing.assert_allclose(mapped, best, atol=1.0, err_msg=f.path.name)
        worst.append(np.linalg.norm(mapped - DLIB_TEMPLATE.points, axis=1).max())
    # faces differ from dlib's mean face, but not by much on most LFW photos
    assert np.median(worst) < 6.0, f"median worst landmark distance {np.median(worst):.1f} px"


def test_template_points_are_dlibs_mean_face():
    # dlib's 5-point mean face (unit square) with padding 0.25 in a 150-pixel chip
    assert DLIB_TEMPLATE.size == (150, 150)
    np.testing.assert_allclose(DLIB_TEMPLATE.points[4], [(0.4901123135679 + 0.25) / 1.5 * 150, 87.77975316475])


# ------------------------------------------------------------------------------------ Warp's mappings


def test_to_chip_and_to_photo_are_inverses(lfw_dlib_faces):
    rng = np.random.default_rng(0)
    warps = [estimate_warp(f.landmarks, DLIB_TEMPLATE) for f in lfw_dlib_faces[:5]]
    warps.append(Warp(similarity_matrix(0.37, -2.1, 400.0, -90.0)[:2], (112, 112)))
    for w in warps:
        photo_pts = rng.uniform(-50, 300, (20, 2))
        chip_pts = rng.uniform(0, 150, (20, 2))
        np.testing.assert_allclose(w.to_photo(w.to_chip(photo_pts)), photo_pts, atol=1e-9)
        np.testing.assert_allclose(w.to_chip(w.to_photo(chip_pts)), chip_pts, atol=1e-9)


def test_warp_by_hand():
    # chip = 2 * photo rotated by 90 degrees, shifted by (10, 0): photo (1, 0) -> (10, 2); (0, 1) -> (8, 0)
    w = Warp(np.array([[0.0, -2.0, 10.0], [2.0, 0.0, 0.0]]), (20, 20))
    np.testing.assert_allclose(w.to_chip([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), [[10, 2], [8, 0], [10, 0]])
    np.testing.assert_allclose(w.to_photo([[10.0, 2.0], [8.0, 0.0]]), [[1, 0], [0, 1]], atol=1e-12)
    assert w.scale == pytest.approx(2.0)
    assert w.to_dict() == {"matrix": [[0.0, -2.0, 10.0], [2.0, 0.0, 0.0]], "size": [20, 20]}


def test_warp_to_chip_samples_where_the_warp_says():
    # a horizontal ramp photo, and a warp that shifts by (-3.5, -2): chip pixel x samples photo x + 3.5
    photo = np.tile(np.arange(40, dtype=np.uint8)[None, :, None] * 5, (30, 1, 3))
    w = Warp(np.array([[1.0, 0.0, -3.5], [0.0, 1.0, -2.0]]), (10, 12))
    chip = warp_to_chip(photo, w)
    assert chip.shape == (10, 12, 3)
    np.testing.assert_array_equal(chip[0, :, 0], np.floor((np.arange(12) + 3.5) * 5).astype(np.uint8))


def test_warp_to_photo_covers_the_face(inside_faces):
    for f in inside_faces:
        w = estimate_warp(f.landmarks, DLIB_TEMPLATE)
        cover = warp_to_photo(np.ones((150, 150)), w, f.image.shape[:2])
        assert cover.shape == f.image.shape[:2]
        assert cover.min() >= 0.0 and cover.max() <= 1.0 + 1e-9
        # the middle 70% of the detector's box, and every landmark, lie under the chip
        left, top, right, bottom = f.rect.left(), f.rect.top(), f.rect.right(), f.rect.bottom()
        cx, cy, hw, hh = (left + right) / 2, (top + bottom) / 2, 0.35 * (right - left), 0.35 * (bottom - top)
        inner = cover[int(cy - hh) : int(cy + hh) + 1, int(cx - hw) : int(cx + hw) + 1]
        np.testing.assert_allclose(inner, 1.0, err_msg=f"{f.path.name}: the face box is not covered")
        xs, ys = f.landmarks.astype(int).T
        np.testing.assert_allclose(cover[ys, xs], 1.0)
        # the chip's footprint: 150*150 chip pixels of 1/scale**2 photo pixels each
        assert cover.sum() == pytest.approx(150 * 150 / w.scale**2, rel=2e-3)
        assert cover[0, 0] == cover[-1, -1] == 0.0


def test_warp_to_photo_keeps_channels():
    w = Warp(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), (4, 4))
    values = np.arange(4 * 4 * 2, dtype=np.float64).reshape(4, 4, 2)
    out = warp_to_photo(values, w, (6, 5))
    assert out.shape == (6, 5, 2)
    np.testing.assert_allclose(out[:4, :4], values)
    assert not out[4:].any() and not out[:, 4:].any()


def test_chip_of_a_large_photo_is_close_to_dlibs(raw_photos_dir, dlib_predictor, dlib_resnet_model):
    # a face ~5x larger than the chip: leam smooths then samples, dlib samples an image pyramid,
    # so the chips are close but not equal
    import dlib

    photo = load_image(raw_photos_dir / "couple.jpg")
    face = detect_faces(photo)[0]
    w = estimate_warp(face.landmarks, DLIB_TEMPLATE)
    assert w.scale < 0.5
    ours = warp_to_chip(photo, w)
    ref = dlib.get_face_chip(photo, dlib_predictor(photo, dlib.rectangle(*face.box)), 150, 0.25)
    assert np.abs(ours.astype(int) - ref).mean() < 4.0
    e = dlib_resnet_model.embed(np.stack([ours, ref]))
    assert np.linalg.norm(e[0] - e[1]) < 0.1  # well below dlib's same-person threshold of 0.6


# ------------------------------------------------------------------------------------------- Umeyama


def umeyama_template(points: np.ndarray, size: tuple[int, int] = (112, 112)) -> AlignmentTemplate:
    return AlignmentTemplate("synthetic", size, points, ("a", "b", "c", "d", "e"), method="umeyama")


SRC = np.array([[30.0, 40.0], [70.0, 42.0], [50.0, 60.0], [35.0, 80.0], [68.0, 79.0]])


@pytest.mark.parametrize(
    ("scale", "angle", "tx", "ty"), [(1.0, 0.0, 0.0, 0.0), (1.7, 0.3, 12.0, -5.0), (0.25, -2.5, 300.0, 41.0)]
)
def test_umeyama_recovers_a_known_similarity(scale, angle, tx, ty):
    m = similarity_matrix(scale, angle, tx, ty)
    dst = SRC @ m[:2, :2].T + m[:2, 2]
    warp = estimate_warp(SRC, umeyama_template(dst))
    np.testing.assert_allclose(warp.matrix, m[:2], atol=1e-9)
    assert warp.scale == pytest.approx(scale)
    np.testing.assert_allclose(warp.to_chip(SRC), dst, atol=1e-9)


def test_umeyama_on_noisy_points_matches_references():
    rng = np.random.default_rng(42)
    m = similarity_matrix(0.8, 0.4, -20.0, 33.0)
    for _ in range(10):
        src = rng.uniform(0, 250, (5, 2))
        dst = src @ m[:2, :2].T + m[:2, 2] + rng.normal(0, 2.0, (5, 2))
        warp = estimate_warp(src, umeyama_template(dst))
        np.testing.assert_allclose(warp.matrix, umeyama(src, dst)[:2], atol=1e-9)
        np.testing.assert_allclose(warp.matrix, SimilarityTransform.from_estimate(src, dst).params[:2], atol=1e-9)


def test_estimate_warp_rejects_wrong_landmark_shape():
    with pytest.raises(ValueError, match=r"expected landmarks of shape \(5, 2\), got \(68, 2\)"):
        estimate_warp(np.zeros((68, 2)), DLIB_TEMPLATE)


def test_estimate_warp_rejects_degenerate_landmarks():
    with pytest.raises(ValueError, match="degenerate landmarks"):
        estimate_warp(np.full((5, 2), 7.0), umeyama_template(SRC))
