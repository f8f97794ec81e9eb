"""``ModelSpec.mean_colour`` is the colour a model's own normalisation maps to zero: an image of that colour
reaches the net's first convolution as zeros (every registered model whose net can be built; IResNet without
weights, its normalisation has no parameters). Presets of model files give theirs in RGB order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from leam.models import PRESETS, Preset, create_model, default_weights_path, from_module, list_models, model_spec
from leam.models.iresnet import DEPTHS, IResNet


def first_conv_input(net: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """What the first convolution to run receives for ``image`` (N, 3, H, W)."""
    seen: list[torch.Tensor] = []
    handles = [m.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
               for m in net.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            net.eval()(image)
    finally:
        for h in handles:
            h.remove()
    return seen[0]


def net_of(name: str) -> nn.Module:
    if name.startswith("iresnet"):
        return IResNet(DEPTHS[int(name.removeprefix("iresnet"))])
    if default_weights_path(name) is None:
        pytest.skip(f"{name}: no weights installed")
    return create_model(name).net


def uniform(colour, size: tuple[int, int]) -> torch.Tensor:
    return torch.tensor(colour, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, *size).contiguous()


@pytest.mark.parametrize("name", list_models())
def test_mean_colour_reaches_the_first_convolution_as_zero(name):
    spec = model_spec(name)
    net = net_of(name)
    if spec.mean_colour is None:  # per image (prewhitening): any grey image is its own zero
        for grey in (40.0, 200.0):
            assert first_conv_input(net, uniform((grey,) * 3, spec.input_size)).abs().max() < 1e-5
        assert first_conv_input(net, uniform((200.0, 100.0, 50.0), spec.input_size)).abs().max() > 0.1
        return
    assert len(spec.mean_colour) == 3
    assert first_conv_input(net, uniform(spec.mean_colour, spec.input_size)).abs().max() < 1e-5
    assert first_conv_input(net, uniform(np.add(spec.mean_colour, 10.0), spec.input_size)).abs().max() > 0.01


def test_the_registered_values():
    assert model_spec("dlib-resnet").mean_colour == (122.782, 117.001, 104.298)
    assert model_spec("facenet-keras").mean_colour is None
    for name in ("facenet", "arcface-mbf", "sface", "iresnet50"):
        assert model_spec(name).mean_colour == (127.5, 127.5, 127.5)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(x)).flatten(1)


def test_presets_give_their_mean_in_rgb():
    bgr = Preset("bgr-test", "a BGR preset with an uneven mean", (32, 32), "BGR", (100.0, 110.0, 120.0),
                 (50.0, 50.0, 50.0), PRESETS["arcface"].template)
    assert bgr.mean_rgb == (120.0, 110.0, 100.0)
    model = from_module(Tiny(), bgr)
    assert model.spec.mean_colour == (120.0, 110.0, 100.0)
    assert first_conv_input(model.net, uniform(model.spec.mean_colour, (32, 32))).abs().max() < 1e-6
    assert from_module(Tiny(), "arcface").spec.mean_colour == (127.5, 127.5, 127.5)
    # a graph that normalises itself: its normalisation is not known from the preset; insightface's subtract 127.5
    assert from_module(Tiny(), "arcface-raw").spec.mean_colour == (127.5, 127.5, 127.5)
    assert PRESETS["arcface-bgr"].mean_rgb == (127.5, 127.5, 127.5)
