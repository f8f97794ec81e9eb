"""leam: Layer Embedding Activation Mapping — which parts of a person's face an FR model relies on.

The package reads as the pipeline: ``data`` (photos, folders, manifests) → ``face`` (detection, alignment
templates, labels) → ``models`` (registry, families) → ``maps`` (the LEAM engine, explanations) →
``metrics`` (regions, similarity, occlusion, verification) → ``study`` (runs, store, engines) → ``report``
(pages, plots); ``parse`` (face parsers) and ``protect`` sit beside them, ``cli`` on top.

The names most scripts need are importable from here (loaded on first use, so ``import leam`` stays light)::

    >>> from leam import create_model, explain_file, write_explanation       # doctest: +SKIP
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "load_image": "leam.data.images",
    "load_dataset": "leam.data.dataset",
    "align_file": "leam.face",
    "align_photo": "leam.face",
    "create_model": "leam.models",
    "list_models": "leam.models",
    "model_spec": "leam.models",
    "LEAM": "leam.maps",
    "Explanation": "leam.maps.explain",
    "explain_face": "leam.maps.explain",
    "explain_file": "leam.maps.explain",
    "create_parser": "leam.parse",
    "StudyConfig": "leam.study.config",
    "run_study": "leam.study.run",
    "run_verify": "leam.study.verification",
    "write_explanation": "leam.report.explanation",
    "write_report": "leam.report.html",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'leam' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
