"""A study's run folder: ``run.json``, a lock, per-unit part files written atomically, final tables.

Layout::

    RUN/run.json                     config, leam version, model specs; written when the run starts
    RUN/.lock                        held (flock) by the one process working on the run
    RUN/parts/<unit>/<table>.parquet one file per table per unit of work
    RUN/parts/<unit>/maps.npz        the unit's maps and chips (compressed)
    RUN/parts/<unit>/done.json       written last: the unit is complete
    RUN/tables/<table>.parquet       all done units' rows, in a fixed order (``consolidate``)

A unit killed half-way has no ``done.json`` and is redone from scratch; a temporary file left by a
kill is never read and is removed on resume.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from leam.errors import LeamError

TABLES = ("images", "regions", "occlusion", "transfer", "pairs", "failures")


class RunLockedError(LeamError):
    """Another process is working on the same run folder."""


def unit_dir_name(*parts: str) -> str:
    """A file-system-safe, unique folder name for a unit (e.g. model + identity of any spelling)."""
    key = "\x1f".join(parts)
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", "__".join(parts))[:80]
    return f"{readable}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide results from other users of the run
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


class RunStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def manifest_path(self) -> Path:
        return self.root / "run.json"

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run's lock; a second process gets ``RunLockedError`` at once."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                raise RunLockedError(
                    f"{self.root}: another leam process (pid {holder}) is working on this run; "
                    "wait for it to finish or stop it"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def read_manifest(self) -> dict | None:
        if not self.manifest_path.is_file():
            return None
        return json.loads(self.manifest_path.read_text())

    def write_manifest(self, manifest: dict) -> None:
        atomic_write(self.manifest_path, json.dumps(manifest, indent=2, default=str).encode())

    def unit_dir(self, unit: str) -> Path:
        return self.root / "parts" / unit

    def is_done(self, unit: str) -> bool:
        return (self.unit_dir(unit) / "done.json").is_file()

    def write_unit(self, unit: str, tables: dict[str, pd.DataFrame], arrays: dict[str, np.ndarray] | None = None,
                   info: dict | None = None) -> None:
        """Write a unit's tables (and arrays), then its ``done.json`` marker."""
        d = self.unit_dir(unit)
        (d / "done.json").unlink(missing_ok=True)
        for name, df in tables.items():
            if name not in TABLES:
                raise ValueError(f"unknown table {name!r}")
            atomic_write(d / f"{name}.parquet", parquet_bytes(df))
        if arrays:
            buf = io.BytesIO()
            np.savez_compressed(buf, **arrays)
            atomic_write(d / "maps.npz", buf.getvalue())
        atomic_write(d / "done.json", json.dumps(info or {}, default=str).encode())

    def unit_table(self, unit: str, name: str) -> pd.DataFrame | None:
        path = self.unit_dir(unit) / f"{name}.parquet"
        return pd.read_parquet(path) if path.is_file() else None

    def unit_arrays(self, unit: str) -> np.lib.npyio.NpzFile | None:
        path = self.unit_dir(unit) / "maps.npz"
        return np.load(path) if path.is_file() else None

    def clean_temporaries(self) -> int:
        """Remove temporary files left by a killed process; returns how many."""
        n = 0
        for tmp in self.root.rglob(".*.tmp"):
            tmp.unlink(missing_ok=True)
            n += 1
        return n

    def consolidate(self, units: list[str]) -> dict[str, pd.DataFrame]:
        """Concatenate the done units' tables in the given (planned) order into ``tables/``."""
        out = {}
        for name in TABLES:
            frames = [t for u in units if self.is_done(u) and (t := self.unit_table(u, name)) is not None]
            frames = [f for f in frames if len(f)]
            df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
            path = self.root / "tables" / f"{name}.parquet"
            atomic_write(path, parquet_bytes(df))
            out[name] = pd.read_parquet(path)  # exactly what a reader of the run will see
        return out

    def tables(self) -> dict[str, pd.DataFrame]:
        return {n: pd.read_parquet(self.root / "tables" / f"{n}.parquet") for n in TABLES
                if (self.root / "tables" / f"{n}.parquet").is_file()}
