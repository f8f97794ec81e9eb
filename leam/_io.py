"""File plumbing, in one place: the atomic writer every command uses, Parquet bytes, file names as text.

``write_file`` writes through an fsync'd temporary file beside the target (``.leam-*.tmp``, a short
name that leaves a long file name room) and a rename, so a reader sees the whole file or none; a
failure removes the temporary file and raises a ``LeamError`` that says what is true (``write_failure``)
— or the caller's own error (``error=``: a study raises its ``RunWriteError``).

``folder_lock`` is the one lock every writer takes (a run, its tables, an explorer site): ``flock`` on a
file in the folder, exclusive for a writer, shared for a reader; a second writer is refused at once, in one
line naming the folder and the pid of the process that holds it.
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


# Characters that are not seen but change what is: bidi embeddings, overrides and isolates (a name could turn
# the text after it around, or show "gpj.exe" as "exe.jpg"), control characters other than white space, the
# line and paragraph separators, and the zero-width space, word joiner and byte order mark
HIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u2028-\u202e\u2060\u2066-\u2069\ufeff]")


def shown(text: str) -> str:
    """``text`` with its ``HIDDEN`` characters written as ``\\uXXXX``, as ``text_name`` writes bytes
    that are not UTF-8 as ``\\xNN``: what a page or a terminal shows of a name is
    what the name holds.

    >>> print(shown("Evil\\u202egpj.exe"))
    Evil\\u202egpj.exe
    """
    return HIDDEN.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


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
    with writing(path, error) as f:
        f.write(data)


@contextmanager
def writing(path: str | Path, error: Callable[[Path, OSError], LeamError] = write_error) -> Iterator[io.BufferedWriter]:
    """A binary file to stream ``path``'s data into (one too large to hold in memory): a temporary file beside
    ``path``, fsync'd and renamed onto it when the block ends; on any error it is removed (nothing half-written
    is left) and an ``OSError`` becomes ``error(path, exc)``, as ``write_file``."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=TEMPORARY_PREFIX, suffix=TEMPORARY_SUFFIX)
        tmp = Path(name)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
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


class FolderLockedError(LeamError):
    """Another leam process holds the lock of a folder (a run, its tables, an explorer site)."""


@contextmanager
def folder_lock(lock: Path, doing: str, shared: bool = False,
                waiting: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold ``flock`` on the file ``lock`` within the block: exclusive for a writer (which writes its pid in
    the file), shared for a reader (many at once). When another process holds it, raise ``FolderLockedError``
    at once (``FOLDER: another leam process (pid N) is DOING; ...``), or, given ``waiting``, tell it that line
    and wait. The kernel releases the lock with the file's last descriptor, so a killed holder frees it. A
    reader that cannot create a missing lock file (a read-only folder, where no leam process writes) reads
    without it."""
    try:
        fd = _open_lock(lock, shared)
    except OSError:
        if not shared:
            raise
        yield
        return
    try:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting is None:
                raise _locked(lock, fd, doing) from None
            waiting(str(_locked(lock, fd, doing)))
            fcntl.flock(fd, mode)
        if not shared:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def check_unlocked(lock: Path, doing: str) -> None:
    """Raise ``FolderLockedError`` (as ``folder_lock``) when another process holds ``lock`` exclusively; write
    nothing (a missing lock file is free)."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # released at once, by the close
    except BlockingIOError:
        raise _locked(lock, fd, doing) from None
    finally:
        os.close(fd)


def _locked(lock: Path, fd: int, doing: str) -> FolderLockedError:
    """The refusal of a lock that another process holds: the folder, and the pid its writer wrote in it."""
    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
    return FolderLockedError(f"{lock.parent}: another leam process (pid {holder}) is {doing}; wait for it to "
                             "finish or stop it")


def _open_lock(lock: Path, shared: bool) -> int:
    """A descriptor of the lock file, made (with its folder) for a writer; a reader opens an existing one
    read-only (a run copied to a read-only disk)."""
    if shared and lock.is_file():
        return os.open(lock, os.O_RDONLY)
    if not shared:
        lock.parent.mkdir(parents=True, exist_ok=True)
    return os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
