"""One rule for the numbers models give: every one finite, or the photo is refused with one line."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from leam.errors import NonFiniteError


def check_finite(values: np.ndarray, model: str, names: Sequence[str] | None = None,
                 what: str = "embedding") -> np.ndarray:
    """``values`` (N, ...) unchanged when every number is finite (and, for embeddings, no row is all zeros:
    its cosine to anything is undefined); else ``NonFiniteError`` naming the model and the rows (``names[i]``;
    unnamed, how many of how many inputs)."""
    values = np.asarray(values)
    if not values.size:
        return values
    rows = values.reshape(len(values), -1)
    problems = [(~np.isfinite(rows).all(axis=1), f"a non-finite {what} (NaN or Inf)")]
    if what == "embedding":
        problems.append((~rows.any(axis=1), "an embedding of zeros"))
    for bad, problem in problems:
        if bad.any():
            which = _rows(np.flatnonzero(bad), len(values), names)
            raise NonFiniteError(f"model {model!r} gives {problem} for {which}: nothing computed from it would "
                                 "mean anything; check the model (e.g. a division by zero in its graph)")
    return values


def _rows(bad: np.ndarray, total: int, names: Sequence[str] | None) -> str:
    """The rows named (three at most), or, unnamed, how many of how many inputs."""
    if names is None or len(names) != total:
        return "the input" if total == 1 else f"{len(bad)} of {total} inputs"
    label = ", ".join(str(names[i]) for i in bad[:3])
    return label + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
