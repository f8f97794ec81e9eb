"""The explorer of a study (``leam explore RUN``): a static site to browse every identity of a run, its photos and
maps, and find the people whose maps are unusual; read from the run's tables and stored maps only, never a model.

Modules: ``people`` (from the run's tables), ``maps`` (from the stored maps), ``render`` (pictures), ``plan`` (what
to draw again), ``pages`` and ``assets`` (HTML, style, scripts), ``site`` (``explore``, which puts them together).
"""

from leam.explore.site import ExploreResult, explore

__all__ = ["ExploreResult", "explore"]
