"""Tiny fixed-weight networks whose LEAM maps can be worked out by hand.

``TinyEmbedder``: a 1-channel 3x3 image x → ``conv`` (1x1, 2 channels) → flatten → ``fc`` (18 → 2, no bias).

    conv:  A0 = x            (weight  1, bias 0)
           A1 = 2 - x        (weight -1, bias 2)
    fc:    f1 = sum(top row of A0)    + sum(left column of A1)
           f2 = sum(bottom row of A0) + sum(right column of A1)

so the fc weight is four 0/1 masks (rows of ``FC_WEIGHT``, in flatten order c*9 + 3*i + j):
``TOP`` and ``LEFT`` feed f1, ``BOTTOM`` and ``RIGHT`` feed f2.

For ``TINY_IMAGE``  x = [[2, 1, 1], [0, 0, 1], [2, 2, 0]]:
    A0 = [[2, 1, 1], [0, 0, 1], [2, 2, 0]]
    A1 = [[0, 1, 1], [2, 2, 1], [0, 0, 2]]
    f  = (4 + 2, 4 + 4) = (6, 8),  |f| = 10
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

TOP = [[1, 1, 1], [0, 0, 0], [0, 0, 0]]
BOTTOM = [[0, 0, 0], [0, 0, 0], [1, 1, 1]]
LEFT = [[1, 0, 0], [1, 0, 0], [1, 0, 0]]
RIGHT = [[0, 0, 1], [0, 0, 1], [0, 0, 1]]

CONV_WEIGHT = [1.0, -1.0]
CONV_BIAS = [0.0, 2.0]
FC_WEIGHT = [
    sum(TOP, []) + sum(LEFT, []),  # f1: channel 0 top row, channel 1 left column
    sum(BOTTOM, []) + sum(RIGHT, []),  # f2: channel 0 bottom row, channel 1 right column
]

TINY_IMAGE = [[2.0, 1.0, 1.0], [0.0, 0.0, 1.0], [2.0, 2.0, 0.0]]
TINY_EMBEDDING = [6.0, 8.0]


def tiny_embedder() -> nn.Sequential:
    """The fixed-weight ``TinyEmbedder``: (N, 1, 3, 3) → (N, 2); its only feature-map layer is ``conv``."""
    net = nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(1, 2, kernel_size=1),
            flatten=nn.Flatten(),
            fc=nn.Linear(18, 2, bias=False),
        )
    )
    with torch.no_grad():
        net.conv.weight.copy_(torch.tensor(CONV_WEIGHT).view(2, 1, 1, 1))
        net.conv.bias.copy_(torch.tensor(CONV_BIAS))
        net.fc.weight.copy_(torch.tensor(FC_WEIGHT, dtype=torch.float32))
    return net.eval()


def tiny_images(n: int = 1) -> torch.Tensor:
    """``n`` copies of ``TINY_IMAGE`` as (n, 1, 3, 3)."""
    return torch.tensor(TINY_IMAGE).expand(n, 1, 3, 3).clone()


class ReusedLayerNet(nn.Module):
    """Applies the same ``conv`` twice in one forward: LEAM must refuse to explain it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.conv(x)).flatten(1)


class RaiseAfter(nn.Module):
    """Runs ``net`` (so hooks on its layers fire), then raises ``RuntimeError``: an error inside forward."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.net(x)
        raise RuntimeError("boom inside forward")


@contextmanager
def registered_parser(name: str, parse: Callable) -> Iterator[None]:
    """Within the block, leam's parser registry holds ``name``: the landmark parser, but with ``parse(photo,
    face, landmark_parse)`` in its place (e.g. one that raises as a broken library would for some photos);
    removed afterwards."""
    import leam.parse as parsers

    class Parser:
        def __init__(self) -> None:
            self.inner = parsers.create_parser("landmarks")
            self.name, self.classes = name, self.inner.classes

        def parse(self, photo, face):
            return parse(photo, face, self.inner.parse)

    parsers.register_parser(name, "a test parser")(lambda weights=None: Parser())
    try:
        yield
    finally:
        parsers._PARSERS.pop(name, None)
