"""One rule for the numbers models give: every one finite, or the photo is refused with one line."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from leam.errors import NonFiniteError


def check_finite(values: np.ndarray, model: str, names: Sequence[str] | None = None,
                 what: str = "embedding") -> np.ndarray:
    """``values`` (N, ...) unchanged when every number is finite (and, for embeddings, no row is all zeros:
    its cosine to anything is undefined); else ``NonFiniteError`` naming the model and the rows (``names[i]``,
    else "input i")."""
    values = np.asarray(values)
    if not values.size:
        return values
    rows = values.reshape(len(values), -1)
    problems = [(~np.isfinite(rows).all(axis=1), f"a non-finite {what} (NaN or Inf)")]
    if what == "embedding":
        problems.append((~rows.any(axis=1), "an embedding of zeros"))
    for bad, problem in problems:
        if bad.any():
            raise NonFiniteError(f"model {model!r} gives {problem} for {_rows(np.flatnonzero(bad), names)}: "
                                 "nothing computed from it would mean anything; check the model (e.g. a division "
                                 "by zero in its graph)")
    return values


def _rows(bad: np.ndarray, names: Sequence[str] | None) -> str:
    label = ", ".join(str(names[i]) if names is not None and i < len(names) else f"input {i}" for i in bad[:3])
    return label + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
