"""ONNX external data, checked by leam before any of it is read, whatever onnx version is installed.

An ONNX tensor may keep its bytes in another file (``data_location = EXTERNAL``, ``location`` relative
to the model's folder). onnx before 1.16 followed ``sub/../../etc/passwd``, and before 1.21 symbolic
links, reading any file the user can read as weights. So leam parses the model without its external
data, checks every external tensor (initializers, sparse initializers, tensors of node attributes,
in subgraphs, functions and training graphs), and only then reads the bytes itself into the model:

* ``location`` is relative, and resolves (symbolic links followed) to a file inside the model's folder;
* that file is a regular file (no folder, pipe or device) with one hard link (a second name could be a
  file outside the folder);
* ``offset`` and ``length`` are whole numbers, the length is the tensor's size (dims × data type), and
  the bytes lie within the file.

The file opened for reading must be the file checked (same device and inode, no link followed).

>>> inline_external_data(onnx.load(path, load_external_data=False), path)   # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

from leam._io import text_name
from leam.errors import ModelError

EXTERNAL = 1  # TensorProto.EXTERNAL
# bits per element of each ONNX data type (onnx.proto's TensorProto.DataType); 4- and 2-bit types are packed
ELEMENT_BITS = {
    1: 32, 2: 8, 3: 8, 4: 16, 5: 16, 6: 32, 7: 64, 9: 8, 10: 16, 11: 64, 12: 32, 13: 64, 14: 64, 15: 128,
    16: 16, 17: 8, 18: 8, 19: 8, 20: 8, 21: 4, 22: 4, 23: 4, 24: 8, 25: 2, 26: 2,
}  # fmt: skip
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True)
class ExternalData:
    """One checked external tensor: the bytes ``offset`` to ``offset + length`` of the regular file
    ``path`` (resolved), which was the file ``(device, inode)`` when checked."""

    tensor: object  # onnx.TensorProto
    path: Path
    offset: int
    length: int
    file_id: tuple[int, int]


def all_tensors(model) -> Iterator[object]:
    """Every TensorProto of ``model`` (a ModelProto) that can hold data: the graph's initializers, the
    values and indices of its sparse initializers, and the tensors of node attributes, through
    subgraphs, functions and training graphs."""
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from _node_tensors(node)
    for info in model.training_info:
        yield from _graph_tensors(info.initialization)
        yield from _graph_tensors(info.algorithm)


def _graph_tensors(graph) -> Iterator[object]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node) -> Iterator[object]:
    for a in node.attribute:
        if a.HasField("t"):
            yield a.t
        yield from a.tensors
        for sparse in [a.sparse_tensor] * a.HasField("sparse_tensor") + list(a.sparse_tensors):
            yield from (sparse.values, sparse.indices)
        for graph in [a.g] * a.HasField("g") + list(a.graphs):
            yield from _graph_tensors(graph)


def tensor_bytes(tensor) -> int | None:
    """The size in bytes of ``tensor``'s data from its dims and data type; None for types that have no
    fixed size (strings) or that leam does not know."""
    bits = ELEMENT_BITS.get(tensor.data_type)
    if bits is None or any(d < 0 for d in tensor.dims):
        return None
    return (math.prod(tensor.dims) * bits + 7) // 8


def check_external_data(model, path: str | Path) -> list[ExternalData]:
    """Every external tensor of ``model`` (parsed from ``path`` without its external data), checked;
    ``ModelError`` naming the model file, the tensor and its location for the first that fails."""
    folder = Path(path).parent
    real_folder = Path(os.path.realpath(folder))
    return [
        _checked(t, folder, real_folder, text_name(str(path)))
        for t in all_tensors(model)
        if t.data_location == EXTERNAL
    ]


def _checked(tensor, folder: Path, real_folder: Path, model: str) -> ExternalData:
    keys = [e.key for e in tensor.external_data]
    info = {e.key: e.value for e in tensor.external_data}
    location = info.get("location", "")

    def refuse(why: str) -> ModelError:
        return ModelError(f"{model}: refused: tensor {text_name(tensor.name) or '(unnamed)'!r} keeps its data at "
                          f"{text_name(location)!r}, {why}; ONNX weights must lie in regular files inside the "
                          f"model's folder {text_name(str(real_folder))}")

    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise refuse(f"which names {', '.join(repeated)} more than once")
    if not location or "\0" in location:
        raise refuse("which is no file name")
    if os.path.isabs(location) or PureWindowsPath(location).anchor:
        raise refuse("an absolute path")
    real = Path(os.path.realpath(folder / location))
    if not real.is_relative_to(real_folder):
        raise refuse(f"which leads outside the model's folder (to {text_name(str(real))})")
    try:
        st = os.stat(real)
    except OSError as exc:
        raise refuse("which cannot be found" if isinstance(exc, FileNotFoundError) else
                     f"which cannot be opened ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise refuse("which is not a regular file (a folder, pipe or device)")
    if st.st_nlink > 1:
        raise refuse(f"a file with {st.st_nlink} hard links (another of its names may lie outside the folder: "
                     "copy it instead of linking it)")
    offset, length, needed = _whole(info.get("offset", "0")), _whole(info.get("length")), tensor_bytes(tensor)
    malformed = [f"{key} {info[key]!r}" for key in ("offset", "length") if key in info and _whole(info[key]) is None]
    if malformed:
        raise refuse(f"with {' and '.join(malformed)}, expected a whole number of bytes")
    if needed is None:
        raise refuse(f"but its data type {tensor.data_type} or dims {list(tensor.dims)} give no size in bytes")
    if length is not None and length != needed:
        raise refuse(f"with length {length}, but its dims {list(tensor.dims)} and data type need {needed} bytes")
    if offset + needed > st.st_size:
        raise refuse(f"bytes {offset} to {offset + needed}, beyond the file's {st.st_size} bytes")
    return ExternalData(tensor, real, offset, needed, (st.st_dev, st.st_ino))


def _whole(value: str | None) -> int | None:
    """A non-negative decimal integer from ``value``, else None."""
    return int(value) if value is not None and value.isascii() and value.isdigit() else None


def read_external_data(entry: ExternalData, model: str) -> bytes:
    """The checked bytes of ``entry``, from the very file that was checked (no link followed, no pipe
    waited on)."""
    try:
        fd = os.open(entry.path, _OPEN_FLAGS)
    except OSError as exc:
        raise ModelError(f"{model}: cannot open {text_name(str(entry.path))}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if (st.st_dev, st.st_ino) != entry.file_id or not stat.S_ISREG(st.st_mode):
            raise ModelError(f"{model}: {text_name(str(entry.path))} was replaced while the model was read")
        f.seek(entry.offset)
        data = f.read(entry.length)
    if len(data) != entry.length:
        raise ModelError(f"{model}: {text_name(str(entry.path))} shrank while the model was read")
    return data


def inline_external_data(model, path: str | Path) -> None:
    """Check every external tensor of ``model`` (parsed from ``path`` without external data), then read
    their bytes into the model: afterwards no tensor refers to a file."""
    entries = check_external_data(model, path)
    for entry in entries:
        data = read_external_data(entry, text_name(str(path)))
        entry.tensor.raw_data = data
        entry.tensor.data_location = 0  # TensorProto.DEFAULT
        del entry.tensor.external_data[:]
