"""Forward hooks that capture layer outputs, always removed; layer discovery with output shapes."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from difflib import SequenceMatcher

import torch
from torch import nn

from leam._torch_state import net_lock, preserved_state
from leam.errors import LayerError

MOST_NAMES = 40  # layer names an unknown-layer error lists


def resolve_layers(net: nn.Module, names: Sequence[str]) -> list[nn.Module]:
    """The submodules named ``names``; an unknown name raises ``LayerError`` with its near matches and the
    valid names (``_valid_names``)."""
    if isinstance(names, str):
        raise LayerError(f"expected a list of layer names, got the string {names!r} (write [{names!r}])")
    modules = dict(net.named_modules())
    missing = [n for n in names if not isinstance(n, str) or n not in modules or n == ""]
    if missing:
        valid = [n for n in modules if n]
        near = dict.fromkeys(m for n in missing if isinstance(n, str) for m in _near_matches(n, valid))
        hint = f" (did you mean {', '.join(map(repr, near))}?)" if near else ""
        plural = "s" if len(missing) > 1 else ""
        raise LayerError(f"unknown layer{plural} {', '.join(map(repr, missing))}{hint}; "
                         f"valid layers: {_valid_names(valid)}")
    if len(set(names)) != len(names):
        raise LayerError(f"layer names repeat: {list(names)}")
    return [modules[n] for n in names]


def _near_matches(name: str, names: Sequence[str], most: int = 3) -> list[str]:
    """Up to ``most`` of ``names`` most like ``name`` (difflib's ratio ≥ 0.6), ties in name order."""
    scored = []
    for candidate in names:
        matcher = SequenceMatcher(None, name, candidate)
        if matcher.real_quick_ratio() >= 0.6 and matcher.quick_ratio() >= 0.6 and matcher.ratio() >= 0.6:
            scored.append((-matcher.ratio(), candidate))
    return [candidate for _, candidate in sorted(scored)[:most]]


def _valid_names(names: Sequence[str], most: int = MOST_NAMES) -> str:
    """``names`` for an error line: all when at most ``most``, else those of the deepest nesting level
    (dots) that keeps them within ``most`` (or the first ``most``), and how many more there are."""
    if len(names) <= most:
        return ", ".join(names)
    shown: list[str] = list(names[:most])
    for depth in range(max(n.count(".") for n in names) + 1):
        upto = [n for n in names if n.count(".") <= depth]
        if len(upto) > most:
            break
        shown = upto
    return f"{', '.join(shown)} and {len(names) - len(shown)} more (`leam layers` lists them)"


@contextmanager
def capture_activations(net: nn.Module, names: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, each forward of ``net`` in this thread stores the output of every named layer.

    A layer that runs more than once in one forward is refused (its map would be ambiguous). The thread
    holds ``net_lock(net)`` (other leam calls on ``net`` wait), and forwards of other threads are not
    captured. Hooks are removed on every path, errors (``KeyboardInterrupt`` too) included.
    """
    captured: dict[str, torch.Tensor] = {}
    handles = []
    owner = threading.get_ident()

    def hook_for(name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            if threading.get_ident() != owner:  # someone else's forward of a shared module
                return
            if name in captured:
                raise LayerError(f"layer {name!r} runs more than once per forward; pick another layer")
            if not isinstance(output, torch.Tensor):
                raise LayerError(f"layer {name!r} returns {type(output).__name__}, not a tensor")
            captured[name] = output

        return hook

    with net_lock(net):
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

    with net_lock(net):
        try:
            for name in names:
                handles.append(modules[name].register_forward_hook(hook_for(name)))
            with preserved_state(net), torch.no_grad():
                net(torch.zeros(1, channels, *input_size))
        finally:
            for handle in handles:
                handle.remove()
    return order
