"""Face-recognition models: a registry of specs and factories; one module per family."""

from leam.models import dlib_resnet as _dlib_resnet  # noqa: F401  (registers "dlib-resnet")
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

DEFAULT_MODEL = "dlib-resnet"

__all__ = [
    "DEFAULT_MODEL",
    "AlignmentTemplate",
    "FaceModel",
    "ModelSpec",
    "create_model",
    "default_weights_path",
    "list_models",
    "model_spec",
    "register_model",
]
