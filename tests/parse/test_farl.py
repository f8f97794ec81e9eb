"""The FaRL parser: loading facer's TorchScript file by path, its I/O contract, and its class names.

The TorchScript modules here are built by the tests with facer's contract ((N, 3, 448, 448) RGB in
[0, 1] in, a tuple whose first element is (N, 19, h, w) logits out): they test the plumbing, not the
parsing quality, which needs facer's real file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from leam.data.images import load_image
from leam.errors import ModelError
from leam.face import AlignedFace, align_file
from leam.models.dlib_resnet import DLIB_TEMPLATE
from leam.parse import CLASSES, UNLABELLED, create_parser, list_parsers
from leam.parse._crop import head_crop_warp
from leam.parse.farl import FACER_CELEBM, TO_CLASSES
from leam.parse.landmarks import landmarks68

FACER_NAMES = [facer for facer, _ in FACER_CELEBM]
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")  # building the stand-ins


class FakeFaRL(nn.Module):
    """Class ``index`` inside each box (index, x0, y0, x1, y1) of the 448 crop, background elsewhere."""

    def __init__(self, boxes: list[tuple[int, int, int, int, int]], out_size: int = 448) -> None:
        super().__init__()
        self.register_buffer("boxes", torch.tensor(boxes, dtype=torch.int64))
        self.out_size = out_size

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] != 448 or x.shape[3] != 448:
            raise ValueError("expected (N, 3, 448, 448)")
        if bool(x.min() < 0.0) or bool(x.max() > 1.0):
            raise ValueError("expected RGB in [0, 1]")
        n, s = x.shape[0], self.out_size
        f = 448 // s
        logits = torch.zeros(n, 19, s, s)
        logits[:, 0] = 1.0
        for i in range(self.boxes.shape[0]):
            k, x0, y0, x1, y1 = [int(v) for v in self.boxes[i]]
            logits[:, k, y0 // f : y1 // f + 1, x0 // f : x1 // f + 1] = 2.0
        return logits, torch.zeros(n, 5, 2)


class TensorOnly(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], 19, 448, 448)


def script(module: nn.Module, path: Path) -> Path:
    torch.jit.save(torch.jit.script(module), str(path))
    return path


@pytest.fixture(scope="module")
def lfw_face(lfw_dir: Path) -> tuple[np.ndarray, AlignedFace]:
    path = sorted(lfw_dir.glob("*/*.jpg"))[0]
    return load_image(path), align_file(path, DLIB_TEMPLATE, largest_face=True)


def test_class_names_map_onto_celebamask_hq() -> None:
    assert FACER_NAMES == [
        "background", "neck", "face", "cloth", "rr", "lr", "rb", "lb", "re", "le", "nose", "imouth",
        "llip", "ulip", "hair", "eyeg", "hat", "earr", "neck_l",
    ]  # fmt: skip
    ours = dict(FACER_CELEBM)
    assert sorted(ours.values()) == sorted(CLASSES)  # each of the 19 classes exactly once
    expected = {
        "face": "skin", "le": "l_eye", "re": "r_eye", "lb": "l_brow", "rb": "r_brow", "lr": "l_ear", "rr": "r_ear",
        "earr": "ear_r", "imouth": "mouth", "ulip": "u_lip", "llip": "l_lip", "eyeg": "eye_g",
    }  # fmt: skip
    for facer, name in expected.items():
        assert ours[facer] == name and CLASSES[TO_CLASSES[FACER_NAMES.index(facer)]] == name


def test_registered_and_file_required(tmp_path) -> None:
    assert "farl" in list_parsers()
    with pytest.raises(ModelError, match=r"supply face_parsing\.farl\.celebm\.main_ema_181500_jit\.pt"):
        create_parser("farl")
    with pytest.raises(ModelError, match="not found at"):
        create_parser("farl", weights=tmp_path / "missing.pt")
    state_dict = tmp_path / "state.pt"
    torch.save({"w": torch.zeros(2)}, state_dict)
    with pytest.raises(ModelError, match="state.pt: cannot be loaded as a TorchScript module"):
        create_parser("farl", weights=state_dict)


def test_output_contract_is_checked(tmp_path, lfw_face) -> None:
    photo, face = lfw_face
    parser = create_parser("farl", weights=script(TensorOnly(), tmp_path / "tensor_only.pt"))
    with pytest.raises(ModelError, match="expected a tuple whose first element is"):
        parser.parse(photo, face)


def crop_point(photo, face, points: np.ndarray) -> tuple[int, int]:
    x, y = np.rint(head_crop_warp(photo, face, 448).to_chip(points.mean(0, keepdims=True))[0]).astype(int)
    return int(x), int(y)


@pytest.mark.parametrize("out_size", [448, 112])
def test_regions_land_on_the_face_with_leam_names(tmp_path, lfw_face, out_size) -> None:
    photo, face = lfw_face
    p68 = landmarks68(photo, face.face.box)
    boxes = []
    for facer, points, (half_w, half_h) in (
        ("nose", p68[30:31], (24, 24)),
        ("le", p68[42:48], (20, 12)),  # the person's left eye: dlib 42-47, on the image's right
        ("re", p68[36:42], (20, 12)),
    ):
        x, y = crop_point(photo, face, points)
        boxes.append((FACER_NAMES.index(facer), x - half_w, y - half_h, x + half_w, y + half_h))
    parser = create_parser("farl", weights=script(FakeFaRL(boxes, out_size), tmp_path / "fake.pt"))
    result = parser.parse(photo, face)
    labels = result.labels
    assert labels.shape == face.warp.size and labels.dtype == np.uint8
    assert result.parser == "farl" and sorted(result.classes) == sorted(CLASSES)
    assert set(np.unique(labels)) <= {CLASSES.index(c) for c in ("background", "nose", "l_eye", "r_eye")} | {UNLABELLED}
    for name, points in (("nose", p68[30:31]), ("l_eye", p68[42:48]), ("r_eye", p68[36:42])):
        x, y = np.rint(face.warp.to_chip(points.mean(0, keepdims=True))[0]).astype(int)
        assert labels[y, x] == CLASSES.index(name), name
    left_x = np.nonzero(labels == CLASSES.index("l_eye"))[1].mean()
    right_x = np.nonzero(labels == CLASSES.index("r_eye"))[1].mean()
    assert left_x > right_x  # person's left on the image's right
