"""The attribution engine: every CAM method and saliency from one forward and one backward.

Checked three ways: literals worked out by hand on ``TinyEmbedder`` (whose gradients are derived in
test_leam_tiny.py), captum 0.8's LayerGradCam, LayerGradientXActivation and Saliency on a seeded random
network, and LEAM through the engine against the formula LEAM used before it, bit for bit, on dlib's ResNet.

By hand, on ``TinyEmbedder`` (A0 = x, A1 = 2 - x, so A0 + A1 = 2 everywhere; dL/df = d):
  each channel feeds f1 with 3 pixels and f2 with 3, so both Grad-CAM weights are mean(g^k) = (d1 + d2) / 3
  and Grad-CAM's map is the constant ReLU(2 (d1 + d2) / 3): Grad-CAM cannot localise here, LEAM can.
      image 0, loss: d = (-.064, .048) → 0;  similarity → 2 (.016) / 3
      image 1, loss: d = (.048, -.036) → 2 (.012) / 3 = .008;  similarity → 0
  gradient x activation, sum_k g^k A^k (GRAD_LOSS times A, signed), image 0, loss:
      g0 A0 = [[-.128, -.064, -.064], [0, 0, 0], [.096, .096, 0]]
      g1 A1 = [[0, 0, .048], [-.128, 0, .048], [0, 0, .096]]
      sum   = [[-.128, -.064, -.016], [-.128, 0, .048], [.096, .096, .096]]
  image 1, loss: [[.096, .048, .012], [.096, 0, -.036], [-.072, -.072, -.072]]; "similarity" negates both.
  saliency: dL/dx = g0 - g1 (A0 = x, A1 = 2 - x); image 0, loss:
      [[0, -.064, -.112], [.064, 0, -.048], [.112, .048, 0]], |.| / .112 = [[0, 4/7, 1], [4/7, 0, 3/7], [1, 3/7, 0]]
  and the same for image 1 (|[[0, .048, .084], [-.048, 0, .036], [-.084, -.036, 0]]| / .084) and both directions.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from leam._torch_state import preserved_state
from leam.errors import DegenerateReferenceError, LayerError
from leam.face import align_file
from leam.maps import CAM_METHODS, LEAM, Attribution, gradcam_map, gradxact_map, leam_map, minmax_normalize
from leam.maps.attribution import objective
from leam.maps.hooks import capture_activations
from leam.maps.leam import layer_map
from leam.models import default_weights_path
from tests.conftest import SHARED_DATA
from tests.helpers.passes import counted_passes
from tests.helpers.seeded_models import LAYERS, seeded_batch, seeded_embedder
from tests.helpers.tiny_models import RaiseAfter, tiny_embedder, tiny_images
from tests.maps.test_leam_tiny import RAW, REFERENCES

ALL = tuple(CAM_METHODS)
GRADCAM = {"loss": [0.0, 0.008], "similarity": [0.032 / 3, 0.0]}  # constant maps, per image
GRADXACT_LOSS = [
    [[-0.128, -0.064, -0.016], [-0.128, 0.0, 0.048], [0.096, 0.096, 0.096]],
    [[0.096, 0.048, 0.012], [0.096, 0.0, -0.036], [-0.072, -0.072, -0.072]],
]
SALIENCY = [[0.0, 4 / 7, 1.0], [4 / 7, 0.0, 3 / 7], [1.0, 3 / 7, 0.0]]


def close(actual: torch.Tensor, expected, atol: float = 1e-6) -> None:
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), rtol=0, atol=atol)


# ------------------------------------------------------------------------------------------ by hand


def test_methods_literal():
    # A0 = [[1, -2], [3, 0]], A1 = [[4, 1], [-1, 2]];  g0 = [[2, 1], [-1, 5]], g1 = [[-3, 1], [2, .5]]
    # gradcam: mean g0 = 7/4, mean g1 = 1/8 → 1.75 A0 + .125 A1 = [[2.25, -3.375], [5.125, .25]] → ReLU
    # gradxact: g0 A0 + g1 A1 = [[2, -2], [-3, 0]] + [[-12, 1], [-2, 1]] = [[-10, -1], [-5, 1]]
    # leam (test_leam_tiny.test_layer_map_literal): [[2, 0], [0, 1]]
    activation = torch.tensor([[[[1.0, -2.0], [3.0, 0.0]], [[4.0, 1.0], [-1.0, 2.0]]]])
    gradient = torch.tensor([[[[2.0, 1.0], [-1.0, 5.0]], [[-3.0, 1.0], [2.0, 0.5]]]])
    close(gradcam_map(activation, gradient), [[[2.25, 0.0], [5.125, 0.25]]], atol=0)
    close(gradxact_map(activation, gradient), [[[-10.0, -1.0], [-5.0, 1.0]]], atol=0)
    close(leam_map(activation, gradient), [[[2.0, 0.0], [0.0, 1.0]]], atol=0)
    assert layer_map is leam_map and CAM_METHODS == {"leam": leam_map, "gradcam": gradcam_map, "gradxact": gradxact_map}


@pytest.mark.parametrize("direction", ["loss", "similarity"])
def test_engine_literals_on_tiny_embedder(direction):
    result = Attribution(tiny_embedder(), ["conv"], direction, methods=ALL, saliency=True)(tiny_images(2), REFERENCES)
    sign = 1.0 if direction == "loss" else -1.0
    assert result.methods == list(ALL) and result.layers == ["conv"] and result.direction == direction
    close(result.raw["leam"]["conv"], RAW[direction])
    close(result.raw["gradcam"]["conv"], [[[v] * 3] * 3 for v in GRADCAM[direction]])
    # (constant in exact arithmetic only: float32 rounding leaves ~1e-9 ripples, which min-max normalisation
    # would blow up to [0, 1], so Grad-CAM's normalised maps are not compared here)
    close(result.raw["gradxact"]["conv"], sign * torch.tensor(GRADXACT_LOSS))
    close(result.saliency, [SALIENCY, SALIENCY])
    close(result.cosine, [0.6, 0.8])
    if direction == "loss":  # (v + .128) / .224
        close(result.maps["gradxact"]["conv"][0], [[0.0, 2 / 7, 0.5], [0.0, 4 / 7, 11 / 14], [1.0, 1.0, 1.0]])
        close(result.aggregate("gradxact", "max"), result.maps["gradxact"]["conv"])


# ------------------------------------------------------------------------------- against captum


@pytest.fixture(scope="module")
def captum():
    return pytest.importorskip("captum.attr")


def error_relative_to_max(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max|actual - expected| / max|expected| over the batch (Grad-CAM's map of an image may be blank)."""
    assert expected.abs().max() > 0, "a blank reference tests nothing"
    return ((actual - expected).abs().max() / expected.abs().max()).item()


