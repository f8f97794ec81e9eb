"""A study's run folder: ``run.json``, a lock, per-unit part files written atomically, final tables.

Layout::

    RUN/run.json                     config, leam version, model specs; written when the run starts
    RUN/.lock                        held (flock) by the one process working on the run
    RUN/parts/<unit>/<table>.parquet one file per table per unit of work
    RUN/parts/<unit>/maps.npz        the unit's maps and chips (compressed)
    RUN/parts/<unit>/done.json       written last: the unit is complete
    RUN/tables/<table>.parquet       all done units' rows, in a fixed order (``consolidate``)

Every file is written to a temporary file and renamed into place, so a reader sees a whole file or
none. A unit killed half-way has no ``done.json`` and is redone from scratch; ``done.json`` lists the
unit's files with their sizes, so a unit whose file was later truncated or lost (a copy cut short, a
disk error) is redone too; a temporary file left by a kill is never read and is removed on resume.
A write that fails (disk full, file-size limit) raises ``RunWriteError``: one line, and the run
resumes where it stopped once there is room.
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


class RunWriteError(LeamError):
    """A file of the run could not be written (disk full, file-size limit, permissions)."""


def unit_dir_name(*parts: str) -> str:
    """A file-system-safe, unique folder name for a unit (e.g. model + identity of any spelling)."""
    key = "\x1f".join(parts)
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", "__".join(parts))[:80]
    return f"{readable}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place; an ``OSError`` (disk
    full, file too large, ...) becomes a ``RunWriteError`` naming the file, with nothing left behind."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide results from other users of the run
        os.replace(tmp, path)
    except OSError as exc:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise RunWriteError(f"cannot write {path} ({exc.strerror or exc}); make room (disk space, file-size "
                            "limit) and run the same command again: the run resumes where it stopped") from None
    except BaseException:
        if tmp:
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
        try:
            manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as exc:
            raise LeamError(f"{self.manifest_path}: unreadable ({exc}); it is not a run of leam's, or was "
                            "damaged outside leam: use another --out folder") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict):
            raise LeamError(f"{self.manifest_path}: not the run.json of a leam study; use another --out folder")
        return manifest

    def write_manifest(self, manifest: dict) -> None:
        atomic_write(self.manifest_path, json.dumps(manifest, indent=2, default=str).encode())

    def unit_dir(self, unit: str) -> Path:
        return self.root / "parts" / unit

    def is_done(self, unit: str) -> bool:
        """Whether the unit's ``done.json`` is there and every file it lists has the size it was written
        with (a unit done before sizes were recorded counts as done)."""
        d = self.unit_dir(unit)
        try:
            done = json.loads((d / "done.json").read_bytes())
            files = done.get("files", {})
            return all((d / name).stat().st_size == size for name, size in files.items())
        except (OSError, ValueError, AttributeError):  # missing, truncated or not a marker of ours
            return False

    def write_unit(self, unit: str, tables: dict[str, pd.DataFrame], arrays: dict[str, np.ndarray] | None = None,
                   info: dict | None = None) -> None:
        """Write a unit's tables (and arrays), then its ``done.json`` marker listing them with their sizes;
        files of an earlier, unfinished attempt are removed first."""
        d = self.unit_dir(unit)
        (d / "done.json").unlink(missing_ok=True)
        if d.is_dir():
            for stale in d.iterdir():
                if not stale.is_dir():
                    stale.unlink()
        files = {}
        for name, df in tables.items():
            if name not in TABLES:
                raise ValueError(f"unknown table {name!r}")
            files[f"{name}.parquet"] = parquet_bytes(df)
        if arrays:
            buf = io.BytesIO()
            np.savez_compressed(buf, **arrays)
            files["maps.npz"] = buf.getvalue()
        for name, data in files.items():
            atomic_write(d / name, data)
        done = {**(info or {}), "files": {name: len(data) for name, data in files.items()}}
        atomic_write(d / "done.json", json.dumps(done, default=str).encode())

    def timings(self) -> pd.DataFrame:
        """Per done unit: its kind ("identity", "transfer", "pairs", ...), wall ``seconds`` and
        ``cpu_seconds`` as recorded in its ``done.json`` (NaN for units done before leam recorded them)."""
        rows = []
        for d in sorted((self.root / "parts").glob("*/done.json")):
            try:
                done = json.loads(d.read_bytes())
            except (OSError, ValueError):
                continue
            rows.append({"unit": d.parent.name, "kind": d.parent.name.split("__")[0].split("-")[0],
                         "seconds": done.get("seconds", np.nan), "cpu_seconds": done.get("cpu_seconds", np.nan)})
        return pd.DataFrame(rows, columns=["unit", "kind", "seconds", "cpu_seconds"])

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
        done = [u for u in units if self.is_done(u)]
        for name in TABLES:
            frames = [t for u in done if (t := self.unit_table(u, name)) is not None]
            frames = [f for f in frames if len(f)]
            df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
            path = self.root / "tables" / f"{name}.parquet"
            atomic_write(path, parquet_bytes(df))
            out[name] = pd.read_parquet(path)  # exactly what a reader of the run will see
        return out

    def tables(self) -> dict[str, pd.DataFrame]:
        out = {}
        for name in TABLES:
            path = self.root / "tables" / f"{name}.parquet"
            if path.is_file():
                try:
                    out[name] = pd.read_parquet(path)
                except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
                    raise LeamError(f"{path} is damaged ({exc}); run `leam study` with the run's options again: "
                                    "it rebuilds the tables from the parts") from None
        return out
