"""ONNX embedders whose numbers go non-finite on some photos, as a user's graph with a bad division does.

Each is the tiny embedder of ``onnx_files`` (Conv → GlobalAveragePool → Flatten, (N, 3, 112, 112) →
(N, 4)) with one more term that depends on m, the mean of the image the graph is given:

- "nan":  y = f · sqrt(m − c)            NaN embedding where m < c
- "inf":  y = f · (1 + exp(1000 · (c − m)))    Inf embedding where m < c − 0.1
- "grad": y = f + GAP(sqrt(g · g)), g = relu(conv)   finite embedding, NaN gradient (∞ · 0) at layer
  "relu" wherever the conv output is ≤ 0, i.e. on every photo (``c`` unused)

so for "nan" and "inf" a threshold ``c`` between two photos' means breaks the darker and spares the other (and
a noise image, whose mean is about 127.5, as leam's load-time probe feeds).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.helpers.onnx_files import conv_weight

KINDS = ("nan", "inf", "grad")


def nonfinite_model(path: Path, kind: str, threshold: float) -> Path:
    """Write the ``kind`` embedder with threshold ``threshold`` (of the graph's input mean) to ``path``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if kind not in KINDS:
        raise ValueError(f"expected kind in {KINDS}, got {kind!r}")
    const = [numpy_helper.from_array(np.array([threshold], np.float32), "c"),
             numpy_helper.from_array(np.array([1000.0], np.float32), "k"),
             numpy_helper.from_array(np.array([1.0], np.float32), "one")]
    nodes = [helper.make_node("Conv", ["x", "W"], ["conv"], strides=[2, 2], name="conv"),
             helper.make_node("GlobalAveragePool", ["conv"], ["pool"], name="pool"),
             helper.make_node("Flatten", ["pool"], ["f"], name="flat"),
             helper.make_node("ReduceMean", ["x"], ["m4"], axes=[1, 2, 3], keepdims=1, name="mean"),
             helper.make_node("Flatten", ["m4"], ["m"], name="mflat"),
             helper.make_node("Sub", ["m", "c"], ["d"], name="sub")]
    if kind == "nan":
        nodes += [helper.make_node("Sqrt", ["d"], ["s"], name="sqrt"), helper.make_node("Mul", ["f", "s"], ["y"])]
    elif kind == "inf":
        nodes += [helper.make_node("Mul", ["d", "k"], ["dk0"]), helper.make_node("Neg", ["dk0"], ["dk"]),
                  helper.make_node("Exp", ["dk"], ["e"]),
                  helper.make_node("Add", ["e", "one"], ["e1"]), helper.make_node("Mul", ["f", "e1"], ["y"])]
    else:
        nodes += [helper.make_node("Relu", ["conv"], ["g"], name="relu"), helper.make_node("Mul", ["g", "g"], ["gg"]),
                  helper.make_node("Sqrt", ["gg"], ["q"]), helper.make_node("GlobalAveragePool", ["q"], ["qp"]),
                  helper.make_node("Flatten", ["qp"], ["qf"]), helper.make_node("Add", ["f", "qf"], ["y"])]
    graph = helper.make_graph(
        nodes, f"nonfinite-{kind}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(conv_weight(0), "W"), *const],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path
