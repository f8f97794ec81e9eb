"""Gradient-free forwards at an inference engine's speed: a model's net exported once to ONNX (in memory)
and run by ONNX Runtime, checked against the PyTorch module on the first chips it embeds.

LEAM itself needs gradients and stays in PyTorch; what needs none (occlusion, transfer, deletion and
insertion curves: hundreds of forwards per photo) can take an ``embed`` callable instead of
``FaceModel.embed``. ``gradient_free_embed(model, "onnxruntime")`` gives one:

>>> embed = gradient_free_embed(model, "onnxruntime", threads=1)     # doctest: +SKIP
>>> embed(chips).shape                                                # (N, H, W, 3) uint8 -> (N, D)  # doctest: +SKIP

On the first call the net is exported (``torch.onnx.export``, TorchScript exporter, opset 17, dynamic
batch; never a file, nothing unpickled), PReLU nodes are rewritten as ``Relu(x) + slope * Min(x, 0)``
(the same numbers; ONNX Runtime's PReLU is slow on per-channel slopes) and the session's embeddings of
those chips are compared with ``FaceModel.embed``'s: each row's largest difference over the embedding's
norm must be at most ``PARITY_TOLERANCE``. On an export error, a session that does not load or run, or a
parity failure, the embedder warns once (``ForwardsFallback``, a ``RuntimeWarning`` of one line saying why)
and computes with PyTorch from then on; ``engine`` says which one computes, ``reason`` why not ONNX Runtime.

Measured (``benchmarks/forwards.py``, one thread, this machine): ONNX Runtime computes the study's forwards
1.3-1.9x faster than PyTorch (dlib-resnet the least, FaceNet and SFace the most), agreeing to 1e-7 (3e-6 for
facenet-keras) of the embedding's norm; the export, session and check cost 0.3-2 s per model, once per process.
``inference_mode`` and channels-last gained nothing measurable; bfloat16 was 1.5-3.3x faster but moved occlusion drops
by 1e-3 to 5e-3, so it is not offered.
"""

from __future__ import annotations

import importlib.util
import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from leam._finite import check_finite
from leam._torch_state import preserved_state
from leam.models._registry import FaceModel

FORWARDS = ("torch", "onnxruntime")  # what computes the gradient-free forwards
PARITY_TOLERANCE = 1e-4  # max |ONNX Runtime - PyTorch| per embedding, relative to the PyTorch embedding's norm
OPSET = 17
TORCH_BATCH = 32  # FaceModel.embed's
ONNX_BATCH = 4  # chips per session run: one thread runs MobileFaceNets ~1.3x faster at 4 than at 32, ResNets the same


class ForwardsFallback(RuntimeWarning):
    """ONNX Runtime could not compute a model's gradient-free forwards; PyTorch computes them instead."""


def installed_forwards() -> tuple[str, ...]:
    """The engines of ``FORWARDS`` this environment can run (torch always)."""
    return tuple(e for e in FORWARDS if e == "torch" or importlib.util.find_spec(e) is not None)


def fastest_forwards() -> str:
    """The fastest engine installed: ONNX Runtime when it is (``benchmarks/study.py forwards``), else torch."""
    return "onnxruntime" if "onnxruntime" in installed_forwards() else "torch"


def gradient_free_embed(model: FaceModel, engine: str = "torch", threads: int = 1) -> TorchEmbedder | OnnxEmbedder:
    """An ``embed`` callable (N, H, W, 3) uint8 chips → (N, D) float32 embeddings for ``model`` computed by
    ``engine`` (``FORWARDS``): ``model.embed`` for torch (``TorchEmbedder``), an ``OnnxEmbedder`` on ``threads``
    threads for onnxruntime."""
    if engine not in FORWARDS:
        raise ValueError(f"expected engine in {FORWARDS}, got {engine!r}")
    if engine == "torch":
        return TorchEmbedder(model)
    return OnnxEmbedder(model, threads)


class TorchEmbedder:
    """``model.embed`` with an ``engine`` attribute (always "torch"), like ``OnnxEmbedder``."""

    engine, reason = "torch", ""

    def __init__(self, model: FaceModel, batch_size: int = TORCH_BATCH) -> None:
        self.model, self.batch_size = model, batch_size

    def __call__(self, chips: np.ndarray) -> np.ndarray:
        return self.model.embed(chips, self.batch_size)


