"""Where dlib's five landmarks fall in ArcFace-aligned chips, and how well fitting them reproduces
insightface's alignment: the measurement behind ``leam.models.iresnet.ARCFACE_TEMPLATE``.

Each chip of ``../shared/data/glint-aligned`` (112x112, aligned by insightface) is padded by 56 px
(edge pixels) and enlarged 2x so dlib's detector finds the face; dlib's 5 landmarks are mapped back
into the chip. The template is their mean. Then, with the template fitted on half of the identities,
the other half are aligned from their landmarks (Umeyama similarity, as leam does), and the printed
error is how far insightface's five target points (``arcface_dst``) move: 0 px would be insightface's
own alignment. Alternatives are scored the same way.

    python benchmarks/arcface_template.py            # about a minute on 2 cores
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.transform import SimilarityTransform

from leam.data.images import load_image
from leam.face import detect_faces
from leam.models.iresnet import ARCFACE_DST, ARCFACE_TEMPLATE

PAD, UP = 56, 2


def dlib_points_in_chip(path: Path) -> np.ndarray | None:
    chip = load_image(path)
    photo = np.pad(chip, ((PAD, PAD), (PAD, PAD), (0, 0)), mode="edge")
    photo = np.asarray(Image.fromarray(photo).resize((photo.shape[1] * UP,) * 2, Image.BILINEAR))
    faces = detect_faces(photo)
    return (faces[0].landmarks + 0.5) / UP - 0.5 - PAD if faces else None


def displacement(src: np.ndarray, dst: np.ndarray) -> float:
    """Mean distance (px) by which the similarity src → dst moves insightface's five points."""
    m = SimilarityTransform.from_estimate(src, dst).params
    return float(np.linalg.norm(ARCFACE_DST @ m[:2, :2].T + m[:2, 2] - ARCFACE_DST, axis=1).mean())


def fits(points: np.ndarray, template: np.ndarray) -> dict[str, list[float]]:
    eyes = lambda p: np.array([p[2:4].mean(0), p[0:2].mean(0), p[4]])  # noqa: E731 - eye centres + nose
    return {
        "5 dlib points -> their mean positions (leam)": [displacement(p, template) for p in points],
        "eye centres + nose -> their mean positions": [displacement(eyes(p), eyes(template)) for p in points],
        "eye centres -> arcface_dst eyes, nose -> mean": [
            displacement(eyes(p), np.array([ARCFACE_DST[0], ARCFACE_DST[1], template[4]])) for p in points
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/glint-aligned")
    args = parser.parse_args()
    files = sorted(Path(args.data).glob("*/*.png"))
    found = [(f.parent.name, p) for f in files if (p := dlib_points_in_chip(f)) is not None]
    print(f"dlib found a face in {len(found)} of {len(files)} chips")
    identities = sorted({i for i, _ in found})
    halves = (set(identities[::2]), set(identities[1::2]))
    scores: dict[str, list[float]] = {}
    for fit_on, test_on in (halves, halves[::-1]):
        template = np.mean([p for i, p in found if i in fit_on], axis=0)
        for name, errors in fits(np.array([p for i, p in found if i in test_on]), template).items():
            scores.setdefault(name, []).extend(errors)
    print("held-out identities, displacement of insightface's 5 points (px): mean / median / 95th percentile")
    for name, errors in scores.items():
        e = np.array(errors)
        print(f"  {name:<48} {e.mean():.2f} / {np.median(e):.2f} / {np.percentile(e, 95):.2f}")
    template = np.mean([p for _, p in found], axis=0)
    print("template from all chips (x, y), dlib's order:", np.round(template, 2).tolist())
    print("leam's ARCFACE_TEMPLATE:                       ", ARCFACE_TEMPLATE.points.tolist())


if __name__ == "__main__":
    main()