@pytest.mark.parametrize("direction", ["loss", "similarity"])
def test_methods_match_captum(captum, direction):
    # float64 throughout. captum's forward function is the objective itself, so its attributions are
    # gradients of the same function; captum's upsampling is F.interpolate(bilinear, align_corners=False).
    # Bound 1e-12 of the largest magnitude of a layer's maps (seen: 0, identical).
    net = seeded_embedder()
    images, reference = seeded_batch(3)
    result = Attribution(net, LAYERS, direction, methods=ALL, saliency=True)(images, reference)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return objective(net(x), reference, direction)

    size = images.shape[-2:]
    for layer in LAYERS:
        module = net.get_submodule(layer)
        gradcam = captum.LayerGradCam(forward, module).attribute(images, relu_attributions=True)
        gradxact = captum.LayerGradientXActivation(forward, module).attribute(images).sum(dim=1, keepdim=True)
        for name, theirs in (("gradcam", gradcam), ("gradxact", gradxact)):
            theirs = captum.LayerAttribution.interpolate(theirs, size, "bilinear")[:, 0].detach()
            assert error_relative_to_max(result.raw[name][layer], theirs) < 1e-12, (layer, name)
        if layer == "conv3":
            assert (gradxact < 0).any() and (gradxact > 0).any()  # signed, as it should be
    saliency = captum.Saliency(forward).attribute(images.clone().requires_grad_(True), abs=True).amax(dim=1)
    assert error_relative_to_max(result.saliency, minmax_normalize(saliency)) < 1e-12
    assert not torch.equal(result.raw["gradcam"]["conv1"], result.raw["leam"]["conv1"])


