"""leam's PyTorch port of dlib's face-recognition ResNet, checked against dlib itself.

dlib (``dlib-bin``) is the oracle: the same chips must give the same 128-d descriptors, and leam's
whole pipeline (load, detect, align, embed) must give dlib's descriptors where the aligned chip lies
inside the photo.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from torch import nn

from leam.data.dataset import load_dataset
from leam.errors import FaceError, ModelError
from leam.face import align_file
from leam.models import create_model, default_weights_path, list_models
from leam.models._dlib_net import read_dlib_net_file
from leam.models.dlib_resnet import MEAN_RGB, Affine, expected_layers, installed_weights

N_PARAMS = 5_614_592  # 29 convs (weights + biases), 29 affines (gamma + beta), fc 256x128
PARITY_TOL = 1e-4


@pytest.fixture(scope="module")
def model(dlib_resnet_model):
    return dlib_resnet_model


def descriptors(facerec, *args_per_call) -> np.ndarray:
    return np.array([np.array(facerec.compute_face_descriptor(*args)) for args in args_per_call])


# ---------------------------------------------------------------------------------- the real weights


def test_registered_with_installed_weights():
    assert "dlib-resnet" in list_models()
    path = default_weights_path("dlib-resnet")
    assert path is not None and path.is_file()
    assert path == installed_weights()


def test_parameter_count(model):
    assert sum(p.numel() for p in model.net.parameters()) == N_PARAMS


def test_parameter_count_equals_the_values_in_the_file(model):
    parsed = read_dlib_net_file(model.weights_path, expected_layers())
    in_file = sum(a.size for layer in parsed.layers for a in layer.arrays.values())
    assert in_file == N_PARAMS


def test_layers(model):
    convs = [m for m in model.net.modules() if isinstance(m, nn.Conv2d)]
    affines = [m for m in model.net.modules() if isinstance(m, Affine)]
    assert len(convs) == 29
    assert len(affines) == 29
    assert [tuple(c.weight.shape) for c in convs[:2]] == [(32, 3, 7, 7), (32, 32, 3, 3)]
    assert tuple(model.net.fc.weight.shape) == (128, 256)
    assert model.net.fc.bias is None


def test_values_read_from_the_file(model):
    parsed = read_dlib_net_file(model.weights_path, expected_layers())
    np.testing.assert_allclose(model.net.input_norm.mean.flatten().numpy(), MEAN_RGB, atol=1e-4)
    assert parsed.input_fields["nr"] == parsed.input_fields["nc"] == model.spec.input_size[0] == 150
    assert parsed.loss_fields["distance_threshold"] == pytest.approx(model.spec.threshold, abs=1e-6)
    assert not any(p.isnan().any() for p in model.net.parameters())


def test_default_layers_exist(model):
    for name in model.spec.default_layers:
        model.net.get_submodule(name)


def test_embed_shape_dtype_and_batching(model):
    chips = np.random.default_rng(7).integers(0, 256, (5, 150, 150, 3), dtype=np.uint8)
    whole = model.embed(chips)
    assert whole.shape == (5, 128) and whole.dtype == np.float32
    np.testing.assert_allclose(model.embed(chips, batch_size=2), whole, atol=1e-6)
    np.testing.assert_allclose(model.embed(chips[0]), whole[:1], atol=1e-6)


def test_embed_rejects_wrong_chip_size(model):
    with pytest.raises(ValueError, match=r"expected chips of shape \(N, 150, 150, 3\), got \(1, 112, 112, 3\)"):
        model.embed(np.zeros((1, 112, 112, 3), dtype=np.uint8))


# ---------------------------------------------------------------------------------- parity with dlib


def test_parity_with_dlib_on_dlib_chips(model, dlib_facerec, lfw_dlib_faces, record_property):
    assert len(lfw_dlib_faces) >= 20, "dlib found too few faces in the LFW sample"
    chips = np.stack([f.chip for f in lfw_dlib_faces])
    ours = model.embed(chips)
    ref = descriptors(dlib_facerec, *[(c,) for c in chips])
    err = float(np.abs(ours - ref).max())
    record_property("max_abs_diff_lfw_chips", err)
    print(f"dlib parity on {len(chips)} dlib chips of LFW faces: max |diff| = {err:.3g}")
    assert err < PARITY_TOL, f"max |leam - dlib| = {err:.3g} on {len(chips)} LFW chips"


def test_parity_with_dlib_on_random_chips(model, dlib_facerec, record_property):
    chips = np.random.default_rng(20240601).integers(0, 256, (10, 150, 150, 3), dtype=np.uint8)
    ours = model.embed(chips)
    ref = descriptors(dlib_facerec, *[(c,) for c in chips])
    err = float(np.abs(ours - ref).max())
    record_property("max_abs_diff_random_chips", err)
    print(f"dlib parity on 10 random uint8 chips: max |diff| = {err:.3g}")
    assert err < PARITY_TOL, f"max |leam - dlib| = {err:.3g} on random chips"


def test_pipeline_matches_dlib_end_to_end(model, dlib_facerec, lfw_dlib_faces, record_property):
    inside = [f for f in lfw_dlib_faces if f.chip_inside]
    assert len(inside) >= 10, "too few LFW faces whose chip lies inside the photo"
    aligned = [align_file(f.path, model.spec.template, largest_face=True) for f in inside]
    for f, a in zip(inside, aligned):
        np.testing.assert_array_equal(a.face.landmarks, f.landmarks, err_msg=str(f.path))
        diff = np.abs(a.chip.astype(int) - f.chip).max()
        assert diff <= 1, f"{f.path.name}: leam's chip differs from dlib's by {diff} grey levels"
    ours = model.embed(np.stack([a.chip for a in aligned]))
    ref = descriptors(dlib_facerec, *[(f.image, f.shape) for f in inside])
    err = float(np.abs(ours - ref).max())
    record_property("max_abs_diff_pipeline", err)
    print(f"leam pipeline vs dlib compute_face_descriptor(img, shape) on {len(inside)} photos: {err:.3g}")
    assert err < PARITY_TOL, f"max |leam - dlib| = {err:.3g} over {len(inside)} photos"


# ------------------------------------------------------------------------------- a sanity check on pairs


def _lfw_identities(lfw_dir: Path) -> dict[str, list[Path]]:
    """{identity: sorted photo paths} for identities with at least two photos (read by leam's own loader)."""
    return {k: [p.path for p in v] for k, v in load_dataset(lfw_dir).items() if len(v) >= 2}


@pytest.fixture(scope="module")
def pair_distances(lfw_dir, model) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distances of ~20 same-person and ~20 different-person LFW pairs (picked evenly)."""
    identities = _lfw_identities(lfw_dir)
    names = list(identities)[:: max(1, len(identities) // 24)]

    def embed(path: Path) -> np.ndarray | None:
        try:
            chip = align_file(path, model.spec.template, largest_face=True).chip
        except FaceError:
            return None
        return model.embed(chip)[0]

    firsts, same = [], []
    for name in names:
        a, b = (embed(p) for p in identities[name][:2])
        if a is not None and b is not None:
            firsts.append(a)
            same.append(np.linalg.norm(a - b))
    different = [np.linalg.norm(a - b) for a, b in zip(firsts, firsts[1:])]
    return np.array(same), np.array(different)


def test_same_person_pairs_fall_below_dlib_threshold_more_often(model, pair_distances):
    same, different = pair_distances
    assert len(same) >= 18 and len(different) >= 17
    threshold = model.spec.threshold
    same_rate, diff_rate = (same < threshold).mean(), (different < threshold).mean()
    print(f"below {threshold}: same-person {same_rate:.2f}, different-person {diff_rate:.2f}")
    assert same_rate >= 0.8
    assert diff_rate <= 0.2
    assert np.median(same) < np.median(different)


# ------------------------------------------------------------------------------------ bad weight files


@pytest.fixture(scope="module")
def weight_bytes() -> bytes:
    return installed_weights().read_bytes()


def test_truncated_weight_file(tmp_path, weight_bytes):
    path = tmp_path / "half.dat"
    path.write_bytes(weight_bytes[: len(weight_bytes) // 2])
    with pytest.raises(ModelError, match="not a dlib face-recognition ResNet file: unexpected end of data") as e:
        create_model("dlib-resnet", weights=path)
    assert str(path) in str(e.value)


def test_weight_file_with_an_unknown_layer_name(tmp_path, weight_bytes):
    at = weight_bytes.index(b"relu_")
    path = tmp_path / "renamed.dat"
    path.write_bytes(weight_bytes[:at] + b"relv_" + weight_bytes[at + 5 :])
    with pytest.raises(ModelError, match=r"unsupported dlib layer 'relv_' at byte \d+") as e:
        create_model("dlib-resnet", weights=path)
    assert str(path) in str(e.value)


def test_weight_file_with_layers_in_the_wrong_order(tmp_path, weight_bytes):
    # the stem's relu_ record (no details) renamed to add_prev_ (no details either): a valid layer
    # in the wrong place
    at = weight_bytes.index(b"\x01\x05relu_")
    path = tmp_path / "reordered.dat"
    path.write_bytes(weight_bytes[:at] + b"\x01\x09add_prev_" + weight_bytes[at + 7 :])
    with pytest.raises(
        ModelError, match=r"layer 2 \(input-first\) at byte \d+ is 'add_prev_', the architecture expects 'relu'"
    ):
        create_model("dlib-resnet", weights=path)


@pytest.mark.parametrize("content", [b"", b"\xff\xd8\xff\xe0 a JPEG, not weights", b"\x01\x01\x01\x0dloss_metric_9"])
def test_weight_file_that_is_not_a_dlib_net(tmp_path, content):
    path = tmp_path / "other.dat"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="not a dlib face-recognition ResNet file"):
        create_model("dlib-resnet", weights=path)


def test_missing_weight_file(tmp_path):
    path = tmp_path / "nowhere" / "dlib_face_recognition_resnet_model_v1.dat"
    with pytest.raises(ModelError, match="weight file not found: .*nowhere"):
        create_model("dlib-resnet", weights=path)


def test_weight_path_that_is_a_folder(tmp_path):
    with pytest.raises(ModelError, match="weight file .* is a folder; expected a file"):
        create_model("dlib-resnet", weights=tmp_path)
