"""Seeded random IResNets (no downloaded weights) with realistic batch-norm statistics."""

from __future__ import annotations

import torch
from torch import nn

from leam.models.iresnet import DEPTHS, IResNet


def random_iresnet(depth: int = 18, seed: int = 0) -> IResNet:
    """IResNet-``depth`` in eval mode: PyTorch's default initialisation from ``seed``, then random
    batch-norm scales, shifts and running statistics and PReLU slopes, as a trained net has (all
    equal, as freshly built, they would make torch's ONNX exporter share them between layers)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = IResNet(DEPTHS[depth])
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = m.num_features
                m.weight.copy_(0.5 + 0.5 * torch.rand(n, generator=gen))
                m.bias.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
            elif isinstance(m, nn.PReLU):
                m.weight.copy_(0.1 + 0.2 * torch.rand(m.weight.shape, generator=gen))
    return net.eval()


def without_input_norm(net: IResNet) -> nn.Module:
    """``net`` as insightface ships it: taking (x / 255 - 0.5) / 0.5 rather than [0, 255] (shared weights)."""
    import copy

    bare = copy.copy(net)  # a shallow copy: same submodules and parameters
    bare._modules = dict(net._modules)
    bare._modules["input_norm"] = nn.Identity()
    return bare


def export_onnx(net: IResNet, path, batch_dim: bool = True) -> None:
    """Export ``net`` as insightface's ONNX files are: normalised RGB input, with torch's
    TorchScript-based exporter (``dynamo=False``: no onnxscript needed), opset 17."""
    import warnings

    dynamic = {"input": {0: "batch"}, "embedding": {0: "batch"}} if batch_dim else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            without_input_norm(net), (torch.zeros(1, 3, 112, 112),), str(path), dynamo=False, opset_version=17,
            input_names=["input"], output_names=["embedding"], dynamic_axes=dynamic,
        )
