"""A minimal reader of frozen TensorFlow graphs (``GraphDef`` .pb files), in pure Python.

Decodes the protobuf wire format directly (no TensorFlow, no ``protobuf`` package) and keeps only
what a frozen inference graph needs: each node's name, op, inputs and attributes, with constant
tensors as numpy arrays. The file is untrusted input: every length, tag and size is checked, and
anything malformed raises ``TFGraphError`` naming the byte offset.

>>> nodes = read_graph_file("graph_final.pb")                      # doctest: +SKIP
>>> nodes["InceptionResnetV1/Conv2d_1a_3x3/weights"].attrs["value"].shape   # doctest: +SKIP
(3, 3, 3, 32)
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# TensorFlow's DataType enum → numpy little-endian dtypes (the ones a frozen float graph holds).
DTYPES = {1: np.dtype("<f4"), 2: np.dtype("<f8"), 3: np.dtype("<i4"), 9: np.dtype("<i8"), 10: np.dtype("?")}
MAX_RANK = 32
MAX_FILLED_ELEMENTS = 1 << 26  # a tensor written as one repeated value may not expand beyond this
MAX_FILE_BYTES = 1 << 31  # protobuf's own limit for one message

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


class TFGraphError(ValueError):
    """A file is not a well-formed TensorFlow GraphDef (or uses a feature this reader lacks)."""


@dataclass(frozen=True)
class TFNode:
    """One ``NodeDef``: ``inputs`` as written (``name``, ``name:1`` or ``^control``)."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: dict[str, object] = field(default_factory=dict)


def read_graph_file(path: str | Path) -> dict[str, TFNode]:
    """The nodes of the GraphDef in ``path``, by name, in file order."""
    size = Path(path).stat().st_size
    if size > MAX_FILE_BYTES:
        raise TFGraphError(f"the file has {size} bytes, more than a protobuf message can hold (2 GiB)")
    return read_graph_def(Path(path).read_bytes())


def read_graph_def(data: bytes) -> dict[str, TFNode]:
    """The nodes of a serialised GraphDef, by name, in file order."""
    nodes: dict[str, TFNode] = {}
    for number, wire, value, at, start in _fields(memoryview(data), 0):
        if number == 1:  # repeated NodeDef node; versions (4), library (2) are not needed
            node = _node(_expect(value, wire, LENGTH, "GraphDef.node", at), start)
            if node.name in nodes:
                raise TFGraphError(f"node {node.name!r} at byte {at} is defined twice")
            nodes[node.name] = node
    return nodes


# ------------------------------------------------------------------------------------- wire format


def _varint(buf: memoryview, i: int, base: int) -> tuple[int, int]:
    result = shift = 0
    for n in range(10):
        if i + n >= len(buf):
            raise TFGraphError(f"truncated file: a number at byte {base + i} runs past the end of the data")
        byte = buf[i + n]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, i + n + 1
        shift += 7
    raise TFGraphError(f"malformed number at byte {base + i} (more than 10 bytes)")


def _fields(buf: memoryview, base: int):
    """Yield (field number, wire type, value, offset of the field, offset of its value) per field.

    Offsets are absolute (``base`` is where ``buf`` starts in the file); error messages use them.
    """
    i = 0
    while i < len(buf):
        at = base + i
        key, i = _varint(buf, i, base)
        number, wire = key >> 3, key & 7
        start = base + i
        if number == 0:
            raise TFGraphError(f"malformed field at byte {at}: field number 0")
        if wire == VARINT:
            value, i = _varint(buf, i, base)
        elif wire in (FIXED64, FIXED32):
            size = 8 if wire == FIXED64 else 4
            if i + size > len(buf):
                raise TFGraphError(f"truncated file: field {number} at byte {at} runs past the end of the data")
            value, i = buf[i : i + size], i + size
        elif wire == LENGTH:
            size, i = _varint(buf, i, base)
            if i + size > len(buf):
                raise TFGraphError(
                    f"truncated file: field {number} at byte {at} needs {size} bytes, only {len(buf) - i} are left"
                )
            start = base + i
            value, i = buf[i : i + size], i + size
        else:
            raise TFGraphError(f"malformed field {number} at byte {at}: unsupported wire type {wire}")
        yield number, wire, value, at, start


def _expect(value, wire: int, wanted: int, what: str, at: int):
    if wire != wanted:
        raise TFGraphError(f"malformed {what} at byte {at}: wire type {wire}, expected {wanted}")
    return value


def _text(value: memoryview, what: str, at: int) -> str:
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise TFGraphError(f"malformed {what} at byte {at}: not UTF-8 text") from None


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _scalars(value, wire: int, kind: str, at: int) -> list:
    """A repeated numeric field, packed (one length-delimited run) or not."""
    if kind == "float":
        if wire == FIXED32:
            return [struct.unpack("<f", value)[0]]
        raw = bytes(_expect(value, wire, LENGTH, "packed floats", at))
        if len(raw) % 4:
            raise TFGraphError(f"malformed packed floats at byte {at}: {len(raw)} bytes")
        return list(np.frombuffer(raw, "<f4"))
    if kind == "double":
        if wire == FIXED64:
            return [struct.unpack("<d", value)[0]]
        raw = bytes(_expect(value, wire, LENGTH, "packed doubles", at))
        if len(raw) % 8:
            raise TFGraphError(f"malformed packed doubles at byte {at}: {len(raw)} bytes")
        return list(np.frombuffer(raw, "<f8"))
    if wire == VARINT:
        return [_signed(value)]
    packed = _expect(value, wire, LENGTH, "packed integers", at)
    out, i = [], 0
    while i < len(packed):
        v, i = _varint(packed, i, at)
        out.append(_signed(v))
    return out