def test_one_forward_and_one_backward_for_every_method(monkeypatch):
    net = seeded_embedder()
    with counted_passes(net, monkeypatch) as calls:
        Attribution(net, LAYERS, methods=ALL, saliency=True)(*seeded_batch(2))
    assert calls == {"forward": 1, "grad": 1, "backward": 0}


def test_saliency_alone_and_leam_method_is_leam():
    net = seeded_embedder()
    images, reference = seeded_batch(2)
    everything = Attribution(net, LAYERS, methods=ALL, saliency=True)(images, reference)
    alone = Attribution(net, [], methods=(), saliency=True)(images, reference)
    assert alone.raw == {} and alone.maps == {} and alone.layers == []
    assert torch.equal(alone.saliency, everything.saliency)
    leam = LEAM(net, LAYERS)(images, reference)
    assert all(torch.equal(leam.raw[layer], everything.raw["leam"][layer]) for layer in LAYERS)
    assert Attribution(net, LAYERS)(images, reference).saliency is None


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"direction": "gradient"}, ValueError, "expected direction in"),
        ({"methods": ("leam", "scorecam")}, ValueError, r"expected methods in .*'scorecam'"),
        ({"methods": ("leam", "leam")}, ValueError, "methods repeat"),
        ({"methods": ()}, ValueError, "at least one method or saliency"),
        ({"layers": []}, ValueError, "at least one layer"),
        ({"layers": ["conv9"]}, LayerError, "valid layers"),
    ],
)
def test_arguments_checked(kwargs, error, message):
    args = {"net": seeded_embedder(), "layers": list(LAYERS), **kwargs}
    with pytest.raises(error, match=message):
        Attribution(**args)


def test_self_reference_refused_unless_allowed():
    net = seeded_embedder()
    images, reference = seeded_batch(2)
    with torch.no_grad():
        reference[1] = net(images)[1]
    engine = Attribution(net, LAYERS, methods=ALL, saliency=True)
    with pytest.raises(DegenerateReferenceError, match=r"image\(s\) \[1\]"):
        engine(images, reference)
    result = engine(images, reference, allow_self_reference=True)
    assert result.cosine[1] > 1 - 1e-6 > result.cosine[0]


# ------------------------------------- every path leaves the model as it was (hooks, modes, flags, .grad)

PATHS = ["normal", "unknown layer", "not a feature map", "raises inside forward"]


def run_path(net: nn.Module, path: str) -> nn.Module:
    images, reference = seeded_batch(2)
    engine = Attribution(net, LAYERS, methods=ALL, saliency=True)
    if path == "normal":
        engine(images, reference)
    elif path == "unknown layer":
        engine.layers = [*LAYERS, "conv9"]  # past the constructor's check, fails in the call
        with pytest.raises(LayerError, match="valid layers"):
            engine(images, reference)
    elif path == "not a feature map":
        with pytest.raises(LayerError, match=r"'fc' gives \(2, 16\), expected a feature map"):
            Attribution(net, ["conv1", "fc"], methods=ALL, saliency=True)(images, reference)
    elif path == "raises inside forward":
        net = RaiseAfter(net)
        with pytest.raises(RuntimeError, match="boom inside forward"):
            Attribution(net, [f"net.{n}" for n in LAYERS], methods=ALL, saliency=True)(images, reference)
    return net


