"""The one check every model and weight file goes through before a loader opens it."""

from __future__ import annotations

from pathlib import Path

from leam._io import text_name, unresolvable_link
from leam.errors import ModelError


def existing_file(path: str | Path, what: str = "weight file") -> Path:
    """``path`` as a Path when it names a regular file (links followed); otherwise ``ModelError`` saying
    what it is instead (missing, a folder, a broken or looping link, a pipe or device), as ``what``.

    >>> existing_file("/tmp")                                   # doctest: +SKIP
    ModelError: weight file /tmp is a folder; expected a file (e.g. one of the files inside it)
    """
    path = Path(path)
    if path.is_file():
        return path
    name = text_name(str(path))
    if path.is_dir():
        raise ModelError(f"{what} {name} is a folder; expected a file (e.g. one of the files inside it)")
    link = unresolvable_link(path)
    if link:
        raise ModelError(f"{what} {name} is {link}; expected a file")
    if path.exists():
        raise ModelError(f"{what} {name} is not a regular file (a pipe or device); expected a file")
    raise ModelError(f"{what} not found: {name}")
