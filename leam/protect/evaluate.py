"""Does a protected photo still match its person? Measured as an attacker would: on the photo as saved.

``evaluate_photo`` takes the decoded saved file, detects faces afresh (dlib's HOG and five points),
keeps the face that overlaps the original face's box most (intersection over union ≥ 0.3; else the
face is "lost", which counts as no match), aligns it for each model, embeds it, and compares it
with the person's reference embeddings (from their unprotected photos):

* ``cosine``: cosine similarity to the mean reference embedding (the LEAM reference);
* ``match``: the share of reference photos the face is verified against — a pair is the same person
  when its distance (Euclidean, or 1 − cosine for cosine thresholds) is below the model's own
  threshold (``ModelSpec.threshold`` / ``threshold_metric``);
* ``match_any``: whether at least one reference photo verifies it (an attacker with a gallery).

``visible_change`` measures what a viewer sees: SSIM and PSNR (scikit-image, data range 255) over
the whole photo and over the face box, and the L0 / L2 / L∞ size of the change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from skimage.metrics import structural_similarity

from leam.face import Face, detector_template, estimate_warp, find_faces, warp_to_chip
from leam.metrics.occlusion import cosine
from leam.metrics.verification import pair_distances
from leam.models import FaceModel
from leam.study.verification import spec_distance_threshold

MIN_IOU = 0.3


def box_iou(a: Sequence[int], b: Sequence[int]) -> float:
    """Intersection over union of two boxes (left, top, right, bottom)."""
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def redetect(photo: np.ndarray, original_box: Sequence[int], detector: str = "dlib") -> Face | None:
    """The face in ``photo`` (found by ``detector``) overlapping ``original_box`` most (IoU ≥ ``MIN_IOU``), or None."""
    faces = find_faces(photo, detector)
    scored = [(box_iou(f.box, original_box), f) for f in faces]
    scored = [s for s in scored if s[0] >= MIN_IOU]
    return max(scored, key=lambda s: s[0])[1] if scored else None


def match_scores(model: FaceModel, embedding: np.ndarray, references: np.ndarray) -> dict:
    """cosine (to the mean reference), match (share of references verified) and match_any for one (D,)
    embedding against ``references`` (R, D)."""
    refs = np.atleast_2d(references)
    stacked = np.vstack([embedding[None], refs])
    pairs = np.stack([np.zeros(len(refs), int), np.arange(1, len(refs) + 1)], axis=1)
    dist = pair_distances(stacked, pairs, model.spec.threshold_metric)
    same = dist < spec_distance_threshold(model)
    return {"cosine": float(cosine(embedding, refs.mean(0))[0]), "match": float(same.mean()),
            "match_any": bool(same.any()), "distance_min": float(dist.min())}


def evaluate_photo(
    photo: np.ndarray, original_box: Sequence[int], models: Sequence[FaceModel],
    references: Mapping[str, np.ndarray], detector: str = "dlib", source: str = "the protected photo",
) -> list[dict]:
    """One row per model: face_found, cosine, match, match_any, distance_min (NaN / no match when lost);
    ``NonFiniteError`` naming the model and ``source`` when an embedding holds NaN or Inf."""
    face = redetect(photo, original_box, detector)
    rows = []
    for m in models:
        if face is None:
            rows.append({"model": m.spec.name, "face_found": False, "cosine": np.nan, "match": 0.0,
                         "match_any": False, "distance_min": np.nan})
            continue
        chip = warp_to_chip(photo, estimate_warp(face.landmarks, detector_template(m.spec.template, detector)))
        emb = m.embed(chip[None], names=[source])[0]
        rows.append({"model": m.spec.name, "face_found": True, **match_scores(m, emb, references[m.spec.name])})
    return rows


BLOCK_PIXELS = 1 << 20  # measured a band of about this many pixels at a time: a large photo costs little more
WIN = 7  # scikit-image's SSIM window


def _bands(shape: tuple[int, ...], pad: int = 0):
    """Row slices of about ``BLOCK_PIXELS`` pixels covering rows [pad, height - pad)."""
    height, width = shape[:2]
    step = max(1, BLOCK_PIXELS // max(1, width))
    return [slice(r, min(r + step, height - pad)) for r in range(pad, height - pad, step)]


def _difference(original: np.ndarray, changed: np.ndarray) -> tuple[int, int, int]:
    """(changed pixels, sum of squared differences, largest difference) of two uint8 images, band by band."""
    count = total = largest = 0
    for rows in _bands(original.shape):
        d = np.subtract(changed[rows], original[rows], dtype=np.int16)
        count += int(np.any(d != 0, axis=-1).sum()) if d.ndim == 3 else int((d != 0).sum())
        total += int(np.square(d, dtype=np.int32).sum(dtype=np.int64))
        largest = max(largest, int(np.abs(d).max(initial=0)))
    return count, total, largest


def psnr(original: np.ndarray, changed: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for uint8 images (peak 255); inf when identical."""
    mse = _difference(original, changed)[1] / original.size if original.size else 0.0
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def ssim(original: np.ndarray, changed: np.ndarray) -> float:
    """Mean structural similarity of two (H, W, 3) uint8 images: scikit-image's defaults (7 x 7 uniform
    window, K1 0.01, K2 0.03, sample covariances), data range 255, averaged over the channels. Computed
    band by band (each band with the 3 rows of context its windows need; the mean over the same pixels
    scikit-image averages, those 3 or more pixels from the edges), so a 60-megapixel photo needs no
    more memory than a small one: equal to ``structural_similarity`` on the whole photo to ~1e-12."""
    height, width = original.shape[:2]
    if min(height, width) < WIN:
        return float("nan")
    pad = (WIN - 1) // 2
    total = 0.0
    for rows in _bands(original.shape, pad):
        band = slice(rows.start - pad, rows.stop + pad)
        _, full = structural_similarity(original[band], changed[band], data_range=255, channel_axis=2, full=True)
        total += float(full[pad:-pad, pad:width - pad].sum())
    return total / (original.shape[2] * (height - 2 * pad) * (width - 2 * pad))


def visible_change(original: np.ndarray, changed: np.ndarray, box: Sequence[int]) -> dict:
    """SSIM and PSNR over the photo and its face box, and the changed pixels' count, L2 and L∞ norms."""
    if original.shape != changed.shape:
        raise ValueError(f"expected images of one shape, got {original.shape} and {changed.shape}")
    h, w = original.shape[:2]
    left, top, right, bottom = max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3])
    crop = (slice(top, bottom), slice(left, right))
    count, squares, largest = _difference(original, changed)
    return {
        "ssim": ssim(original, changed), "psnr": psnr(original, changed),
        "ssim_face": ssim(original[crop], changed[crop]), "psnr_face": psnr(original[crop], changed[crop]),
        "changed_pixels": count, "l2": float(np.sqrt(squares)), "linf": float(largest),
    }
