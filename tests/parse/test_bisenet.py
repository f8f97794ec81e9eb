"""The BiSeNet parser: its state-dict format, strict loading, and its I/O contract on a real face.

The weights are a seeded random initialisation of leam's BiSeNet saved as a state dict, the format
of face-parsing.PyTorch's ``79999_iter.pth``: they test the plumbing, not the parsing quality.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.draw import polygon as fill_polygon
from torch import nn

from leam.data.images import load_image
from leam.errors import ModelError
from leam.face import AlignedFace, align_file
from leam.face.align import warp_to_chip
from leam.models.dlib_resnet import DLIB_TEMPLATE
from leam.parse import CLASSES, UNLABELLED, create_parser, list_parsers
from leam.parse._crop import head_crop_warp
from leam.parse.bisenet import MEAN, STD, BiSeNet
from leam.parse.landmarks import landmarks68

NOSE = CLASSES.index("nose")


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return BiSeNet().state_dict()


@pytest.fixture(scope="module")
def weights(state, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bisenet") / "79999_iter.pth"
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def lfw_face(lfw_dir: Path) -> tuple[np.ndarray, AlignedFace]:
    path = sorted(lfw_dir.glob("*/*.jpg"))[0]
    return load_image(path), align_file(path, DLIB_TEMPLATE, largest_face=True)


def save(tmp_path: Path, state: dict) -> Path:
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    return path


# ------------------------------------------------------------------------------ the state-dict format


def test_parameter_names_and_shapes_of_the_release() -> None:
    sd = BiSeNet().state_dict()
    assert len(sd) == 191  # tensors in 79999_iter.pth, num_batches_tracked included
    shapes = {
        "cp.resnet.conv1.weight": (64, 3, 7, 7),
        "cp.resnet.layer2.0.downsample.0.weight": (128, 64, 1, 1),
        "cp.resnet.layer4.1.bn2.running_var": (512,),
        "cp.arm16.conv.conv.weight": (128, 256, 3, 3),
        "cp.arm32.conv_atten.weight": (128, 128, 1, 1),
        "cp.conv_avg.conv.weight": (128, 512, 1, 1),
        "cp.conv_head16.bn.weight": (128,),
        "ffm.convblk.conv.weight": (256, 256, 1, 1),
        "ffm.conv1.weight": (64, 256, 1, 1),
        "ffm.conv2.weight": (256, 64, 1, 1),
        "conv_out.conv.conv.weight": (256, 256, 3, 3),
        "conv_out.conv_out.weight": (19, 256, 1, 1),
        "conv_out16.conv.conv.weight": (64, 128, 3, 3),
        "conv_out32.conv_out.weight": (19, 64, 1, 1),
    }
    for name, shape in shapes.items():
        assert tuple(sd[name].shape) == shape, name
    assert not any(k.startswith(("sp.", "cp.resnet.fc")) for k in sd)


def test_registered_and_weights_required() -> None:
    assert "bisenet" in list_parsers()
    with pytest.raises(ModelError, match=r"needs its weights: supply 79999_iter\.pth"):
        create_parser("bisenet")
    with pytest.raises(ModelError, match=r"not found at .*nowhere\.pth: supply 79999_iter\.pth"):
        create_parser("bisenet", weights="/nowhere.pth")


def test_generated_weights_load_exactly(weights, state) -> None:
    parser = create_parser("bisenet", weights=weights)
    assert parser.name == "bisenet" and parser.classes == CLASSES
    assert not parser.net.training
    for name, tensor in parser.net.state_dict().items():
        assert torch.equal(tensor, state[name]), name


def test_files_saved_from_data_parallel_or_old_pytorch_load(state, tmp_path) -> None:
    prefixed = {f"module.{k}": v for k, v in state.items()}
    create_parser("bisenet", weights=save(tmp_path, prefixed))
    no_counters = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    create_parser("bisenet", weights=save(tmp_path, no_counters))


def test_renamed_key_is_named(state, tmp_path) -> None:
    renamed = dict(state)
    renamed["ffm.conv_1.weight"] = renamed.pop("ffm.conv1.weight")
    with pytest.raises(ModelError) as err:
        create_parser("bisenet", weights=save(tmp_path, renamed))
    message = str(err.value)
    assert "1 missing: ffm.conv1.weight" in message and "1 unexpected: ffm.conv_1.weight" in message
    assert "mis-shaped" not in message


def test_wrong_shape_is_named(state, tmp_path) -> None:
    wrong = dict(state)
    wrong["conv_out.conv_out.weight"] = torch.zeros(18, 256, 1, 1)  # 18 classes instead of 19
    with pytest.raises(ModelError) as err:
        create_parser("bisenet", weights=save(tmp_path, wrong))
    assert "1 mis-shaped: conv_out.conv_out.weight (file (18, 256, 1, 1), expected (19, 256, 1, 1))" in str(err.value)
    assert "missing" not in str(err.value) and "unexpected" not in str(err.value)


def test_long_lists_are_counted(state, tmp_path) -> None:
    resnet_only = {k: v for k, v in state.items() if k.startswith("cp.resnet.")}
    with pytest.raises(ModelError, match=r"60 missing: cp\.arm16\.conv\.conv\.weight, .* and 52 more"):
        create_parser("bisenet", weights=save(tmp_path, resnet_only))


class Payload:
    """Unpickling this calls ``os.mkdir(marker)``: a stand-in for code hidden in a weight file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_pickled_payload_is_refused(state, tmp_path) -> None:
    marker = tmp_path / "payload-ran"
    path = save(tmp_path, {**state, "extra": Payload(marker)})
    with pytest.raises(ModelError, match="cannot be read as a tensors-only state dict"):
        create_parser("bisenet", weights=path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is live: an unrestricted load runs it
    assert marker.is_dir()


def test_files_that_are_no_state_dict(tmp_path) -> None:
    with pytest.raises(ModelError, match=r"expected a state dict \(name -> tensor\), got Tensor"):
        create_parser("bisenet", weights=save(tmp_path, torch.zeros(3)))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError, match="garbage.pth: cannot be read"):
        create_parser("bisenet", weights=garbage)


