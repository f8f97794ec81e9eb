"""leam's GraphDef reader on small messages encoded by hand (protobuf wire format, field by field)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from leam.models._tf_graph import TFGraphError, read_graph_def


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 / int32 values take ten bytes, as protobuf writes them
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def field(number: int, value: int | bytes | str, wire: int | None = None) -> bytes:
    """One field: an int as a varint (wire 0), bytes/str length-delimited (wire 2), or raw fixed bytes."""
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    if wire == 5:
        return varint(number << 3 | 5) + data
    return varint(number << 3 | 2) + varint(len(data)) + data


def shape(*dims: int) -> bytes:
    return b"".join(field(2, field(1, d)) for d in dims)


def tensor(dtype: int, dims: tuple[int, ...], *parts: bytes) -> bytes:
    return field(1, dtype) + field(2, shape(*dims)) + b"".join(parts)


def attr(key: str, value: bytes) -> bytes:
    return field(5, field(1, key) + field(2, value))


def node(name: str, op: str, *rest: bytes) -> bytes:
    return field(1, field(1, name) + field(2, op) + b"".join(rest))


def floats(*values: float) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


# -------------------------------------------------------------------------------------- decoding


def test_const_with_tensor_content():
    value = tensor(1, (2, 3), field(4, floats(0, 1, 2, 3, 4, 5)))
    nodes = read_graph_def(node("w", "Const", attr("value", field(8, value)), attr("dtype", field(6, 1))))
    w = nodes["w"]
    assert (w.name, w.op, w.inputs) == ("w", "Const", ())
    np.testing.assert_array_equal(w.attrs["value"], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert w.attrs["value"].dtype == np.float32 and w.attrs["value"].flags.writeable
    assert w.attrs["dtype"] == 1


def test_inputs_and_attribute_kinds():
    strides = field(1, field(3, b"".join(varint(v) for v in (1, 2, 2, 1))))  # a packed int list
    data = node(
        "conv",
        "Conv2D",
        field(3, "input:0"),
        field(3, "w"),
        field(3, "^init"),
        attr("strides", strides),
        attr("padding", field(2, "VALID")),
        attr("epsilon", field(4, floats(0.001), wire=5)),
        attr("is_training", field(5, 0)),
        attr("shape", field(7, shape(-1, 160, 160, 3))),
        attr("offset", field(3, -5)),
    )
    conv = read_graph_def(data)["conv"]
    assert conv.inputs == ("input:0", "w", "^init")
    assert conv.attrs["strides"] == [1, 2, 2, 1]
    assert conv.attrs["padding"] == "VALID"
    assert conv.attrs["epsilon"] == pytest.approx(0.001)
    assert conv.attrs["is_training"] is False
    assert conv.attrs["shape"] == (-1, 160, 160, 3)
    assert conv.attrs["offset"] == -5


def test_tensor_values_written_one_by_one_or_as_a_fill():
    scalar = tensor(1, (), field(5, floats(0.17), wire=5))  # an unpacked float_val
    filled = tensor(1, (3,), field(5, floats(2.0)))  # one packed value fills the shape
    ints = tensor(3, (2,), field(7, varint(1) + varint(-1)))  # packed int_val, -1 in ten bytes
    zeros = tensor(9, (2, 2))  # no values: zeros
    nodes = read_graph_def(
        b"".join(node(n, "Const", attr("value", field(8, t))) for n, t in zip("sfiz", (scalar, filled, ints, zeros)))
    )
    values = {name: n.attrs["value"] for name, n in nodes.items()}
    assert values["s"].shape == () and values["s"] == np.float32(0.17)
    assert values["f"].tolist() == [2.0, 2.0, 2.0]
    assert values["i"].dtype == np.int32 and values["i"].tolist() == [1, -1]
    assert values["z"].dtype == np.int64 and values["z"].tolist() == [[0, 0], [0, 0]]


def test_fields_it_does_not_need_are_skipped():
    versions = field(4, field(1, 26))  # GraphDef.versions
    device = field(4, "/cpu:0")  # NodeDef.device
    nodes = read_graph_def(versions + node("a", "NoOp", device) + field(2, b""))
    assert list(nodes) == ["a"]


# ------------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    "data, message",
    [
        (field(1, b"x" * 100)[:7], "truncated file: field 1 at byte 0 needs 100 bytes, only 5 are left"),
        (b"\x0a\x80", "truncated file: a number at byte 1 runs past the end of the data"),
        (b"\x0a" + b"\xff" * 10 + b"\x01", "malformed number at byte 1 \\(more than 10 bytes\\)"),
        (b"\x0b", "malformed field 1 at byte 0: unsupported wire type 3"),
        (b"\x02\x00", "malformed field at byte 0: field number 0"),
        (field(1, 7), "malformed GraphDef.node at byte 0: wire type 0, expected 2"),
        (field(1, field(1, 5)), "malformed NodeDef.name at byte 2: wire type 0, expected 2"),
        (node("a", "Const") + node("a", "Const"), "node 'a' at byte 12 is defined twice"),
        (field(1, field(1, "a")), "malformed node at byte 2: it has no name or no op"),
        (node("\xe9", "Const").replace(b"\xc3\xa9", b"\xe9\x00"), "not UTF-8 text"),
    ],
)
def test_malformed_messages(data, message):
    with pytest.raises(TFGraphError, match=message):
        read_graph_def(data)


@pytest.mark.parametrize(
    "value, message",
    [
        (tensor(1, (2, 3), field(4, floats(0, 1, 2, 3, 4))), r"\(2, 3\) of float32 needs 24 bytes, the file holds 20"),
        (tensor(7, (1,)), "unsupported tensor at byte \\d+: TensorFlow dtype 7"),
        (tensor(1, (1 << 20, 1 << 20), field(5, floats(1.0))), r"1 values for shape \(1048576, 1048576\)"),
        (tensor(1, (2,), field(5, floats(1, 2, 3))), r"3 values for shape \(2,\)"),
        (tensor(1, (-1, 3)), r"shape \(-1, 3\) is not fully known"),
        (tensor(1, (2,), field(5, b"\x00\x00\x80")), "malformed packed floats at byte \\d+: 3 bytes"),
    ],
)
def test_malformed_tensors(value, message):
    with pytest.raises(TFGraphError, match=message):
        read_graph_def(node("w", "Const", attr("value", field(8, value))))
