"""Gradient-free forwards by ONNX Runtime (``leam.models.inference``): the same embeddings as the PyTorch module
(the reference) within the parity tolerance, PReLU rewritten without changing a bit, and a clean fallback to
PyTorch, with one warning, when the net does not export or its export computes something else."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from leam.models import FaceModel, default_weights_path, model_spec
from leam.models.inference import (
    PARITY_TOLERANCE,
    ForwardsFallback,
    OnnxEmbedder,
    decompose_prelu,
    export_onnx,
    fastest_forwards,
    gradient_free_embed,
    installed_forwards,
    onnx_session,
    parity_error,
)

ort = pytest.importorskip("onnxruntime")
SIZE = 8


def tiny_model(net: nn.Module | None = None) -> FaceModel:
    """A seeded conv → per-channel PReLU → mean → linear net on 8x8 chips, as a FaceModel."""
    torch.manual_seed(0)
    if net is None:
        net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.PReLU(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
        with torch.no_grad():
            net[1].weight.copy_(torch.tensor([0.25, -0.5, 0.0, 2.0]))  # negative, zero and > 1 slopes
            net[0].weight.mul_(1 / 255)
    spec = replace(model_spec("dlib-resnet"), name="tiny", input_size=(SIZE, SIZE), embedding_size=5)
    return FaceModel(spec, net.eval())


def chips(n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


class ExportFails(nn.Module):
    """``aten::i0`` has no ONNX symbolic at opset 17: the export raises."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.i0(x / 255).mean((2, 3))


class ExportDiffers(nn.Module):
    """Exports without error, but the exported graph adds 1 to every value: the parity check fails."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.mean((2, 3)) / 255
        return out + 1 if torch.onnx.is_in_onnx_export() else out


def test_onnxruntime_embeds_as_torch_does() -> None:
    model = tiny_model()
    embed = OnnxEmbedder(model, threads=1, batch_size=3)
    assert embed.engine is None
    x = chips(7)
    got = embed(x)  # the first call: export, session, parity check
    assert embed.engine == "onnxruntime" and embed.reason == ""
    assert got.dtype == np.float32 and got.shape == (7, 5)
    assert parity_error(got, model.embed(x)) < 1e-6
    assert np.array_equal(embed(x), got)  # the same session, the same numbers
    assert np.array_equal(embed(x[:3]), got[:3])


def test_the_torch_engine_is_the_models_own_embed() -> None:
    model = tiny_model()
    embed = gradient_free_embed(model, "torch")
    assert embed.engine == "torch" and np.array_equal(embed(chips(4)), model.embed(chips(4)))
    assert gradient_free_embed(model, "onnxruntime").engine is None
    with pytest.raises(ValueError, match="expected engine in"):
        gradient_free_embed(model, "tensorrt")
    assert installed_forwards() == ("torch", "onnxruntime") and fastest_forwards() == "onnxruntime"


def test_prelu_rewritten_bit_for_bit() -> None:
    """``Relu(x) + slope * Min(x, 0)`` gives PReLU's value for every x, bit for bit: compared with the plain
    NumPy definition on values of every sign and size (zeros of both signs, subnormals, large)."""
    onnx = pytest.importorskip("onnx")
    model = tiny_model(nn.Sequential(nn.PReLU(3)))
    with torch.no_grad():
        model.net[0].weight.copy_(torch.tensor([0.25, -0.5, 0.0]))
    data = export_onnx(model)
    ops = {node.op_type for node in onnx.load_from_string(data).graph.node}
    assert "PRelu" not in ops and {"Relu", "Min", "Mul", "Add"} <= ops
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(0, 100, 64 * 3 * SIZE * SIZE - 6), [0.0, -0.0, 1e-40, -1e-40, 3e38, -3e38]])
    x = values.astype(np.float32).reshape(64, 3, SIZE, SIZE)
    got = onnx_session(data).run(None, {"chips": x})[0]
    slopes = np.array([0.25, -0.5, 0.0], np.float32).reshape(1, 3, 1, 1)
    assert np.array_equal(got, np.where(x >= 0, x, slopes * x).astype(np.float32))
    plain = b"no PReLU here"
    assert decompose_prelu(plain) is plain


def test_a_net_that_does_not_export_falls_back_to_torch_with_one_warning(capfd) -> None:
    model = tiny_model(ExportFails())
    embed = OnnxEmbedder(model)
    x = chips(4)
    with pytest.warns(ForwardsFallback, match=r"^tiny: ONNX Runtime not used .*PyTorch computes them .*aten::i0"):
        first = embed(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        again = embed(x)
    assert embed.engine == "torch" and "UnsupportedOperatorError" in embed.reason and embed.session is None
    assert np.array_equal(first, model.embed(x)) and np.array_equal(again, first)
    out, _ = capfd.readouterr()
    assert out == ""  # the exporter's graph dump kept off standard output
    assert not torch._C._jit_is_onnx_log_enabled()


def test_an_export_that_computes_something_else_falls_back_to_torch() -> None:
    model = tiny_model(ExportDiffers())
    embed = OnnxEmbedder(model)
    x = chips(3)
    with pytest.warns(ForwardsFallback, match=r"differ from PyTorch's by .* \(tolerance 0.0001\)"):
        got = embed(x)
    assert embed.engine == "torch" and np.array_equal(got, model.embed(x))


def test_the_models_state_is_left_as_it_was() -> None:
    """The export runs the net in eval mode without gradients; modes and flags are restored after."""
    model = tiny_model()
    model.net.train()
    model.net[0].weight.requires_grad_(False)
    OnnxEmbedder(model)(chips(2))
    assert all(m.training for m in model.net.modules())
    assert [p.requires_grad for p in model.net.parameters()] == [False, True, True, True, True]


def test_parity_error_by_hand() -> None:
    expected = np.array([[3.0, 4.0], [0.0, 1.0]])
    assert parity_error(expected + [[0.5, 0.0], [0.0, 0.0]], expected) == 0.1  # 0.5 / 5
    assert parity_error(expected + [[0.0, 0.0], [0.25, 0.0]], expected) == 0.25  # 0.25 / 1
    assert parity_error(expected[:1], expected) == np.inf
    assert parity_error(np.array([[np.nan, 0.0], [0.0, 1.0]]), expected) == np.inf
    assert PARITY_TOLERANCE == 1e-4


@pytest.mark.parametrize("name", ["dlib-resnet", "arcface-mbf"])
def test_registered_models_agree_with_their_torch_modules(name: str, dlib_resnet_model) -> None:
    """A real ResNet and a MobileFaceNet (PReLU everywhere) agree to far better than the tolerance."""
    if name == "dlib-resnet":
        model = dlib_resnet_model
    elif default_weights_path(name) is None:
        pytest.skip(f"{name}'s weights are not installed")
    else:
        from leam.models import create_model

        model = create_model(name)
    h, _ = model.spec.input_size
    x = np.concatenate([chips(5, h, seed=2), np.zeros((1, h, h, 3), np.uint8)])
    embed = OnnxEmbedder(model)
    assert parity_error(embed(x), model.embed(x)) < 5e-6 and embed.engine == "onnxruntime"
