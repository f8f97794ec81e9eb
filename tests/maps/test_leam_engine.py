"""The LEAM engine on the real default model (dlib ResNet), against a slow obvious reference.

The reference explains one image and one layer at a time: its own hook, its own forward, its own
``torch.autograd.grad``. The engine does all images and all layers in one forward and one backward.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from leam.errors import DegenerateReferenceError, LayerError
from leam.maps.hooks import capture_activations, layer_shapes
from leam.maps.leam import LEAM
from leam.models import create_model, default_weights_path
from tests.helpers.passes import counted_passes
from tests.helpers.tiny_models import RaiseAfter

MODEL = "dlib-resnet"
SIZE = (150, 150)
SHAPES = {  # (C, h, w) of the default layers for a 150x150 chip
    "stem": (32, 72, 72),
    "stage1.block0": (32, 35, 35),
    "stage1.block2": (32, 35, 35),
    "stage2.block1": (64, 17, 17),
    "stage2.block3": (64, 17, 17),
    "stage3.block0": (128, 8, 8),
    "stage3.block2": (128, 8, 8),
    "stage4.block2": (256, 4, 4),
    "stage5.block0": (256, 2, 2),
}

pytestmark = pytest.mark.skipif(default_weights_path(MODEL) is None, reason="dlib weights not installed")


@pytest.fixture(scope="module")
def model():
    return create_model(MODEL)


@pytest.fixture(scope="module")
def layers(model):
    return list(model.spec.default_layers)


@pytest.fixture
def net(model):
    """A private copy for tests that change the model's state."""
    return copy.deepcopy(model.net)


@pytest.fixture(scope="module")
def batch():
    """Four random 150x150 RGB images in [0, 255] and four random 128-d references."""
    gen = torch.Generator().manual_seed(0)
    return torch.rand(4, 3, *SIZE, generator=gen) * 255, torch.randn(4, 128, generator=gen)


@pytest.fixture(scope="module")
def result(model, layers, batch):
    return LEAM(model.net, layers)(*batch)


def reference_map(net: nn.Module, images: torch.Tensor, reference: torch.Tensor, layer: str, direction: str):
    """One image at a time: hook ``layer``, forward, one autograd.grad, LayerCAM, bilinear upsample."""
    maps, store = [], {}

    def keep_output(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        store["A"] = output

    for image, ref in zip(images, reference):
        store.clear()
        handle = net.get_submodule(layer).register_forward_hook(keep_output)
        try:
            emb = net(image[None].clone().requires_grad_(True))
        finally:
            handle.remove()
        cos = F.cosine_similarity(emb, ref[None], dim=1)
        objective = 1 - cos if direction == "loss" else cos
        (grad,) = torch.autograd.grad(objective.sum(), store["A"])
        cam = F.relu((F.relu(grad) * store["A"]).sum(dim=1, keepdim=True))
        maps.append(F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0])
    return torch.cat(maps).detach()


