"""Counting a network's forward passes and autograd's gradient calls (an engine's cost contract)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def counted_passes(net: torch.nn.Module, monkeypatch) -> Iterator[dict[str, int]]:
    """Within the block, ``{"forward": n, "grad": n, "backward": n}``: calls of ``net`` and of
    ``torch.autograd.grad`` / ``torch.autograd.backward``; the hook is removed on every path."""
    calls = {"forward": 0, "grad": 0, "backward": 0}
    real_grad, real_backward = torch.autograd.grad, torch.autograd.backward

    def counting_grad(*args, **kwargs):
        calls["grad"] += 1
        return real_grad(*args, **kwargs)

    def counting_backward(*args, **kwargs):
        calls["backward"] += 1
        return real_backward(*args, **kwargs)

    def count_forward(_module, _inputs, _output):
        calls["forward"] += 1

    monkeypatch.setattr(torch.autograd, "grad", counting_grad)
    monkeypatch.setattr(torch.autograd, "backward", counting_backward)
    handle = net.register_forward_hook(count_forward)
    try:
        yield calls
    finally:
        handle.remove()
