"""leam's own exception types: every failure a user can cause maps onto one of these."""

from __future__ import annotations


class LeamError(Exception):
    """Base class for errors leam reports to its users (one clear line, no traceback)."""


class ImageError(LeamError):
    """A file cannot be read as a photo (missing, empty, truncated, not an image, too large)."""


class FaceError(LeamError):
    """A photo does not hold exactly one usable face."""


class NoFaceError(FaceError):
    """No face was found in a photo."""


class MultipleFacesError(FaceError):
    """Several faces were found and no rule to pick one was given."""

    def __init__(self, message: str, boxes: list[tuple[int, int, int, int]]) -> None:
        super().__init__(message)
        self.boxes = boxes


class ModelError(LeamError):
    """A model name is unknown, or its weight file is missing, corrupt or mismatched."""


class LayerError(LeamError):
    """A layer name does not exist in a model."""


class DegenerateReferenceError(LeamError):
    """A reference is unusable, e.g. the image is its own reference (all-zero gradient)."""


class NonFiniteError(LeamError):
    """A model gave NaN or Inf (an embedding, a gradient, a map) for a photo: no number made from it means
    anything, so leam refuses the photo instead of printing or storing it."""


class UsageError(LeamError, ValueError):
    """The Python API called with an argument out of its range (an unknown direction or method, images of the
    wrong shape): leam's own error, and a ``ValueError`` as before."""
