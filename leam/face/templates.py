"""Alignment templates: where a face's five landmarks land in a model's aligned chip, and the chip's size.

These are plain data at the bottom of leam (NumPy only): ``face.align`` fits warps to them and each
model's spec (``leam.models``) names the one it was trained with, so nothing here imports a model.
Every template states its chip size (``DLIB_CHIP``, ``FACENET_CHIP``, ``ARCFACE_CHIP``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AlignmentTemplate:
    """Where the five landmarks of a face land in a model's aligned chip.

    ``points`` are (x, y) pixel targets in the chip for the landmarks in the order of
    ``landmark_order``; ``method`` names how the warp is fitted ("dlib": as dlib's
    ``get_face_chip_details``; "umeyama": a least-squares similarity from image to chip).
    """

    name: str
    size: tuple[int, int]  # (height, width) of the chip
    points: np.ndarray  # (5, 2) float, chip pixel coordinates (x, y)
    landmark_order: tuple[str, ...]
    method: str = "umeyama"


# dlib's 5-point landmarks, in the order of its shape predictor (and of every template below).
DLIB_LANDMARK_ORDER = ("right_eye_outer", "right_eye_inner", "left_eye_outer", "left_eye_inner", "nose_base")

# --- dlib-resnet: a 150 x 150 chip, dlib's default padding 0.25 ---------------------------------------------
DLIB_CHIP = 150
DLIB_PADDING = 0.25  # dlib's default chip padding for its face-recognition model

# dlib's get_face_chip_details() targets for its 5-point landmarks, in a unit square with no padding.
_DLIB_5PT_UNIT = np.array(
    [
        [0.8595674595992, 0.2134981538014],  # part 0: outer corner of the eye on the image's right
        [0.6460604764104, 0.2289674387677],  # part 1: inner corner of that eye
        [0.1205750620789, 0.2137274526848],  # part 2: outer corner of the eye on the image's left
        [0.3340850613712, 0.2290642403242],  # part 3: inner corner of that eye
        [0.4901123135679, 0.6277975316475],  # part 4: base of the nose
    ]
)
DLIB_TEMPLATE = AlignmentTemplate(
    name="dlib-150-0.25",
    size=(DLIB_CHIP, DLIB_CHIP),
    points=(_DLIB_5PT_UNIT + DLIB_PADDING) / (2 * DLIB_PADDING + 1) * DLIB_CHIP,
    landmark_order=DLIB_LANDMARK_ORDER,
    method="dlib",
)

# --- FaceNet (Sandberg's Inception-ResNet-v1): a 160 x 160 chip -----------------------------------------------
# Sandberg's LFW evaluation crops the MTCNN face box plus 16 px on each side and resizes it to 160x160; the
# points are the per-coordinate medians of where dlib's five landmarks fall in such crops of 397 LFW photos
# (see leam/models/facenet.py).
FACENET_CHIP = 160
FACENET_TEMPLATE = AlignmentTemplate(
    name="facenet-160-mtcnn-margin32",
    size=(FACENET_CHIP, FACENET_CHIP),
    points=np.array(  # dlib's 5-point order (see DLIB_TEMPLATE): eye corners right/left, nose base
        [
            [118.8, 66.3],
            [97.9, 67.0],
            [44.2, 67.3],
            [65.4, 67.5],
            [82.8, 99.1],
        ]
    ),
    landmark_order=DLIB_LANDMARK_ORDER,
    method="umeyama",
)

# --- ArcFace (insightface's IResNets): a 112 x 112 chip -------------------------------------------------------
ARCFACE_CHIP = 112

# insightface's 5-point ArcFace targets in a 112x112 chip (``arcface_dst`` in face_align.py):
# eye centres (image left, image right), nose tip, mouth corners (image left, image right).
ARCFACE_DST = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)

# insightface aligns on eye centres, nose tip and mouth corners; leam's landmarks are dlib's eye corners
# and nose base (DLIB_TEMPLATE's order). So the template holds where dlib's five points lie, on average,
# in chips insightface aligned: 451 Glint360K chips (../shared/data/glint-aligned, padded and enlarged
# for dlib's detector; benchmarks/arcface_template.py). Fitted on half of the identities, the other half
# aligned this way move insightface's five points by 2.3 px on average (median 2.0, 95th percentile 5.1)
# in the 112 px chip; eye centres (means of the corners) + nose alone do the same (2.3 px), eye centres
# put on arcface_dst's a little worse (2.4 px). Limits: no mouth points, so the vertical scale and roll
# come from eyes and nose only; tilted, turned or expressive faces differ more from insightface's crop.
_DLIB_POINTS_IN_ARCFACE_CHIP = np.array(
    [
        [80.11, 52.11],  # eye on the image's right, outer corner
        [66.11, 52.99],  # its inner corner
        [30.85, 52.20],  # eye on the image's left, outer corner
        [44.94, 53.01],  # its inner corner
        [55.93, 80.54],  # base of the nose
    ]
)
ARCFACE_TEMPLATE = AlignmentTemplate(
    name="arcface-112-dlib5",
    size=(ARCFACE_CHIP, ARCFACE_CHIP),
    points=_DLIB_POINTS_IN_ARCFACE_CHIP,
    landmark_order=DLIB_LANDMARK_ORDER,
    method="umeyama",
)

# insightface's five keypoints (SCRFD's, ``leam.face.scrfd``); left and right as seen in the image, as
# DLIB_LANDMARK_ORDER's. arcface_dst is defined in this order, so SCRFD's points need no approximation.
KEYPOINT_ORDER = ("left_eye_centre", "right_eye_centre", "nose_tip", "left_mouth_corner", "right_mouth_corner")
ARCFACE_KEYPOINT_TEMPLATE = AlignmentTemplate(
    name="arcface-112-insightface5",
    size=(ARCFACE_CHIP, ARCFACE_CHIP),
    points=ARCFACE_DST,
    landmark_order=KEYPOINT_ORDER,
    method="umeyama",
)

__all__ = [
    "ARCFACE_CHIP",
    "ARCFACE_DST",
    "ARCFACE_KEYPOINT_TEMPLATE",
    "KEYPOINT_ORDER",
    "ARCFACE_TEMPLATE",
    "DLIB_CHIP",
    "DLIB_LANDMARK_ORDER",
    "DLIB_PADDING",
    "DLIB_TEMPLATE",
    "FACENET_CHIP",
    "FACENET_TEMPLATE",
    "AlignmentTemplate",
]
