"""An independent reference for leam's ``facenet-keras``: the Keras model of an .h5 file, run as Keras would.

It reads the file with ``h5py`` itself and evaluates the model config layer by layer in the file's
(topological) order, each layer on the outputs of the layers its ``inbound_nodes`` name: NHWC
tensors, float64, batch norms applied as written (not folded), TensorFlow's "SAME" padding worked
out from its definition. It knows nothing of leam's module, its layer names or its weight mapping,
so agreeing with it checks all three.

The file's 21 ``Lambda`` layers share one marshalled function, ``scaling(x, scale)``, whose bytecode
(read with ``dis``, never executed) is ``return x * scale``; here it is that product.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def read_model(path: str | Path) -> tuple[list[dict], dict[str, dict[str, np.ndarray]], str]:
    """(layers in file order, weights per layer by short name, name of the output layer)."""
    import h5py

    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["model_config"])["config"]
        weights = {}
        for layer, group in f["model_weights"].items():
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs["weight_names"]]
            weights[layer] = {n.split("/")[-1].split(":")[0]: np.asarray(group[n], np.float64) for n in names}
    return config["layers"], weights, config["output_layers"][0][0]


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _conv(x: torch.Tensor, kernel: np.ndarray, stride: list[int], padding: str) -> torch.Tensor:
    """NHWC convolution with an HWIO kernel."""
    w = torch.from_numpy(kernel).permute(3, 2, 0, 1)
    t = x.permute(0, 3, 1, 2)
    if padding == "same":
        top, bottom = _same_pad(t.shape[2], w.shape[2], stride[0])
        left, right = _same_pad(t.shape[3], w.shape[3], stride[1])
        t = F.pad(t, (left, right, top, bottom))
    return F.conv2d(t, w, stride=tuple(stride)).permute(0, 2, 3, 1)


def run_model(layers: list[dict], weights: dict[str, dict[str, np.ndarray]], output: str, x: np.ndarray) -> np.ndarray:
    """The output of the model for a batch ``x`` (N, H, W, 3), already preprocessed."""
    values: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for layer in layers:
            kind, cfg, name = layer["class_name"], layer["config"], layer["config"]["name"]
            inputs = [values[node[0]] for node in (layer["inbound_nodes"] or [[]])[0]]
            w = weights.get(name, {})
            if kind == "InputLayer":
                y = torch.from_numpy(np.asarray(x, np.float64))
            elif kind == "Conv2D":
                y = _conv(inputs[0], w["kernel"], cfg["strides"], cfg["padding"])
                if cfg["use_bias"]:
                    y = y + torch.from_numpy(w["bias"])
            elif kind == "BatchNormalization":
                t = lambda a: torch.from_numpy(a)  # noqa: E731
                gamma = t(w["gamma"]) if cfg["scale"] else 1.0
                y = (inputs[0] - t(w["moving_mean"])) / torch.sqrt(t(w["moving_variance"]) + cfg["epsilon"])
                y = y * gamma + t(w["beta"])
            elif kind == "Activation":
                assert cfg["activation"] in ("relu", "linear"), cfg["activation"]
                y = inputs[0].clamp(min=0) if cfg["activation"] == "relu" else inputs[0]
            elif kind == "MaxPooling2D":
                assert cfg["padding"] == "valid"
                y = F.max_pool2d(inputs[0].permute(0, 3, 1, 2), cfg["pool_size"], cfg["strides"]).permute(0, 2, 3, 1)
            elif kind == "Concatenate":
                y = torch.cat(inputs, dim=cfg["axis"])
            elif kind == "Lambda":
                y = inputs[0] * cfg["arguments"]["scale"]
            elif kind == "Add":
                y = sum(inputs[1:], inputs[0])
            elif kind == "GlobalAveragePooling2D":
                y = inputs[0].mean(dim=(1, 2))
            elif kind == "Dropout":
                y = inputs[0]
            elif kind == "Dense":
                y = inputs[0] @ torch.from_numpy(w["kernel"])
                if cfg["use_bias"]:
                    y = y + torch.from_numpy(w["bias"])
            else:
                raise NotImplementedError(f"layer {name!r} of kind {kind}")
            values[name] = y
    return values[output].numpy()