def error_relative_to_max(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max over maps of max|actual - expected| / max(expected) (raw maps are ~1e-3 to 0.4 here)."""
    return ((actual - expected).abs().amax(dim=(1, 2)) / expected.amax(dim=(1, 2))).max().item()


@pytest.mark.parametrize("direction", ["loss", "similarity"])
def test_batched_single_pass_matches_per_image_per_layer_reference(model, layers, batch, direction):
    # Raw maps are small (maxima ~4e-3 to 0.4), so the bound is relative to each map's maximum. In
    # float64 engine and reference agree to rounding (~1e-15 of the max), and 1e-6 checks the algorithm.
    # The float32 engine (as used) is held to the float64 reference: 1e-6 absolute (seen: 1e-7) and
    # 2e-5 of the max (seen: 4e-6, stem).
    images, reference = batch
    net64 = copy.deepcopy(model.net).double()
    engine64 = LEAM(net64, layers, direction)(images.double(), reference.double())
    engine32 = LEAM(model.net, layers, direction)(images, reference)
    for layer in layers:
        expected = reference_map(net64, images.double(), reference.double(), layer, direction)
        assert expected.amax(dim=(1, 2)).min() > 0, f"{layer}: a blank reference map tests nothing"
        assert error_relative_to_max(engine64.raw[layer], expected) < 1e-6, layer
        assert error_relative_to_max(engine32.raw[layer].double(), expected) < 2e-5, layer
        assert (engine32.raw[layer].double() - expected).abs().max() < 1e-6, layer


def test_one_forward_and_one_backward(model, layers, batch, monkeypatch):
    with counted_passes(model.net, monkeypatch) as calls:
        LEAM(model.net, layers)(*batch)
    assert calls == {"forward": 1, "grad": 1, "backward": 0}


# --- every path leaves the model as it was: no hooks, same modes, same requires_grad, no .grad ---

PATHS = ["normal", "unknown layer", "raises inside forward", "bad input shape"]


def run_path(net: nn.Module, layers: list[str], path: str, batch) -> nn.Module:
    """Run the engine along ``path`` (asserting the expected error); return the module it explained."""
    images, reference = batch[0][:2], batch[1][:2]
    if path == "normal":
        LEAM(net, layers)(images, reference)
    elif path == "unknown layer":
        engine = LEAM(net, layers)
        engine.layers = [*layers, "stage6.block0"]  # get past the constructor's check, fail in the call
        with pytest.raises(LayerError, match="valid layers: .*stage5.block0"):
            engine(images, reference)
    elif path == "raises inside forward":
        net = RaiseAfter(net)
        with pytest.raises(RuntimeError, match="boom inside forward"):
            LEAM(net, [f"net.{name}" for name in layers])(images, reference)
    elif path == "bad input shape":
        with pytest.raises(RuntimeError, match="too small"):  # the stem runs, the max pool fails
            LEAM(net, layers)(torch.rand(2, 3, 10, 10), reference)
    return net


def hooked_modules(net: nn.Module) -> list[str]:
    return [
        name
        for name, m in net.named_modules()
        if m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
    ]


@pytest.mark.parametrize("path", PATHS)
def test_hooks_removed(net, layers, batch, path):
    explained = run_path(net, layers, path, batch)
    assert hooked_modules(explained) == []


@pytest.mark.parametrize("path", PATHS)
def test_mode_requires_grad_restored_and_no_grad_populated(net, layers, batch, path):
    net.train()
    frozen = {"stem.conv.weight", "stage3.block0.affine1.gamma", "fc.weight"}
    for name, p in net.named_parameters():
        p.requires_grad_(name not in frozen)
    explained = run_path(net, layers, path, batch)
    assert explained.training and all(m.training for m in explained.modules())
    assert {name for name, p in net.named_parameters() if not p.requires_grad} == frozen
    assert all(p.grad is None for p in explained.parameters())


def test_submodule_modes_restored(net, layers, batch):
    net.train()
    net.stem.eval()  # e.g. a frozen part of a model being fine-tuned
    run_path(net, layers, "normal", batch)
    assert net.training and not net.stem.training and not net.stem.conv.training


def test_unknown_layer_refused_at_construction_listing_valid_layers(net, layers):
    with pytest.raises(LayerError, match="'stage6.block0'.*valid layers: .*stage1.block0.*stage5.block0"):
        LEAM(net, [*layers, "stage6.block0"])
    with pytest.raises(LayerError, match="valid layers"):
        with capture_activations(net, ["stem", "nope"]):
            pass
    assert hooked_modules(net) == []


def test_layer_without_feature_map_is_a_layer_error(net, batch):
    with pytest.raises(LayerError):
        LEAM(net, ["fc"])(batch[0][:1], batch[1][:1])


def test_self_reference_refused_unless_allowed(model, layers, batch):
    images, reference = batch[0][:2], batch[1][:2].clone()
    with torch.no_grad():
        reference[1] = model.net(images)[1]
    engine = LEAM(model.net, layers)
    with pytest.raises(DegenerateReferenceError, match=r"image\(s\) \[1\]"):
        engine(images, reference)
    result = engine(images, reference, allow_self_reference=True)
    assert result.cosine[1] > 1 - 1e-6 > result.cosine[0]
    assert result.maps["stem"].shape == (2, *SIZE)


def test_deterministic(model, layers, batch, result):
    again = LEAM(model.net, layers)(*batch)
    assert all(torch.equal(again.raw[layer], result.raw[layer]) for layer in layers)
    assert torch.equal(again.embeddings, result.embeddings)


def test_shapes_and_normalisation(layers, batch, result):
    n = len(batch[0])
    assert result.layers == layers and list(result.raw) == layers
    assert result.embeddings.shape == (n, 128) and result.cosine.shape == (n,)
    for layer in layers:
        raw, normalised = result.raw[layer], result.maps[layer]
        assert raw.shape == normalised.shape == (n, *SIZE)
        assert (raw >= 0).all()
        assert (raw.amax(dim=(1, 2)) > raw.amin(dim=(1, 2))).all(), f"{layer}: degenerate map"
        assert normalised.min() >= 0 and normalised.max() <= 1
        assert torch.equal(normalised.amax(dim=(1, 2)), torch.ones(n))
        assert torch.equal(normalised.amin(dim=(1, 2)), torch.zeros(n))
    for method in ("mean", "max"):
        combined = result.aggregate(method)
        assert combined.shape == (n, *SIZE) and combined.min() >= 0 and combined.max() <= 1


def test_layer_shapes_lists_default_layers(net, layers):
    net.train()
    shapes = layer_shapes(net, SIZE)
    found = [(name, shape) for name, shape in shapes if name in SHAPES]
    assert found == list(SHAPES.items())  # all nine, with their shapes, in forward order
    assert sorted(SHAPES) == sorted(layers)
    assert net.training and hooked_modules(net) == []