# ------------------------------------------------------------------------------ the I/O contract


def test_label_map_in_the_chip_frame(weights, lfw_face) -> None:
    photo, face = lfw_face
    labels = create_parser("bisenet", weights=weights).parse(photo, face)
    assert labels.labels.shape == face.warp.size == (150, 150) and labels.labels.dtype == np.uint8
    assert set(np.unique(labels.labels)) <= set(range(len(CLASSES))) | {UNLABELLED}
    assert labels.classes == CLASSES and labels.parser == "bisenet"


class NoseBox(nn.Module):
    """A stand-in network: "nose" inside ``box`` (x0, y0, x1, y1, inclusive) of the crop, background elsewhere."""

    def __init__(self, box: tuple[int, int, int, int], size: int = 512) -> None:
        super().__init__()
        self.box, self.size, self.seen = box, size, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x.clone()
        x0, y0, x1, y1 = self.box
        logits = torch.zeros(x.shape[0], len(CLASSES), self.size, self.size)
        logits[:, 0] = 1.0
        logits[:, NOSE, y0 : y1 + 1, x0 : x1 + 1] = 2.0
        return logits


def test_crop_labels_land_where_the_warps_say(weights, lfw_face) -> None:
    photo, face = lfw_face
    parser = create_parser("bisenet", weights=weights)
    crop = head_crop_warp(photo, face, 512)
    tip_photo = landmarks68(photo, face.face.box)[30:31]  # dlib's nose tip
    cx, cy = np.rint(crop.to_chip(tip_photo)[0]).astype(int)
    box = (cx - 40, cy - 60, cx + 40, cy + 20)
    parser.net = NoseBox(box)
    labels = parser.parse(photo, face).labels

    # the network saw the head crop, normalised with ImageNet's mean and std
    seen = parser.net.seen[0] * torch.tensor(STD)[:, None, None] + torch.tensor(MEAN)[:, None, None]
    expected = torch.from_numpy(warp_to_chip(photo, crop)).permute(2, 0, 1).float() / 255.0
    assert torch.allclose(seen, expected, atol=1e-5)

    # the nose tip, carried photo -> chip, is labelled nose
    tx, ty = np.rint(face.warp.to_chip(tip_photo)[0]).astype(int)
    assert labels[ty, tx] == NOSE

    # the box's outline, carried crop -> photo -> chip with the Warp methods, bounds the nose region
    x0, y0, x1, y1 = box
    corners = np.array([[x0 - 0.5, y0 - 0.5], [x1 + 0.5, y0 - 0.5], [x1 + 0.5, y1 + 0.5], [x0 - 0.5, y1 + 0.5]])
    outline = face.warp.to_chip(crop.to_photo(corners))
    expected_mask = np.zeros(labels.shape, dtype=bool)
    rr, cc = fill_polygon(outline[:, 1], outline[:, 0], labels.shape)  # pixels whose centre is inside
    expected_mask[rr, cc] = True
    got = labels == NOSE
    iou = (got & expected_mask).sum() / (got | expected_mask).sum()
    assert iou > 0.98, f"IoU {iou:.3f}"  # 1.0 up to ties at pixel edges
    assert set(np.unique(labels[~got])) <= {0, UNLABELLED}