@pytest.mark.parametrize("path", PATHS)
def test_hooks_removed_and_state_restored(path):
    net = seeded_embedder().train()
    net.conv2.eval()
    net.conv1.weight.requires_grad_(False)
    explained = run_path(net, path)
    assert [n for n, m in explained.named_modules() if m._forward_hooks or m._backward_hooks] == []
    assert [n for n, m in explained.named_modules() if m._forward_pre_hooks or m._backward_pre_hooks] == []
    assert net.training and net.conv1.training and not net.conv2.training
    assert [n for n, p in net.named_parameters() if not p.requires_grad] == ["conv1.weight"]
    assert all(p.grad is None for p in explained.parameters())


# ------------------------------------------------------------------------- real model (dlib ResNet)

dlib_weights = pytest.mark.skipif(default_weights_path("dlib-resnet") is None, reason="dlib weights not installed")


def leam_before_the_engine(net: nn.Module, layers, images, reference, direction):
    """LEAM's raw maps as ``LEAM.__call__`` computed them before ``Attribution`` existed (the same steps)."""
    with preserved_state(net, eval_mode=True, freeze=True):
        x = images.detach().clone().requires_grad_(True)
        with torch.enable_grad(), capture_activations(net, layers) as acts:
            emb = net(x)
            cos = F.cosine_similarity(emb, reference, dim=1)
            obj = 1.0 - cos if direction == "loss" else cos
            grads = torch.autograd.grad(obj.sum(), [acts[n] for n in layers])
    raw = {}
    for name, grad in zip(layers, grads):
        cam = F.relu((F.relu(grad) * acts[name].detach()).sum(dim=1)).unsqueeze(1)
        raw[name] = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False).squeeze(1)
    return raw


@dlib_weights
@pytest.mark.parametrize("direction", ["loss", "similarity"])
def test_leam_through_the_engine_is_the_old_formula_bit_for_bit(dlib_resnet_model, direction):
    net = copy.deepcopy(dlib_resnet_model.net)
    layers = list(dlib_resnet_model.spec.default_layers)
    gen = torch.Generator().manual_seed(0)
    images, reference = torch.rand(2, 3, 150, 150, generator=gen) * 255, torch.randn(2, 128, generator=gen)
    old = leam_before_the_engine(net, layers, images, reference, direction)
    new = LEAM(net, layers, direction)(images, reference)
    every = Attribution(net, layers, direction, methods=ALL, saliency=True)(images, reference)
    for layer in layers:
        assert torch.equal(new.raw[layer], old[layer]), layer
        assert torch.equal(new.maps[layer], minmax_normalize(old[layer])), layer
        assert torch.equal(every.raw["leam"][layer], old[layer]), layer


PERSON = SHARED_DATA / "lfw-demo" / "Cameron_Diaz"
PAIR = (PERSON / "Cameron_Diaz_0001.jpg", PERSON / "Cameron_Diaz_0002.jpg")


@dlib_weights
def test_real_pair_gives_finite_distinct_maps(dlib_resnet_model):
    if not all(p.is_file() for p in PAIR):
        pytest.skip(f"shared photos not found at {PERSON} (expected ../shared/data next to the repo)")
    model = dlib_resnet_model
    chips = np.stack([align_file(p, model.spec.template, largest_face=True).chip for p in PAIR])
    x = model.chips_to_tensor(chips)
    reference = torch.from_numpy(model.embed(chips[1:]))[0]
    layers = list(model.spec.default_layers)
    result = Attribution(model.net, layers, methods=ALL, saliency=True)(x[:1], reference)
    for method in ALL:
        for layer in layers:
            raw = result.raw[method][layer]
            assert torch.isfinite(raw).all() and raw.amax() > raw.amin(), (method, layer)
    assert torch.isfinite(result.saliency).all() and result.saliency.amax() > result.saliency.amin()
    differences = [(result.maps["gradcam"][n] - result.maps["leam"][n]).abs().mean().item() for n in layers]
    assert max(differences) > 0.05, differences  # Grad-CAM's maps are not LEAM's
    assert (result.raw["gradxact"][layers[0]] < 0).any()  # gradient x activation keeps its sign
