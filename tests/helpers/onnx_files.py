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


# ------------------------------------------------------------------ graphs whose output or input is unusual


def _shaped_graph(nodes: list, output, extra_inits: tuple = (), input_shape: list | None = ("N", 3, 112, 112),
                  seed: int = 0):
    """The tiny embedder's Conv and GlobalAveragePool (``c``, ``p``), then ``nodes`` giving ``output``."""
    from onnx import TensorProto, helper, numpy_helper

    shape = list(input_shape) if input_shape is not None else None
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "W"], ["c"], strides=[2, 2], name="conv"),
         helper.make_node("GlobalAveragePool", ["c"], ["p"], name="pool"), *nodes],
        "shaped",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [output],
        [numpy_helper.from_array(conv_weight(seed), "W"), *extra_inits],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def shaped_models() -> dict[str, object]:
    """Variants of the tiny embedder (ModelProtos) whose input size is left open or whose output is not a
    usable embedding: what a user's export can get wrong. Keys name the case:

    - ``dynamic-size``: input (N, 3, H, W); works at any size.
    - ``no-input-shape``: the input's shape is not stated at all; works at 112x112.
    - ``dynamic-size-fixed-inside``: input (N, 3, H, W), but a Gemm sized for 96x96 images follows the Conv.
    - ``fixed-height-96``: input (N, 3, 96, W).
    - ``rank-3``: (N, 1, 4); ``feature-map``: (N, 4, 1, 1), GlobalAveragePool's output unflattened.
    - ``integer``: (N, 4) int64 (the embedding times 1000, cast); ``float64``: (N, 4) double.
    - ``size-1``: (N, 1), the mean of the 4 values.
    - ``constant``: (N, 4), the embedding times 0 plus a bias: the same for every image.
    - ``reshape-batch-one``: Reshape to (1, -1) at its end: (1, 4N), a graph made for batch size 1 whose
      input says N; works image by image.
    - ``batch-mixing``: (N, 4) minus its mean over the batch: an image's embedding depends on the others.
    - ``nan``: (N, 4) divided by 0 - 0: NaN for every image.
    """
    from onnx import TensorProto, helper, numpy_helper

    def out(shape, dtype=TensorProto.FLOAT):
        return helper.make_tensor_value_info("y", dtype, shape)

    flat = helper.make_node("Flatten", ["p"], ["f"], name="flat")
    gemm_w = np.random.default_rng(1).standard_normal((4 * 47 * 47, 4)).astype(np.float32) / 100
    return {
        "dynamic-size": _shaped_graph([helper.make_node("Flatten", ["p"], ["y"])], out(["N", 4]),
                                      input_shape=["N", 3, "H", "W"]),
        "no-input-shape": _shaped_graph([helper.make_node("Flatten", ["p"], ["y"])], out(None), input_shape=None),
        "dynamic-size-fixed-inside": _shaped_graph(
            [helper.make_node("Flatten", ["c"], ["cf"], name="flat"), helper.make_node("Gemm", ["cf", "G"], ["y"])],
            out(["N", 4]), (numpy_helper.from_array(gemm_w, "G"),), input_shape=["N", 3, "H", "W"]),
        "fixed-height-96": _shaped_graph([helper.make_node("Flatten", ["p"], ["y"])], out(["N", 4]),
                                         input_shape=["N", 3, 96, "W"]),
        "rank-3": _shaped_graph([flat, helper.make_node("Unsqueeze", ["f", "one"], ["y"])], out(["N", 1, 4]),
                                (numpy_helper.from_array(np.array([1], np.int64), "one"),)),
        "feature-map": _shaped_graph([helper.make_node("Identity", ["p"], ["y"])], out(["N", 4, 1, 1])),
        "integer": _shaped_graph(
            [flat, helper.make_node("Mul", ["f", "k"], ["fk"]), helper.make_node("Cast", ["fk"], ["y"], to=7)],
            out(["N", 4], TensorProto.INT64), (numpy_helper.from_array(np.array(1000, np.float32), "k"),)),
        "float64": _shaped_graph([flat, helper.make_node("Cast", ["f"], ["y"], to=TensorProto.DOUBLE)],
                                 out(["N", 4], TensorProto.DOUBLE)),
        "size-1": _shaped_graph([flat, helper.make_node("ReduceMean", ["f"], ["y"], axes=[1], keepdims=1)],
                                out(["N", 1])),
        "constant": _shaped_graph(
            [flat, helper.make_node("Mul", ["f", "zero"], ["f0"]), helper.make_node("Add", ["f0", "B"], ["y"])],
            out(["N", 4]), (numpy_helper.from_array(np.zeros(4, np.float32), "zero"),
                            numpy_helper.from_array(np.arange(1, 5, dtype=np.float32), "B"))),
        "reshape-batch-one": _shaped_graph(
            [flat, helper.make_node("Reshape", ["f", "one-row"], ["y"])], out([1, "D"]),
            (numpy_helper.from_array(np.array([1, -1], np.int64), "one-row"),)),
        "batch-mixing": _shaped_graph(
            [flat, helper.make_node("ReduceMean", ["f"], ["m"], axes=[0], keepdims=1),
             helper.make_node("Sub", ["f", "m"], ["y"])], out(["N", 4])),
        "nan": _shaped_graph(
            [flat, helper.make_node("Div", ["f", "zero"], ["fz"]), helper.make_node("Mul", ["fz", "zero"], ["y"])],
            out(["N", 4]), (numpy_helper.from_array(np.zeros((), np.float32), "zero"),)),
    }


def write_shaped_models(folder: Path) -> dict[str, Path]:
    """``shaped_models()`` saved as ``folder/<case>.onnx``."""
    import onnx

    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, model in shaped_models().items():
        onnx.save(model, str(folder / f"{name}.onnx"))
        paths[name] = folder / f"{name}.onnx"
    return paths
