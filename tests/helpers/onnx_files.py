"""ONNX files made on the spot with ``onnx.helper``: a tiny embedder whose weights can live in another
file (external data), and hostile variants whose external data points at files they must not read.

The embedder: input (N, 3, 112, 112) → Conv 3→4 (3x3, stride 2, weight ``W``) → GlobalAveragePool →
Flatten → (N, 4). ``SECRET`` is what a file outside the model's folder holds in the hostile cases: 108
float32 values of 1234.5, exactly the size of ``W``, so that read as weights it would load.

>>> cases = write_external_data_cases(tmp / "cases", tmp / "secret.bin")      # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

W_SHAPE = (4, 3, 3, 3)
W_BYTES = int(np.prod(W_SHAPE)) * 4
SECRET = np.full(W_SHAPE, 1234.5, np.float32).tobytes()


def conv_weight(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(W_SHAPE).astype(np.float32)


def tiny_model(seed: int = 0):
    """The tiny embedder as a ModelProto with its weight ``W`` inline (opset 17)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "W"], ["c"], strides=[2, 2], name="conv"),
         helper.make_node("GlobalAveragePool", ["c"], ["p"], name="pool"),
         helper.make_node("Flatten", ["p"], ["y"], name="flat")],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(conv_weight(seed), "W")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def make_external(tensor, location: str, **entries: str) -> None:
    """Turn ``tensor`` into one whose data is at ``location`` (plus e.g. ``offset``, ``length``), as a
    model file can say: nothing of its own data is kept."""
    from onnx import TensorProto

    for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data"):
        tensor.ClearField(field)
    tensor.data_location = TensorProto.EXTERNAL
    del tensor.external_data[:]
    for key, value in {"location": location, **entries}.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def save_with_external_weight(folder: Path, location: str = "tiny.weights", seed: int = 0) -> Path:
    """``folder/tiny.onnx`` whose ``W`` is in ``folder/<location>`` (a legitimate external-data model)."""
    import onnx

    folder.mkdir(parents=True, exist_ok=True)
    model = tiny_model(seed)
    (folder / location).parent.mkdir(parents=True, exist_ok=True)
    (folder / location).write_bytes(conv_weight(seed).tobytes())
    make_external(model.graph.initializer[0], location, offset="0", length=str(W_BYTES))
    onnx.save(model, str(folder / "tiny.onnx"))
    return folder / "tiny.onnx"


@dataclass(frozen=True)
class ExternalCase:
    """A model file whose tensor ``tensor`` keeps its data at ``location``; ``error``: the regex its
    one-line refusal must match."""

    name: str
    model: Path
    tensor: str
    location: str
    error: str


def write_external_data_cases(folder: Path, secret: Path) -> list[ExternalCase]:
    """A folder per hostile case under ``folder`` (each holding ``model.onnx``), all reaching for
    ``secret`` (written with ``SECRET``, outside every case's folder) or for a file leam must not read."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    secret.write_bytes(SECRET)
    cases: list[ExternalCase] = []

    def case(name: str, location: str, error: str, model=None, tensor: str = "W", **entries: str) -> Path:
        home = folder / name
        (home / "sub").mkdir(parents=True)
        model = model or tiny_model()
        target = next(t for t in _tensors(model) if t.name == tensor)
        make_external(target, location, **entries)
        onnx.save(model, str(home / "model.onnx"))
        cases.append(ExternalCase(name, home / "model.onnx", tensor, location, error))
        return home

    up = os.path.relpath(secret, folder / "x")  # ../secret.bin from a case's folder
    case("dotdot", up, "leads outside the model's folder")
    case("dotdot-in-subfolder", f"sub/../{up}", "leads outside the model's folder")
    case("etc-passwd", "a/" + "../" * 40 + "etc/passwd", r"leads outside the model's folder \(to /etc/passwd\)")
    case("absolute", str(secret), "an absolute path")
    case("absolute-etc-passwd", "/etc/passwd", "an absolute path")
    (case("symlink", "weights.bin", "leads outside the model's folder") / "weights.bin").symlink_to(secret)
    home = case("symlinked-folder", "data/w.bin", "leads outside the model's folder")
    (folder / "elsewhere").mkdir()
    (folder / "elsewhere" / "w.bin").write_bytes(SECRET)
    (home / "data").symlink_to(folder / "elsewhere")
    os.mkfifo(case("fifo", "pipe.bin", r"not a regular file \(a folder, pipe or device\)") / "pipe.bin")
    case("folder", "sub", r"not a regular file")
    case("missing", "nothing.bin", "cannot be found")
    loop = case("symlink-loop", "loop.bin", "cannot be opened") / "loop.bin"
    loop.symlink_to(loop.name)
    os.link(secret, case("hardlink", "twin.bin", "2 hard links") / "twin.bin")
    for name, entries, error in (
        ("beyond-the-file", {"offset": str(W_BYTES - 4)}, rf"bytes {W_BYTES - 4} to {2 * W_BYTES - 4}, beyond "
                                                          rf"the file's {W_BYTES} bytes"),
        ("offset-past-the-end", {"offset": "999999999999"}, "beyond the file's"),
        ("length-too-short", {"length": "8"}, rf"length 8, but its dims \[4, 3, 3, 3\] .* need {W_BYTES} bytes"),
        ("negative-offset", {"offset": "-4"}, "expected a whole number of bytes"),
        ("length-not-a-number", {"length": "1e3"}, "expected a whole number of bytes"),
    ):
        (case(name, "w.bin", error, **entries) / "w.bin").write_bytes(SECRET)
    case("no-location", "", "no file name")

    sparse = tiny_model()  # a sparse initializer whose values are outside
    values = numpy_helper.from_array(np.ones(2, np.float32), "S_values")
    indices = numpy_helper.from_array(np.array([0, 5], np.int64), "S_indices")
    sparse.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [108]))
    case("sparse-initializer", up, "leads outside", model=sparse, tensor="S_values")

    nested = tiny_model()  # a Constant inside an If's branch: an attribute tensor in a subgraph
    const = numpy_helper.from_array(np.zeros(W_SHAPE, np.float32), "C")
    branch = helper.make_graph([helper.make_node("Constant", [], ["k"], value=const)], "then", [],
                               [helper.make_tensor_value_info("k", TensorProto.FLOAT, list(W_SHAPE))])
    nested.graph.node.append(helper.make_node("If", ["cond"], ["k_out"], then_branch=branch, else_branch=branch))
    case("subgraph-attribute", f"sub/../{up}", "leads outside", model=nested, tensor="C")
    return cases


def _tensors(model):
    from leam.models._onnx_data import all_tensors

    return all_tensors(model)