class OnnxEmbedder:
    """``model``'s embeddings from an ONNX Runtime session on ``threads`` threads (intra- and inter-op),
    built and checked on the first call (see the module's note); ``engine``: "onnxruntime" once the check
    passed, "torch" after a fallback (``reason`` says why), None before the first call. ``batch_size``: chips
    per session run (PyTorch's check and fallback: ``TORCH_BATCH``, as ``FaceModel.embed``)."""

    def __init__(self, model: FaceModel, threads: int = 1, batch_size: int = ONNX_BATCH,
                 tolerance: float = PARITY_TOLERANCE) -> None:
        self.model, self.threads, self.batch_size, self.tolerance = model, threads, batch_size, tolerance
        self.session = None
        self.engine: str | None = None
        self.reason = ""

    def __call__(self, chips: np.ndarray) -> np.ndarray:
        if self.engine is None:
            return self._first(chips)
        if self.engine == "torch":
            return self.model.embed(chips, TORCH_BATCH)
        return self._run(chips)

    def _first(self, chips: np.ndarray) -> np.ndarray:
        """Build the session, embed ``chips`` both ways and keep ONNX Runtime if they agree."""
        expected = self.model.embed(chips, TORCH_BATCH)  # also checks the chips' shape
        try:
            if self.model.device.type != "cpu":
                raise RuntimeError(f"the model is on {self.model.device}; ONNX Runtime runs here on the CPU")
            self.session = onnx_session(export_onnx(self.model), self.threads)
            got = self._run(chips)
            error = parity_error(got, expected)
            if not error <= self.tolerance:
                raise RuntimeError(f"its embeddings differ from PyTorch's by {error:.2g} of their norm "
                                   f"(tolerance {self.tolerance:g})")
        except Exception as exc:  # noqa: BLE001 - any failure of export or session: PyTorch computes instead
            self.session, self.engine = None, "torch"
            self.reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            warnings.warn(f"{self.model.spec.name}: ONNX Runtime not used for gradient-free forwards, PyTorch "
                          f"computes them ({self.reason})", ForwardsFallback, stacklevel=3)
            return expected
        self.engine = "onnxruntime"
        return got

    def _run(self, chips: np.ndarray) -> np.ndarray:
        x = self.model.chips_to_tensor(chips).numpy()  # (N, 3, H, W), strided as the chips (N, H, W, 3)
        name = self.session.get_inputs()[0].name
        out = [self.session.run(None, {name: np.ascontiguousarray(x[i : i + self.batch_size])})[0]
               for i in range(0, len(x), self.batch_size)]
        return check_finite(np.concatenate(out).astype(np.float32, copy=False), self.model.spec.name)


def parity_error(got: np.ndarray, expected: np.ndarray) -> float:
    """The largest, over rows, of max |got - expected| / ‖expected‖ (inf for shapes that differ or non-finite
    values)."""
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    if got.shape != expected.shape or not np.isfinite(got).all():
        return float("inf")
    norms = np.maximum(np.linalg.norm(expected, axis=1), np.finfo(np.float64).tiny)
    return float((np.abs(got - expected).max(axis=1) / norms).max()) if len(got) else 0.0


def export_onnx(model: FaceModel) -> bytes:
    """``model.net`` (in eval mode, its state restored after) as ONNX bytes with a dynamic batch axis, PReLU
    rewritten (``decompose_prelu``)."""
    h, w = model.spec.input_size
    buffer = io.BytesIO()
    with preserved_state(model.net), torch.no_grad(), _quiet_export():
        torch.onnx.export(model.net, (torch.zeros(1, 3, h, w),), buffer, dynamo=False, opset_version=OPSET,
                          input_names=["chips"], output_names=["embeddings"],
                          dynamic_axes={"chips": {0: "batch"}, "embeddings": {0: "batch"}})
    return decompose_prelu(buffer.getvalue())


@contextmanager
def _quiet_export() -> Iterator[None]:
    """Within the block the exporter's warnings (tracer and deprecation notes: the parity check judges the
    result) are ignored, and its log is not written: torch 2.x's TorchScript exporter turns its log on for
    every export and, when an export fails, prints the whole graph to standard output (where a command's
    results go); the log is off again afterwards."""
    log = getattr(torch._C, "_jit_onnx_log", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if log is not None:
            torch._C._jit_onnx_log = lambda *_args: None
        try:
            yield
        finally:
            if log is not None:
                torch._C._jit_onnx_log = log
            if hasattr(torch._C, "_jit_set_onnx_log_enabled"):
                torch._C._jit_set_onnx_log_enabled(False)


def decompose_prelu(data: bytes) -> bytes:
    """Each ``PRelu(x, slope)`` node as ``Relu(x) + slope * Min(x, 0)``: the same value for every x (x ≥ 0:
    x + slope·0; x < 0: 0 + slope·x), ~1.4x faster in ONNX Runtime on MobileFaceNet's per-channel slopes.
    ``data`` unchanged without PReLU or without the ``onnx`` package."""
    if b"PRelu" not in data or importlib.util.find_spec("onnx") is None:
        return data
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(data)
    nodes = []
    for k, node in enumerate(model.graph.node):
        if node.op_type != "PRelu":
            nodes.append(node)
            continue
        (x, slope), out, p = node.input, node.output[0], f"prelu{k}_"
        nodes += [
            helper.make_node("Constant", [], [p + "zero"], value=numpy_helper.from_array(np.zeros((), np.float32))),
            helper.make_node("Relu", [x], [p + "pos"]),
            helper.make_node("Min", [x, p + "zero"], [p + "neg"]),
            helper.make_node("Mul", [p + "neg", slope], [p + "scaled"]),
            helper.make_node("Add", [p + "pos", p + "scaled"], [out]),
        ]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model.SerializeToString()


def onnx_session(data: bytes, threads: int = 1):
    """An ONNX Runtime CPU session over ``data`` on ``threads`` intra-op and inter-op threads, sequential,
    all graph optimisations, warnings off (errors still raise)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