# ------------------------------------------------------------------------------------ the messages


def _node(buf: memoryview, base: int) -> TFNode:
    name, op, inputs, attrs = None, None, [], {}
    for number, wire, value, at, start in _fields(buf, base):
        if number == 1:
            name = _text(_expect(value, wire, LENGTH, "NodeDef.name", at), "node name", at)
        elif number == 2:
            op = _text(_expect(value, wire, LENGTH, "NodeDef.op", at), "node op", at)
        elif number == 3:
            inputs.append(_text(_expect(value, wire, LENGTH, "NodeDef.input", at), "node input", at))
        elif number == 5:
            key, attr = _attr_entry(_expect(value, wire, LENGTH, "NodeDef.attr", at), start)
            attrs[key] = attr
    if not name or not op:
        raise TFGraphError(f"malformed node at byte {base}: it has no name or no op")
    return TFNode(name, op, tuple(inputs), attrs)


def _attr_entry(buf: memoryview, base: int) -> tuple[str, object]:
    key, value = "", None
    for number, wire, v, at, start in _fields(buf, base):
        if number == 1:
            key = _text(_expect(v, wire, LENGTH, "attribute name", at), "attribute name", at)
        elif number == 2:
            value = _attr_value(_expect(v, wire, LENGTH, "attribute value", at), start)
    return key, value


def _attr_value(buf: memoryview, base: int) -> object:
    """An ``AttrValue``: str, int, float, bool, dtype (int), shape (tuple), tensor (array) or list."""
    value: object = None
    for number, wire, v, at, start in _fields(buf, base):
        if number == 1:
            value = _attr_list(_expect(v, wire, LENGTH, "attribute list", at), start)
        elif number == 2:
            value = bytes(_expect(v, wire, LENGTH, "attribute string", at)).decode("utf-8", "replace")
        elif number in (3, 6):
            value = _signed(_expect(v, wire, VARINT, "attribute integer", at))
        elif number == 4:
            value = struct.unpack("<f", _expect(v, wire, FIXED32, "attribute float", at))[0]
        elif number == 5:
            value = bool(_expect(v, wire, VARINT, "attribute bool", at))
        elif number == 7:
            value = _shape(_expect(v, wire, LENGTH, "attribute shape", at), start)
        elif number == 8:
            value = _tensor(_expect(v, wire, LENGTH, "attribute tensor", at), start)
    return value


def _attr_list(buf: memoryview, base: int) -> list:
    out: list = []
    for number, wire, v, at, start in _fields(buf, base):
        if number == 2:
            out.append(bytes(_expect(v, wire, LENGTH, "list string", at)).decode("utf-8", "replace"))
        elif number in (3, 5, 6):
            out.extend(_scalars(v, wire, "int", start))
        elif number == 4:
            out.extend(float(f) for f in _scalars(v, wire, "float", start))
        elif number == 7:
            out.append(_shape(_expect(v, wire, LENGTH, "list shape", at), start))
    return out


def _shape(buf: memoryview, base: int) -> tuple[int, ...] | None:
    """A ``TensorShapeProto``: the dims (-1 for unknown), or None for an unknown rank."""
    dims: list[int] = []
    for number, wire, v, at, start in _fields(buf, base):
        if number == 2:
            size = 0
            for n, w, d, a, _ in _fields(_expect(v, wire, LENGTH, "shape dimension", at), start):
                if n == 1:
                    size = _signed(_expect(d, w, VARINT, "dimension size", a))
            dims.append(size)
        elif number == 3 and wire == VARINT and v:
            return None
    if len(dims) > MAX_RANK:
        raise TFGraphError(f"malformed shape at byte {base}: rank {len(dims)}")
    return tuple(dims)


def _tensor(buf: memoryview, base: int) -> np.ndarray:
    """A ``TensorProto`` as an array of its dtype and shape."""
    dtype_code, shape, content, values = None, (), None, []
    kinds = {5: "float", 6: "double", 7: "int", 10: "int", 11: "int"}
    for number, wire, v, at, start in _fields(buf, base):
        if number == 1:
            dtype_code = _expect(v, wire, VARINT, "tensor dtype", at)
        elif number == 2:
            shape = _shape(_expect(v, wire, LENGTH, "tensor shape", at), start)
        elif number == 4:
            content = bytes(_expect(v, wire, LENGTH, "tensor content", at))
        elif number in kinds:
            values.extend(_scalars(v, wire, kinds[number], start))
    if dtype_code not in DTYPES:
        raise TFGraphError(f"unsupported tensor at byte {base}: TensorFlow dtype {dtype_code}")
    if shape is None or any(d < 0 for d in shape):
        raise TFGraphError(f"malformed tensor at byte {base}: shape {shape} is not fully known")
    dtype, count = DTYPES[dtype_code], math.prod(shape)
    if content is not None:
        if len(content) != count * dtype.itemsize:
            raise TFGraphError(
                f"malformed tensor at byte {base}: shape {shape} of {dtype} needs {count * dtype.itemsize} "
                f"bytes, the file holds {len(content)}"
            )
        return np.frombuffer(content, dtype).reshape(shape).astype(dtype.newbyteorder("="))
    if len(values) == count:
        return np.array(values, dtype=dtype.newbyteorder("=")).reshape(shape)
    if len(values) > count or count > MAX_FILLED_ELEMENTS:
        raise TFGraphError(f"malformed tensor at byte {base}: {len(values)} values for shape {shape}")
    fill = values[-1] if values else 0  # TensorFlow repeats the last value (or zero) to fill the shape
    out = np.full(shape, fill, dtype=dtype.newbyteorder("="))
    out.flat[: len(values)] = values
    return out
