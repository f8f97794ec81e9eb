"""The per-layer step of each gradient CAM method: (N, C, h, w) activations A and gradients g → an (N, h, w) map.

Every method reads the same forward and backward (``leam.maps.attribution.Attribution``); they differ only in
how they weight the channels A^k by their gradients g^k = dObjective/dA^k:

    "leam"      ReLU(sum_k ReLU(g^k) * A^k)           LayerCAM: a weight per channel *and* pixel
    "gradcam"   ReLU(sum_k mean_{h,w}(g^k) * A^k)     Grad-CAM: one weight per channel
    "gradxact"  sum_k g^k * A^k                       gradient x activation (captum's
                                                      LayerGradientXActivation summed over channels); signed

A new method is one function here and one entry in ``CAM_METHODS``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

CamMethod = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def leam_map(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """ReLU(sum_k ReLU(g^k) * A^k) for (N, C, h, w) activations and gradients → (N, h, w)."""
    return F.relu((F.relu(gradient) * activation).sum(dim=1))


def gradcam_map(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """ReLU(sum_k mean_{h,w}(g^k) * A^k) for (N, C, h, w) activations and gradients → (N, h, w)."""
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    return F.relu((weights * activation).sum(dim=1))


def gradxact_map(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """sum_k g^k * A^k (signed, no ReLU) for (N, C, h, w) activations and gradients → (N, h, w)."""
    return (gradient * activation).sum(dim=1)


CAM_METHODS: dict[str, CamMethod] = {
    "leam": leam_map,
    "gradcam": gradcam_map,
    "gradxact": gradxact_map,
}
