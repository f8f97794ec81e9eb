"""A small seeded network for comparing attribution methods with a library (captum) on random weights.

``seeded_embedder()``: (N, 3, 24, 24) RGB in [0, 255] → ``scale`` (/255) → ``conv1`` (3→6, 3x3, pad 1,
24x24) → ``relu1`` → ``conv2`` (6→8, 3x3, stride 2, 11x11) → ``relu2`` → ``conv3`` (8→8, 3x3, stride 2, 5x5)
→ ``flatten`` → ``fc`` (200 → 16): the layers give maps at full, about half and about a fifth of the size.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

SIZE = (24, 24)
LAYERS = ("conv1", "conv2", "conv3")


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def seeded_embedder(seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """The network above with weights drawn from torch's default initialisation under ``seed``, in eval mode."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = nn.Sequential(
            OrderedDict(
                scale=Scale(1 / 255),
                conv1=nn.Conv2d(3, 6, 3, padding=1),
                relu1=nn.ReLU(),
                conv2=nn.Conv2d(6, 8, 3, stride=2),
                relu2=nn.ReLU(),
                conv3=nn.Conv2d(8, 8, 3, stride=2),
                flatten=nn.Flatten(),
                fc=nn.Linear(8 * 5 * 5, 16),
            )
        )
    return net.to(dtype).eval()


def seeded_batch(n: int = 3, seed: int = 1, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random images (N, 3, 24, 24) with integer values in [0, 255], and ``n`` random 16-d references."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, *SIZE), generator=gen).to(dtype)
    return images, torch.randn(n, 16, generator=gen, dtype=dtype)
