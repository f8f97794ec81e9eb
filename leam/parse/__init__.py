"""Face parsers: label maps with CelebAMask-HQ class names in a model's aligned frame.

A parser has a ``name``, the ``classes`` it can produce, and
``parse(photo, face: AlignedFace) -> LabelMap`` (labels in ``face``'s chip frame).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from leam.errors import LeamError
from leam.face import AlignedFace
from leam.face.labels import CLASSES, PALETTE, UNLABELLED, UNLABELLED_NAME, LabelMap
from leam.parse.landmarks import LandmarkParser

DEFAULT_PARSER = "landmarks"


class FaceParser(Protocol):
    name: str
    classes: tuple[str, ...]

    def parse(self, photo: np.ndarray, face: AlignedFace) -> LabelMap: ...


ParserFactory = Callable[[str | Path | None], FaceParser]
_PARSERS: dict[str, tuple[str, ParserFactory]] = {}


def register_parser(name: str, description: str) -> Callable[[ParserFactory], ParserFactory]:
    """Register ``factory(weights_path | None) -> FaceParser`` under ``name``."""

    def wrap(factory: ParserFactory) -> ParserFactory:
        if name in _PARSERS:
            raise ValueError(f"parser {name!r} is already registered")
        _PARSERS[name] = (description, factory)
        return factory

    return wrap


def list_parsers() -> dict[str, str]:
    """{name: description} of the registered parsers, default first."""
    return {name: desc for name, (desc, _) in _PARSERS.items()}


def create_parser(name: str = DEFAULT_PARSER, weights: str | Path | None = None) -> FaceParser:
    if name not in _PARSERS:
        raise LeamError(f"unknown parser {name!r}; registered parsers: {', '.join(_PARSERS)}")
    return _PARSERS[name][1](weights)


register_parser(
    "landmarks", "polygons from dlib's 68 landmarks: skin, brows, eyes, nose, lips, mouth (installed)"
)(lambda weights=None: LandmarkParser())


def _register_optional(module: str) -> None:
    """Import a parser module (it registers itself); a missing third-party package skips it."""
    import importlib

    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == "leam":
            raise


_register_optional("leam.parse.bisenet")
_register_optional("leam.parse.farl")
_register_optional("leam.parse.mediapipe_face")

__all__ = [
    "CLASSES",
    "DEFAULT_PARSER",
    "PALETTE",
    "UNLABELLED",
    "UNLABELLED_NAME",
    "FaceParser",
    "LabelMap",
    "create_parser",
    "list_parsers",
    "register_parser",
]
