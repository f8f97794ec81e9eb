"""Forward hooks that capture layer outputs, always removed; layer discovery with output shapes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from leam._torch_state import preserved_state
from leam.errors import LayerError


def resolve_layers(net: nn.Module, names: Sequence[str]) -> list[nn.Module]:
    """The submodules named ``names``; an unknown name raises ``LayerError`` listing the valid ones."""
    modules = dict(net.named_modules())
    missing = [n for n in names if n not in modules or n == ""]
    if missing:
        valid = ", ".join(n for n in modules if n)
        raise LayerError(f"unknown layer(s) {', '.join(map(repr, missing))}; valid layers: {valid}")
    if len(set(names)) != len(names):
        raise LayerError(f"layer names repeat: {list(names)}")
    return [modules[n] for n in names]


@contextmanager
def capture_activations(net: nn.Module, names: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, each forward of ``net`` stores the output of every named layer.

    A layer that runs more than once in one forward is refused (its map would be ambiguous).
    Hooks are removed on every path, errors included.
    """
    captured: dict[str, torch.Tensor] = {}
    handles = []

    def hook_for(name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            if name in captured:
                raise LayerError(f"layer {name!r} runs more than once per forward; pick another layer")
            if not isinstance(output, torch.Tensor):
                raise LayerError(f"layer {name!r} returns {type(output).__name__}, not a tensor")
            captured[name] = output

        return hook

    try:
        for name, module in zip(names, resolve_layers(net, names)):
            handles.append(module.register_forward_hook(hook_for(name)))
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def layer_shapes(
    net: nn.Module, input_size: tuple[int, int], channels: int | None = None
) -> list[tuple[str, tuple[int, ...]]]:
    """Every submodule whose output is a feature map (C, H, W), with that shape, in forward order.

    These are the layers LEAM can explain. The probe input has ``channels`` channels (default: the
    first convolution's input channels, else 3).
    """
    if channels is None:
        first_conv = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
        channels = first_conv.in_channels if first_conv is not None else 3
    names = [n for n, _ in net.named_modules() if n]
    order: list[tuple[str, tuple[int, ...]]] = []
    modules = dict(net.named_modules())
    handles = []

    def hook_for(name: str):
        def hook(_m: nn.Module, _i: tuple, out: object) -> None:
            if isinstance(out, torch.Tensor) and out.dim() == 4 and name not in dict(order):
                order.append((name, tuple(out.shape[1:])))

        return hook

    try:
        for name in names:
            handles.append(modules[name].register_forward_hook(hook_for(name)))
        with preserved_state(net), torch.no_grad():
            net(torch.zeros(1, channels, *input_size))
    finally:
        for handle in handles:
            handle.remove()
    return order
