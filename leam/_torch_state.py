"""Leave a user's model as it was found: every module's train/eval mode and every ``requires_grad``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def preserved_state(net: nn.Module, eval_mode: bool = True, freeze: bool = False) -> Iterator[nn.Module]:
    """Within the block ``net`` is in eval mode (if ``eval_mode``) with frozen parameters (if
    ``freeze``); afterwards each module's own mode and each parameter's flag are restored, errors
    included."""
    modes = [(m, m.training) for m in net.modules()]
    flags = [(p, p.requires_grad) for p in net.parameters()]
    try:
        if eval_mode:
            net.eval()
        if freeze:
            for p, _ in flags:
                p.requires_grad_(False)
        yield net
    finally:
        for m, training in modes:
            m.training = training
        for p, flag in flags:
            p.requires_grad_(flag)
