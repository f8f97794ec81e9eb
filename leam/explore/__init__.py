"""The explorer of a study (``leam explore RUN``): a static site to browse every identity of a run, its photos and
maps, and find the people whose maps are unusual; read from the run's tables and stored maps only, never a model.

Modules: ``people`` (from the run's tables), ``maps`` (from the stored maps), ``jobs`` (one identity under one
model), ``render`` (pictures), ``plan`` (what to draw again), ``tasks`` (the work on each unit, in processes),
``pages`` and ``assets`` (HTML, style, scripts), ``site`` (``explore``, which puts them together).

``explore`` and ``ExploreResult`` load ``site`` on first use, so that a worker importing a task module stays light.
"""

from __future__ import annotations

import importlib

__all__ = ["ExploreResult", "explore"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module("leam.explore.site"), name)
    raise AttributeError(f"module 'leam.explore' has no attribute {name!r}")
