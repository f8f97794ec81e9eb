"""Read a dlib DNN file (as written by ``dlib::serialize(file) << net``) into plain records.

The byte stream holds no layer types, only each layer's details, so the reader walks it with the
network's type known in advance, as dlib itself does: a ``loss`` record, then, from the output
down, one version number per layer (2 for ``add_layer``, 1 for ``tag``/``skip``, 3 for the
``add_layer`` that sits on the input layer), then the input layer's details, then every
``add_layer``'s details input-first, each followed by its training state (three bools and three
empty tensors). The reader checks every layer name against the expected architecture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from leam.models._dlib_format import DlibFormatError, DlibReader


@dataclass
class DlibLayer:
    """One ``add_layer``'s details: its dlib name (``con_4``, ``affine_``, ...) and values."""

    kind: str
    fields: dict[str, object] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class DlibNet:
    loss: str
    loss_fields: dict[str, float]
    input_kind: str
    input_fields: dict[str, object]
    layers: list[DlibLayer]  # input-first
    chain: str  # per-layer versions, output-first: "2" add_layer, "1" tag/skip


def _read_con(rd: DlibReader) -> DlibLayer:
    params = rd.tensor().reshape(-1)
    names = ("num_filters", "nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
    f: dict[str, object] = {k: rd.int() for k in names}
    w_shape, b_shape = rd.alias_tensor(), rd.alias_tensor()
    for k in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
        f[k] = rd.float()
    n_w, n_b = math.prod(w_shape), math.prod(b_shape)
    if n_w + n_b != params.size:
        raise DlibFormatError(f"con_ layer: {params.size} params, but filters {w_shape} + biases {b_shape}")
    arrays = {"weight": params[:n_w].reshape(w_shape), "bias": params[n_w:].reshape(-1)}
    return DlibLayer("con", f, arrays)


def _read_affine(rd: DlibReader) -> DlibLayer:
    params = rd.tensor().reshape(-1)
    g_shape, b_shape = rd.alias_tensor(), rd.alias_tensor()
    mode = rd.int()
    n_g = math.prod(g_shape)
    if n_g + math.prod(b_shape) != params.size:
        raise DlibFormatError(f"affine_ layer: {params.size} params, but gamma {g_shape} + beta {b_shape}")
    return DlibLayer("affine", {"mode": mode}, {"gamma": params[:n_g], "beta": params[n_g:]})


def _read_pool(kind: str) -> callable:
    def read(rd: DlibReader) -> DlibLayer:
        names = ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
        return DlibLayer(kind, {k: rd.int() for k in names})

    return read


def _read_fc(rd: DlibReader) -> DlibLayer:
    f: dict[str, object] = {"num_outputs": rd.int(), "num_inputs": rd.int()}
    params = rd.tensor().reshape(-1)
    w_shape, b_shape = rd.alias_tensor(), rd.alias_tensor()
    f["bias_mode"] = rd.int()
    for k in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
        f[k] = rd.float()
    n_w = math.prod(w_shape)
    if n_w + math.prod(b_shape) != params.size:
        raise DlibFormatError(f"fc_ layer: {params.size} params, but weights {w_shape} + biases {b_shape}")
    arrays = {"weight": params[:n_w].reshape(w_shape[0], w_shape[1]), "bias": params[n_w:]}
    return DlibLayer("fc", f, arrays)


_DETAIL_READERS = {
    "con_4": _read_con,
    "affine_": _read_affine,
    "relu_": lambda rd: DlibLayer("relu"),
    "add_prev_": lambda rd: DlibLayer("add_prev"),
    "max_pool_2": _read_pool("max_pool"),
    "avg_pool_2": _read_pool("avg_pool"),
    "fc_2": _read_fc,
}


def read_dlib_net(data: bytes, expected: list[str]) -> DlibNet:
    """Parse ``data`` for a network whose layers, output-first, are ``expected``.

    ``expected`` names each layer below the loss: "con", "affine", "relu", "max_pool",
    "avg_pool", "add_prev", "fc" (``add_layer``s) or "tag"/"skip"; the last must be an add_layer
    sitting on ``input_rgb_image_sized``.
    """
    rd = DlibReader(data)
    rd.expect_int(1, what="loss layer version")
    loss = rd.expect_string("loss_metric_2")
    loss_fields = {"margin": rd.float(), "distance_threshold": rd.float()}

    chain = []
    for i, kind in enumerate(expected):
        want = (1,) if kind in ("tag", "skip") else (3,) if i == len(expected) - 1 else (2,)
        chain.append(str(rd.expect_int(*want, what=f"version of layer {i} ({kind})")))

    input_kind = rd.expect_string("input_rgb_image_sized")
    input_fields: dict[str, object] = {
        "mean_red": rd.float(),
        "mean_green": rd.float(),
        "mean_blue": rd.float(),
        "nr": rd.int(),
        "nc": rd.int(),
    }

    add_kinds = [k for k in reversed(expected) if k not in ("tag", "skip")]
    layers = []
    for i, kind in enumerate(add_kinds):
        start = rd.pos
        name = rd.string()
        reader = _DETAIL_READERS.get(name)
        if reader is None:
            raise DlibFormatError(f"unsupported dlib layer {name!r} at byte {start}")
        layer = reader(rd)
        if layer.kind != kind:
            raise DlibFormatError(
                f"layer {i} (input-first) at byte {start} is {name!r}, the architecture expects {kind!r}"
            )
        for _ in range(3):  # this_layer_setup_called, gradient_input_is_stale, ..._disabled
            rd.bool()
        for _ in range(3):  # x_grad, cached_output, params_grad: empty in a saved net
            rd.tensor()
        if i == 0:
            rd.int()  # _sample_expansion_factor of the add_layer over the input layer
        layers.append(layer)
    if not rd.at_end():
        raise DlibFormatError(f"{len(data) - rd.pos} unread bytes after the last layer")
    return DlibNet(loss, loss_fields, input_kind, input_fields, layers, "".join(chain))


def read_dlib_net_file(path: str | Path, expected: list[str]) -> DlibNet:
    return read_dlib_net(Path(path).read_bytes(), expected)
