"""File plumbing, in one place: the atomic writer every command uses, Parquet bytes, file names as text.

``write_file`` writes through an fsync'd temporary file beside the target (``.leam-*.tmp``, a short
name that leaves a long file name room) and a rename, so a reader sees the whole file or none; a
failure removes the temporary file and raises a ``LeamError`` that says what is true (``write_failure``)
— or the caller's own error (``error=``: a study raises its ``RunWriteError``).
"""

from __future__ import annotations

import errno
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from leam.errors import LeamError

if TYPE_CHECKING:  # pandas is imported by whoever has a data frame
    import pandas as pd

TEMPORARY_PREFIX = ".leam-"  # temporary files are ``.leam-<random>.tmp``: a reader skips ``.*.tmp``
TEMPORARY_SUFFIX = ".tmp"


def text_name(name: str) -> str:
    """A file name as text that can be stored and shown: bytes that are not UTF-8 (which Python keeps
    as lone surrogates, and which Parquet, JSON and HTML cannot hold) are written as ``\\xNN``.

    >>> text_name(os.fsdecode(b"Jos\\xe9")), text_name("Zoë")
    ('Jos\\\\xe9', 'Zoë')
    """
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def unresolvable_link(path: Path) -> str | None:
    """Why ``path``, a symbolic link, cannot be followed (a loop, or a missing target); None when it can
    or when it is no link."""
    if not path.is_symlink():
        return None
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop (the link leads back to itself)"
        return f"a broken symbolic link (its target {text_name(os.readlink(path))!r} does not exist)"
    return None


def parquet_bytes(df: pd.DataFrame) -> bytes:
    """``df`` as the bytes of a Parquet file (without its index)."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def write_temporary(path: Path, data: bytes) -> Path:
    """``data`` in a new, fsync'd temporary file beside ``path`` (to be renamed onto it), readable as any
    file the user writes (mkstemp's are 0600). Raises ``OSError``; nothing is left behind on any error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMPORARY_PREFIX, suffix=TEMPORARY_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def write_error(path: Path, exc: OSError) -> LeamError:
    """The error of a failed write of ``path``: one line saying why and what to do."""
    return LeamError(f"cannot write {path}: {write_failure(exc, path)}")


def write_file(path: str | Path, data: bytes, error: Callable[[Path, OSError], LeamError] = write_error) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it and a rename (never half-written); an
    ``OSError`` becomes ``error(path, exc)`` (by default a ``LeamError`` saying what is true), with nothing
    left behind."""
    path = Path(path)
    tmp = None
    try:
        tmp = write_temporary(path, data)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp:
            tmp.unlink(missing_ok=True)
        raise error(path, exc) from None
    except BaseException:
        if tmp:
            tmp.unlink(missing_ok=True)
        raise


def write_failure(exc: OSError, path: Path) -> str:
    """Why writing ``path`` failed, in words that say what to do."""
    code = exc.errno
    if code == errno.ENOSPC:
        return "the disk is full; make room and run the command again"
    if code in (errno.EFBIG, errno.EDQUOT):
        return f"{exc.strerror} (a file-size limit or disk quota); make room and run the command again"
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied: the folder {path.parent} is not writable by you; choose another --out"
    if code == errno.EROFS:
        return "the file system is read-only; choose another --out"
    if code == errno.ENAMETOOLONG:
        return (f"the name is too long for the file system ({len(os.fsencode(path.name))} bytes; most allow "
                "255); rename the photo or choose a shorter --out")
    if code == errno.EISDIR:
        return f"{path} is a folder; move it or choose another --out"
    if code in (errno.ENOTDIR, errno.EEXIST):
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), path.parent)
        return f"Not a directory: {blocker} is a file, where leam needs a folder; choose another --out"
    return f"{exc.strerror or exc}"
