"""Face detection and selection on real photos, synthetic images and EXIF-rotated files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from leam.data.images import load_image
from leam.errors import FaceError, MultipleFacesError, NoFaceError
from leam.face import Face, align_file, align_photo, detect_faces, select_face
from leam.face.detect import DETECT_MAX_SIDE
from leam.models.dlib_resnet import DLIB_TEMPLATE

LFW_PHOTO = "Aaron_Peirsol/Aaron_Peirsol_0001.jpg"
EXIF_ORIENTATION = 0x0112


def inside(points: np.ndarray, box: tuple[int, int, int, int], margin: float = 0.0) -> bool:
    left, top, right, bottom = box
    x, y = points[:, 0], points[:, 1]
    return bool(
        (x >= left - margin).all()
        and (x <= right + margin).all()
        and (y >= top - margin).all()
        and (y <= bottom + margin).all()
    )


@pytest.fixture(scope="module")
def couple(raw_photos_dir):
    path = raw_photos_dir / "couple.jpg"
    return path, load_image(path)


def test_lfw_photo_has_one_face(lfw_dir):
    photo = load_image(lfw_dir / LFW_PHOTO)
    faces = detect_faces(photo)
    assert len(faces) == 1
    face = faces[0]
    assert face.landmarks.shape == (5, 2) and face.score > 0
    assert inside(face.landmarks, face.box, margin=10)
    assert select_face(faces, "x") is face


def test_lfw_photo_matches_dlib(lfw_dlib_faces):
    for f in lfw_dlib_faces[:8]:
        face = detect_faces(f.image)[0]  # the largest, as dlib's in the fixture
        assert face.box == (f.rect.left(), f.rect.top(), f.rect.right(), f.rect.bottom())
        np.testing.assert_array_equal(face.landmarks, f.landmarks)


def test_two_faces_without_a_rule_is_an_error(couple):
    path, photo = couple
    faces = detect_faces(photo)
    assert len(faces) == 2
    with pytest.raises(MultipleFacesError) as e:
        align_file(path, DLIB_TEMPLATE)
    message = str(e.value)
    assert "couple.jpg" in message and "2 faces" in message and "--face largest" in message
    for left, top, right, bottom in (f.box for f in faces):
        assert f"({left},{top},{right},{bottom})" in message
    assert e.value.boxes == [f.box for f in faces]
    assert isinstance(e.value, FaceError)


def test_largest_face_is_taken_on_request(couple):
    path, photo = couple
    faces = detect_faces(photo)
    biggest = max(faces, key=lambda f: f.area)
    assert faces[0] == biggest  # faces come largest first
    aligned = align_file(path, DLIB_TEMPLATE, largest_face=True)
    assert aligned.face.box == biggest.box
    assert aligned.chip.shape == (150, 150, 3)
    assert aligned.photo_shape == photo.shape[:2]
    assert aligned.source == str(path)


def test_select_face_by_hand():
    small = Face((0, 0, 10, 10), np.zeros((5, 2)), 1.0)
    big = Face((0, 0, 30, 20), np.zeros((5, 2)), 0.5)
    assert big.area == 600 and small.area == 100
    assert select_face([big, small], "p.jpg", largest=True) is big
    with pytest.raises(MultipleFacesError, match=r"p.jpg: 2 faces found at .* \(0,0,30,20\), \(0,0,10,10\)"):
        select_face([big, small], "p.jpg")
    with pytest.raises(NoFaceError, match="p.jpg: no face found"):
        select_face([], "p.jpg", largest=True)


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: np.zeros((240, 320, 3), dtype=np.uint8),
        lambda rng: np.full((240, 320, 3), 200, dtype=np.uint8),
        lambda rng: rng.integers(0, 256, (300, 300, 3), dtype=np.uint8),
    ],
    ids=["black", "grey", "noise"],
)
def test_no_face_in_synthetic_images(make):
    photo = make(np.random.default_rng(3))
    assert detect_faces(photo) == []
    with pytest.raises(NoFaceError, match="synthetic.png: no face found"):
        align_photo(photo, DLIB_TEMPLATE, source="synthetic.png")


def test_no_face_error_names_the_file(tmp_path):
    path = tmp_path / "blank_wall.png"
    Image.fromarray(np.random.default_rng(5).integers(90, 110, (200, 260, 3), dtype=np.uint8)).save(path)
    with pytest.raises(NoFaceError, match="blank_wall.png: no face found"):
        align_file(path, DLIB_TEMPLATE, largest_face=True)


def test_large_raw_photo(raw_photos_dir):
    photo = load_image(raw_photos_dir / "img49.jpg")
    h, w = photo.shape[:2]
    assert max(h, w) > 2 * DETECT_MAX_SIDE  # detected on a downscaled copy
    faces = detect_faces(photo)
    assert len(faces) == 1
    face = faces[0]
    left, top, right, bottom = face.box
    assert 0 <= left < right <= w and 0 <= top < bottom <= h
    assert right - left > 500  # a big face, boxed in full-size pixels
    assert inside(face.landmarks, face.box, margin=0.1 * (right - left))


@pytest.mark.parametrize(
    ("orientation", "quarter_turns"),
    [(3, 2), (6, 1), (8, -1)],  # stored pixels = the upright photo turned counter-clockwise this often
)
def test_exif_rotated_photo_loads_upright(tmp_path, lfw_dir, orientation, quarter_turns):
    upright = load_image(lfw_dir / LFW_PHOTO)[10:240]  # 230 x 250: not square, so turns show in the shape
    stored = np.ascontiguousarray(np.rot90(upright, quarter_turns))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    path = tmp_path / f"rotated_{orientation}.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif)

    photo = load_image(path)
    assert photo.shape == upright.shape
    error = np.abs(photo.astype(int) - upright).mean()
    assert error < 3.0, f"orientation {orientation}: mean difference {error:.1f} from the upright photo"
    (face,) = detect_faces(photo)
    (ref,) = detect_faces(upright)
    assert np.abs(np.subtract(face.box, ref.box)).max() <= 6
    assert np.abs(face.landmarks - ref.landmarks).max() <= 4
