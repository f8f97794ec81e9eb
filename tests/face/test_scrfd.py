"""SCRFD: leam's decoding by hand, against onnxruntime with a slow reference decoding, against dlib's boxes
on LFW, and its keypoints on insightface-aligned chips."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest

from leam.data.images import load_image
from leam.errors import ModelError
from leam.face import choose_face
from leam.face.scrfd import (
    ARCFACE_KEYPOINT_TEMPLATE,
    INPUT_SIZE,
    anchor_centres,
    decode,
    detect_faces_scrfd,
    letterbox,
    nms,
)
from leam.face.templates import ARCFACE_DST
from tests.conftest import SHARED_DATA


@pytest.fixture(scope="module")
def scrfd_path():
    from leam.models._onnx import onnx_missing
    from leam.models.scrfd_net import scrfd_file

    if onnx_missing():
        pytest.skip(onnx_missing())
    try:
        return scrfd_file()
    except ModelError as e:
        pytest.skip(str(e))


def _folder(name: str):
    folder = SHARED_DATA / name
    if not folder.is_dir():
        pytest.skip(f"shared test photos not found at {folder}")
    return folder


# --- decoding, worked by hand ----------------------------------------------------------------------------------


def test_anchor_centres_row_by_row_two_per_cell():
    centres = anchor_centres(16, 32, 8)  # 2 rows x 4 cols, 2 anchors each
    assert centres.shape == (16, 2)
    assert centres[:4].tolist() == [[0, 0], [0, 0], [8, 0], [8, 0]]
    assert centres[8].tolist() == [0, 8] and centres[15].tolist() == [24, 8]


def test_nms_keeps_best_and_drops_overlaps_above_threshold():
    boxes = np.array([[0, 0, 9, 9], [1, 0, 10, 9], [20, 20, 29, 29], [0, 0, 9, 4]], dtype=float)
    scores = np.array([0.6, 0.9, 0.7, 0.8])
    # best first: 1, 3, 2, 0. IoU(3, 1) = 45 / (50 + 100 - 45) = 0.43; IoU(0, 1) = 90 / 110 = 0.82; IoU(0, 3) = 0.5
    assert nms(boxes, scores, 0.4).tolist() == [1, 2]
    assert nms(boxes, scores, 0.43).tolist() == [1, 3, 2]
    assert nms(boxes, scores, 0.85).tolist() == [1, 3, 2, 0]


def test_decode_one_anchor_by_hand():
    size = (64, 64)
    outputs = {}
    for stride in (8, 16, 32):
        n = (64 // stride) ** 2 * 2
        outputs[f"score_{stride}"] = np.zeros((n, 1))
        outputs[f"bbox_{stride}"] = np.ones((n, 4))
        outputs[f"kps_{stride}"] = np.zeros((n, 10))
    # stride 16, cell (row 1, col 2), second anchor: index (1 * 4 + 2) * 2 + 1 = 13, centre (32, 16)
    outputs["score_16"][13] = 0.9
    outputs["bbox_16"][13] = [1.0, 0.5, 2.0, 1.5]  # left, top, right, bottom in strides
    outputs["kps_16"][13] = [-1, -0.5, 1, -0.5, 0, 0, -0.5, 0.5, 0.5, 0.5]
    outputs["score_8"][0] = 0.49  # below the threshold
    found = decode(outputs, scale=2.0, size=size)
    assert found.scores.tolist() == [0.9]
    np.testing.assert_allclose(found.boxes, [[8, 4, 32, 20]])  # (32 - 16, 16 - 8, 32 + 32, 16 + 24) / 2
    np.testing.assert_allclose(found.keypoints[0], [[8, 4], [24, 4], [16, 8], [12, 12], [20, 12]])


def test_letterbox_keeps_aspect_top_left():
    image = np.full((100, 50, 3), 255, dtype=np.uint8)
    blob, scale = letterbox(image)
    assert blob.shape == (1, 3, *INPUT_SIZE) and blob.dtype == np.float32
    assert scale == 6.4  # 100 -> 640 rows, 50 -> 320 columns
    assert np.allclose(blob[0, :, :, :320], 127.5 / 128) and np.allclose(blob[0, :, :, 320:], -127.5 / 128)


def test_face_module_stays_torch_free():
    code = "import sys, leam.face.scrfd; print('torch' in sys.modules, 'leam.models' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_not_an_onnx_file_is_a_model_error(tmp_path, scrfd_path):
    from leam.models.scrfd_net import load_scrfd

    bad = tmp_path / "scrfd.onnx"
    bad.write_bytes(b"not a graph")
    with pytest.raises(ModelError, match="not an ONNX model"):
        load_scrfd(bad)


# --- against onnxruntime with a slow, obvious reference ---------------------------------------------------------


def _reference_detect(session, image: np.ndarray, threshold=0.5, nms_iou=0.4) -> list[tuple[list, float, list]]:
    """insightface's procedure, written out plainly: fit into 640x640 (top-left), run onnxruntime,
    loop over every anchor of every stride, greedy NMS by pairs."""
    from PIL import Image

    h, w = image.shape[:2]
    if h / w > 1:
        new_h, new_w = 640, int(640 / (h / w))
    else:
        new_w, new_h = 640, int(640 * (h / w))
    canvas = np.zeros((640, 640, 3), dtype=np.float32)
    canvas[:new_h, :new_w] = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
    blob = ((canvas - 127.5) / 128.0).transpose(2, 0, 1)[None].astype(np.float32)
    names = [o.name for o in session.get_outputs()]
    out = dict(zip(names, session.run(None, {session.get_inputs()[0].name: blob})))
    det_scale = new_h / h
    found = []
    for stride in (8, 16, 32):
        cols = 640 // stride
        score, bbox, kps = out[f"score_{stride}"][0], out[f"bbox_{stride}"][0], out[f"kps_{stride}"][0]
        for i in range(score.shape[0]):
            if score[i, 0] < threshold:
                continue
            cell = i // 2
            cx, cy = (cell % cols) * stride, (cell // cols) * stride
            d = [float(v) * stride for v in bbox[i]]
            box = [(cx - d[0]) / det_scale, (cy - d[1]) / det_scale, (cx + d[2]) / det_scale, (cy + d[3]) / det_scale]
            points = [[(cx + kps[i, 2 * k] * stride) / det_scale, (cy + kps[i, 2 * k + 1] * stride) / det_scale]
                      for k in range(5)]
            found.append((box, float(score[i, 0]), points))
    found.sort(key=lambda f: -f[1])
    kept = []
    for cand in found:
        if all(_iou_inclusive(cand[0], k[0]) <= nms_iou for k in kept):
            kept.append(cand)
    return kept


def _iou_inclusive(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = iw * ih
    area = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / (area - inter)


def _photos() -> list:
    lfw_demo = _folder("lfw-demo")
    raw = _folder("raw-photos")
    people = sorted(p for p in lfw_demo.iterdir() if p.is_dir())[:6]
    return [sorted(p.glob("*.jpg"))[0] for p in people] + [raw / "couple.jpg", raw / "selfie-many-people.jpg"]


def test_matches_onnxruntime_and_reference_decoding(scrfd_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    session = onnxruntime.InferenceSession(str(scrfd_path), providers=["CPUExecutionProvider"])
    total = 0
    for path in _photos():
        image = load_image(path)
        expected = sorted(_reference_detect(session, image), key=lambda f: -(f[0][2] - f[0][0]) * (f[0][3] - f[0][1]))
        faces = detect_faces_scrfd(image)
        assert len(faces) == len(expected), path.name
        for face, (box, score, points) in zip(faces, expected):
            assert np.abs(np.array(face.box) - box).max() <= 1.0, path.name
            np.testing.assert_allclose(face.landmarks, points, atol=1.0, err_msg=path.name)
            assert face.score == pytest.approx(score, abs=1e-4)
        total += len(faces)
    assert total >= 6 + 2 + 3  # one per LFW photo, the couple, several in the selfie


# --- against dlib on LFW, and insightface's own alignment -------------------------------------------------------


def _iou(a, b) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_central_face_overlaps_dlibs_on_lfw(lfw_dlib_faces, scrfd_path):
    ious = []
    for f in lfw_dlib_faces[:20]:
        face = choose_face(detect_faces_scrfd(f.image), f.image.shape[:2], f.path.name, "central")
        ious.append(_iou(face.box, (f.rect.left(), f.rect.top(), f.rect.right(), f.rect.bottom())))
    assert len(ious) == 20 and min(ious) > 0.5, np.round(ious, 2)


def test_keypoints_of_insightface_chips_land_on_arcface_dst(scrfd_path):
    """On chips insightface aligned (glint-aligned, padded by 56 px of black), SCRFD's keypoints fall
    within a few pixels of ``arcface_dst`` (3.2 px on average over these 12; a swapped order would be ~35)."""
    folder = _folder("glint-aligned")
    with open(folder / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))[::40]
    distances = []
    for row in rows:
        canvas = np.zeros((224, 224, 3), dtype=np.uint8)
        canvas[56:168, 56:168] = load_image(folder / row["path"])
        faces = detect_faces_scrfd(canvas)
        assert len(faces) == 1, row["path"]
        distances.append(np.linalg.norm(faces[0].landmarks - 56 - ARCFACE_DST, axis=1))
    distances = np.array(distances)
    assert distances.mean() < 4.5 and np.median(distances[:, :2]) < 3.0, distances.round(1)
    assert ARCFACE_KEYPOINT_TEMPLATE.points is ARCFACE_DST


# --- leam.face: --detector scrfd's library side ------------------------------------------------------------------


def test_align_file_with_scrfd_fits_its_keypoints_to_arcface_dst(scrfd_path):
    """SCRFD's keypoints go onto arcface_dst directly; on 6 lfw-demo photos the dlib-based ArcFace alignment
    puts those keypoints 3.8 px (mean over 24 photos) from arcface_dst, SCRFD's own 3.0 px."""
    from leam.face import align_file, estimate_warp
    from leam.face.templates import ARCFACE_TEMPLATE

    for path in _photos()[:6]:
        scrfd = align_file(path, ARCFACE_TEMPLATE, "central", detector="scrfd")
        dlib = align_file(path, ARCFACE_TEMPLATE, "central")
        assert scrfd.chip.shape == (112, 112, 3)
        expected = choose_face(detect_faces_scrfd(load_image(path)), scrfd.photo_shape, path.name, "central")
        np.testing.assert_array_equal(scrfd.face.landmarks, expected.landmarks)
        fitted = estimate_warp(expected.landmarks, ARCFACE_KEYPOINT_TEMPLATE)
        np.testing.assert_allclose(scrfd.warp.matrix, fitted.matrix)
        own = np.linalg.norm(scrfd.warp.to_chip(scrfd.face.landmarks) - ARCFACE_DST, axis=1).mean()
        via_dlib = np.linalg.norm(dlib.warp.to_chip(scrfd.face.landmarks) - ARCFACE_DST, axis=1).mean()
        assert own < 7 and via_dlib < 8, (path.name, own, via_dlib)


def test_scrfd_refuses_models_not_aligned_like_arcface():
    from leam.errors import FaceError
    from leam.face import align_file, detector_template, find_faces
    from leam.face.templates import DLIB_TEMPLATE, FACENET_TEMPLATE

    assert detector_template(DLIB_TEMPLATE, "dlib") is DLIB_TEMPLATE
    for template in (DLIB_TEMPLATE, FACENET_TEMPLATE):
        with pytest.raises(FaceError, match="use --detector dlib"):
            align_file(_photos()[0], template, detector="scrfd")
    with pytest.raises(ValueError, match="expected a detector"):
        find_faces(np.zeros((8, 8, 3), np.uint8), "mtcnn")
