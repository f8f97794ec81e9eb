"""insightface's SCRFD face detector: the photo in, faces with insightface's five keypoints out.

SCRFD (``scrfd_500m_bnkps.onnx``, run by ``leam.models.scrfd_net``, imported only when a photo is
detected, so this module stays NumPy-only) sees the photo resized, keeping its aspect, into the top-left
corner of a black 640x640 canvas, as RGB scaled by (x − 127.5) / 128. For each stride (8, 16, 32) it
predicts, at every cell of its feature map and for each of the cell's two anchors, a face score, the
distances from the cell's corner (the anchor centre, ``(col, row) * stride``) to the box's four sides
and the offsets of the five keypoints, all in strides. ``decode`` turns these into photo pixels, keeps
scores of at least 0.5 and suppresses boxes overlapping a better one by more than 0.4 (IoU, pixel
areas counted inclusively as insightface does).

The keypoints are insightface's (``KEYPOINT_ORDER``): the centres of the eyes, the nose tip and the mouth
corners, which ``ARCFACE_KEYPOINT_TEMPLATE`` (insightface's ``arcface_dst``) takes directly.
Resizing uses PIL's bilinear filter (insightface uses OpenCV's, which does not smooth when shrinking).

>>> faces = detect_faces_scrfd(load_image("photo.jpg"))    # doctest: +SKIP
>>> faces[0].box, faces[0].landmarks.shape
((71, 62, 172, 196), (5, 2))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leam.face.detect import Face
from leam.face.templates import ARCFACE_KEYPOINT_TEMPLATE, KEYPOINT_ORDER  # noqa: F401 (re-exported)

INPUT_SIZE = (640, 640)  # (height, width) of the canvas the photo is fitted into
STRIDES = (8, 16, 32)
ANCHORS_PER_CELL = 2
SCORE_THRESHOLD = 0.5
NMS_THRESHOLD = 0.4
PIXEL_MEAN, PIXEL_SCALE = 127.5, 128.0

@dataclass(frozen=True)
class Detections:
    """SCRFD's detections in photo pixels: ``boxes`` (N, 4) x1, y1, x2, y2; ``scores`` (N,);
    ``keypoints`` (N, 5, 2) in ``KEYPOINT_ORDER``."""

    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray


def letterbox(image: np.ndarray, size: tuple[int, int] = INPUT_SIZE) -> tuple[np.ndarray, float]:
    """The (1, 3, H, W) float32 blob of an (h, w, 3) uint8 RGB ``image`` resized, aspect kept, into the
    top-left of a black ``size`` canvas, normalised; and the scale (canvas pixels per photo pixel)."""
    from PIL import Image

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB photo, got shape {image.shape} of {image.dtype}")
    height, width = size
    h, w = image.shape[:2]
    if h / w > height / width:
        new_h, new_w = height, max(1, int(height * w / h))
    else:
        new_h, new_w = max(1, int(width * h / w)), width
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    canvas[:new_h, :new_w] = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
    blob = (canvas.astype(np.float32) - PIXEL_MEAN) / PIXEL_SCALE
    return blob.transpose(2, 0, 1)[None], new_h / h


def anchor_centres(height: int, width: int, stride: int, per_cell: int = ANCHORS_PER_CELL) -> np.ndarray:
    """(rows * cols * per_cell, 2) anchor centres (x, y) of a ``height`` x ``width`` canvas at ``stride``:
    cells row by row, each cell's anchors one after another.

    >>> anchor_centres(16, 16, 8, 1).tolist()
    [[0.0, 0.0], [8.0, 0.0], [0.0, 8.0], [8.0, 8.0]]
    """
    rows, cols = height // stride, width // stride
    ys, xs = np.mgrid[:rows, :cols]
    centres = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float64) * stride
    return np.repeat(centres, per_cell, axis=0)


def decode(
    outputs: dict[str, np.ndarray], scale: float, size: tuple[int, int] = INPUT_SIZE,
    score_threshold: float = SCORE_THRESHOLD, nms_threshold: float = NMS_THRESHOLD,
) -> Detections:
    """SCRFD's outputs by name (``score_8`` (N, 1), ``bbox_8`` (N, 4), ``kps_8`` (N, 10), ... per stride)
    as detections in photo pixels (canvas pixels / ``scale``), best score first, after NMS."""
    boxes, scores, keypoints = [], [], []
    for stride in STRIDES:
        centres = anchor_centres(*size, stride)
        score = np.asarray(outputs[f"score_{stride}"], dtype=np.float64).reshape(-1)
        if score.shape[0] != centres.shape[0]:
            raise ValueError(f"expected {centres.shape[0]} scores at stride {stride}, got {score.shape[0]}")
        keep = score >= score_threshold
        dist = np.asarray(outputs[f"bbox_{stride}"], dtype=np.float64).reshape(-1, 4)[keep] * stride
        offsets = np.asarray(outputs[f"kps_{stride}"], dtype=np.float64).reshape(-1, 5, 2)[keep] * stride
        c = centres[keep]
        boxes.append(np.concatenate([c - dist[:, :2], c + dist[:, 2:]], axis=1))
        keypoints.append(c[:, None, :] + offsets)
        scores.append(score[keep])
    boxes_all, scores_all, kps_all = (np.concatenate(a) for a in (boxes, scores, keypoints))
    kept = nms(boxes_all, scores_all, nms_threshold)
    return Detections(boxes_all[kept] / scale, scores_all[kept], kps_all[kept] / scale)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float = NMS_THRESHOLD) -> np.ndarray:
    """Indices of the boxes (N, 4) kept by greedy non-maximum suppression, best score first: a box goes
    when its IoU with a kept one exceeds ``threshold`` (areas counted inclusively, (x2 − x1 + 1) ...)."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    kept = []
    while order.size:
        best, rest = order[0], order[1:]
        kept.append(best)
        iw = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        ih = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        inter = iw * ih
        order = rest[inter / (areas[best] + areas[rest] - inter) <= threshold]
    return np.array(kept, dtype=np.int64)


def scrfd_detections(image: np.ndarray, size: tuple[int, int] = INPUT_SIZE) -> Detections:
    """SCRFD's detections in an (H, W, 3) uint8 RGB photo (the detector converted on first use)."""
    from leam.models.scrfd_net import load_scrfd

    blob, scale = letterbox(image, size)
    return decode(load_scrfd()(blob), scale, size)


def detect_faces_scrfd(image: np.ndarray) -> list[Face]:
    """All faces in an (H, W, 3) uint8 RGB photo found by SCRFD, largest first; each ``Face`` carries
    insightface's five keypoints (``KEYPOINT_ORDER``) as its landmarks, for ``ARCFACE_KEYPOINT_TEMPLATE``."""
    found = scrfd_detections(image)
    faces = [
        Face(tuple(int(round(v)) for v in box), kps.copy(), float(score))
        for box, kps, score in zip(found.boxes, found.keypoints, found.scores)
    ]
    return sorted(faces, key=lambda f: f.area, reverse=True)
