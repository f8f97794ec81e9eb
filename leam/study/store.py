"""A study's run folder: ``run.json``, a lock, per-unit part files written atomically, final tables.

Layout::

    RUN/run.json                     config, leam version, model specs, sessions; written when the run starts
    RUN/run.json.bak                 a copy of run.json, written after it: read when run.json is damaged
    RUN/.lock                        held (flock) by the one process working on the run
    RUN/tables/.lock                 held by a consolidation (exclusive) and by readers of the tables (shared)
    RUN/tables/.consolidating        present while the tables are rewritten: a reader refuses them
    RUN/parts/<unit>/<table>.parquet one file per table per unit of work
    RUN/parts/<unit>/maps.npz        the unit's maps and chips (compressed)
    RUN/parts/<unit>/done.json       written last: the unit is complete
    RUN/tables/<table>.parquet       all done units' rows, in a fixed order (``consolidate``)
    RUN/tables/checksums.json        the tables' sizes and SHA-256, written before they are put in place

Every file is written to a temporary file and renamed into place, so a reader sees a whole file or
none; a reader of the tables (``reading``) holds their lock, so a consolidation waits for it and it never
reads the tables of two consolidations as one, nor those of one killed half-way (``.consolidating``). A unit
killed half-way has no ``done.json`` and is redone from scratch; ``done.json`` lists the unit's files
with their sizes and SHA-256, so a unit whose file was later cut short, lost or damaged (a copy cut short,
a disk error, flipped bytes) is redone too; a temporary file left by a kill is never read and is removed on
resume. ``done.json``, ``run.json`` and ``checksums.json`` carry a checksum of
their own content (``sealed``): a damaged marker makes its unit redone, a damaged ``run.json`` is read
from its copy, and damaged tables are refused by their readers, naming the file, until ``leam study``
rebuilds them. Files written before leam kept checksums (a ``done.json`` with sizes only, a run without
``checksums.json``) are checked as before: by size. A write that fails (disk full, file-size limit)
raises ``RunWriteError``: one line, and the run resumes where it stopped once there is room.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from leam._io import FolderLockedError, check_unlocked, folder_lock, parquet_bytes, write_file, write_temporary
from leam.errors import LeamError
from leam.study.checksums import read_sealed, read_sealed_bytes, sealed, sha256_bytes, sha256_file
from leam.study.run_tables import RunTables, concatenate_parquet, one_line

TABLES = ("images", "regions", "occlusion", "transfer", "pairs", "faithfulness", "specificity", "failures")
PART_FILES = frozenset({*(f"{t}.parquet" for t in TABLES), "maps.npz"})  # the files a unit (or tables/) holds
CHECKSUMS = "checksums.json"
BACKUP = "run.json.bak"
LEGACY = "legacy:"  # prefix of the digest of a done marker written before leam sealed them
LEGACY_DONE_KEYS = frozenset({"files", "seconds", "cpu_seconds"})
LEGACY_RUN_KEYS = frozenset({"kind", "config", "leam_version", "models", "identities", "photos", "sessions",
                             "finished", "counts"})
REDO = "run `{command}` with the run's options again: it redoes the damaged unit"
REBUILD = ("run `{command}` with the run's options again: it rebuilds the tables from the parts (and redoes any "
           "damaged part)")


RunLockedError = FolderLockedError  # another process is working on the same run folder
CONSOLIDATING = ".consolidating"  # in tables/ while a consolidation rewrites them
RUN_WORK = "working on this run"  # what the holder of a run's lock does

class RunWriteError(LeamError):
    """A file of the run could not be written (disk full, file-size limit, permissions)."""


def unit_dir_name(*parts: str) -> str:
    """A file-system-safe, unique folder name for a unit (e.g. model + identity of any spelling)."""
    key = "\x1f".join(parts)
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", "__".join(parts))[:80]
    return f"{readable}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def _write_error(path: Path, exc: OSError) -> RunWriteError:
    return RunWriteError(f"cannot write {path} ({exc.strerror or exc}); make room (disk space, file-size "
                         "limit) and run the same command again: the run resumes where it stopped")


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place (``leam._io.write_file``);
    an ``OSError`` (disk full, file too large, ...) becomes a ``RunWriteError`` naming the file, with nothing
    left behind."""
    write_file(path, data, error=_write_error)


class RunStore:
    """A run folder of ``command``, whose units and ``tables/`` hold the Parquet tables ``table_names`` and
    the arrays file ``arrays_name`` (a subclass names its own: ``leam protect-eval``'s run)."""

    command = "leam study"
    table_names: tuple[str, ...] = TABLES
    arrays_name = "maps.npz"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._digests: dict[tuple, str] = {}  # (path, inode, size, mtime) -> SHA-256: each file hashed once

    @property
    def redo(self) -> str:
        """What to do about a damaged unit."""
        return REDO.format(command=self.command)

    @property
    def rebuild(self) -> str:
        """What to do about damaged tables."""
        return REBUILD.format(command=self.command)

    @property
    def manifest_path(self) -> Path:
        return self.root / "run.json"

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run's lock; a second process gets ``RunLockedError`` at once."""
        with folder_lock(self.root / ".lock", RUN_WORK):
            yield

    @contextmanager
    def before_lock(self) -> Iterator[None]:
        """Checks of the run folder made before its lock is taken (so that a mistake writes nothing): one that
        fails while another process holds the lock, whose files may have appeared meanwhile, is refused as the
        lock refuses (``RunLockedError``)."""
        try:
            yield
        except LeamError:
            check_unlocked(self.root / ".lock", RUN_WORK)
            raise

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Within the block the run's tables stay as they are (a shared lock on them: ``consolidate`` waits);
        while a consolidation writes them, ``RunLockedError`` at once, naming the folder and its pid."""
        with folder_lock(self.root / "tables" / ".lock", "writing this run's tables", shared=True):
            yield

    def read_manifest(self) -> dict | None:
        """``run.json`` (without its checksum), or its copy ``run.json.bak`` when run.json is damaged; None
        when the folder holds no run.json. A run.json and copy both damaged, or another program's
        run.json, raise ``LeamError`` naming the file."""
        path = self.manifest_path
        if not path.is_file():
            return None
        for candidate in (path, self.root / BACKUP):
            manifest = read_sealed(candidate, LEGACY_RUN_KEYS)
            if manifest is not None and isinstance(manifest.get("config"), dict):
                manifest.pop("checksum", None)
                return manifest
        try:
            found = json.loads(path.read_bytes())
        except (ValueError, OSError) as exc:
            raise LeamError(f"{path}: unreadable ({one_line(exc)}); it is not a run of leam's, or was damaged outside "
                            "leam: use another --out folder") from None
        if isinstance(found, dict) and "checksum" in found:
            raise LeamError(f"{path} is damaged (its checksum does not match its content), and {BACKUP} beside "
                            "it holds no whole copy; the run's settings are lost: use another --out folder")
        raise LeamError(f"{path}: not the run.json of a leam study; use another --out folder")

    def write_manifest(self, manifest: dict) -> None:
        """Write ``run.json`` sealed with its checksum, then its copy."""
        data = sealed(manifest, indent=2)
        atomic_write(self.manifest_path, data)
        atomic_write(self.root / BACKUP, data)

    def unit_dir(self, unit: str) -> Path:
        return self.root / "parts" / unit

    def _intact(self, folder: Path, name: str, size: int, digest: str | None) -> bool:
        """Whether ``folder/name`` is one of the known part files and has ``size`` and (when recorded)
        SHA-256 ``digest``."""
        if name not in {*(f"{t}.parquet" for t in self.table_names), self.arrays_name}:
            return False
        path = folder / name
        try:
            st = path.stat()
            if st.st_size != size:
                return False
            if digest is None:
                return True
            key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            if key not in self._digests:
                self._digests[key] = sha256_file(path)
        except OSError:
            return False
        return self._digests[key] == digest

    def _listed(self, folder: Path, listing: dict, name: str) -> bool:
        files, sums = listing.get("files"), listing.get("sha256", {})
        if not isinstance(files, dict) or not isinstance(sums, dict):
            return False
        return self._intact(folder, name, files.get(name, -1), sums.get(name))

    def marker(self, unit: str) -> dict | None:
        """The unit's ``done.json`` when the unit is complete and intact: the marker is whole and every file
        it lists has the size and SHA-256 it was written with (a unit done before leam recorded checksums:
        the size); None otherwise, and the unit is redone."""
        d = self.unit_dir(unit)
        done = read_sealed(d / "done.json", LEGACY_DONE_KEYS)
        if done is None or not isinstance(done.get("files"), dict):
            return None
        return done if all(self._listed(d, done, name) for name in done["files"]) else None

    def is_done(self, unit: str) -> bool:
        return self.marker(unit) is not None

    def marker_digest(self, unit: str) -> str | None:
        """What identifies the unit's ``done.json`` as written (its checksum; for a marker written before
        leam sealed them, ``legacy:`` and the SHA-256 of its bytes); None when there is no whole one. A
        unit that read this unit records it, so it is redone once this unit is."""
        path = self.unit_dir(unit) / "done.json"
        try:
            data = path.read_bytes()
        except OSError:
            return None
        done = read_sealed_bytes(data, LEGACY_DONE_KEYS)
        if done is None:
            return None
        return done.get("checksum") or LEGACY + sha256_bytes(data)

    def write_unit(self, unit: str, tables: dict[str, pd.DataFrame], arrays: dict[str, np.ndarray] | None = None,
                   info: dict | None = None) -> None:
        """Write a unit's tables (and arrays), then its ``done.json`` marker listing them with their sizes
        and SHA-256 (with ``info``, e.g. the unit's inputs and time); files of an earlier, unfinished attempt
        are removed first."""
        d = self.unit_dir(unit)
        (d / "done.json").unlink(missing_ok=True)
        if d.is_dir():
            for stale in d.iterdir():
                if not stale.is_dir():
                    stale.unlink()
        files = {}
        for name, df in tables.items():
            if name not in self.table_names:
                raise ValueError(f"unknown table {name!r}")
            files[f"{name}.parquet"] = parquet_bytes(df)
        if arrays:
            buf = io.BytesIO()
            np.savez_compressed(buf, **arrays)
            files[self.arrays_name] = buf.getvalue()
        for name, data in files.items():
            atomic_write(d / name, data)
        done = {**(info or {}), "files": {name: len(data) for name, data in files.items()},
                "sha256": {name: sha256_bytes(data) for name, data in files.items()}}
        atomic_write(d / "done.json", sealed(done))

    def remove_units_except(self, keep: set[str]) -> list[dict]:
        """Remove the unit folders not in ``keep`` (units of identities no longer in the data); returns
        their whole done markers (``{}`` for a folder without one)."""
        removed = []
        parts = self.root / "parts"
        for d in sorted(parts.iterdir()) if parts.is_dir() else []:
            if d.name in keep:
                continue
            removed.append(read_sealed(d / "done.json", LEGACY_DONE_KEYS) or {})
            if d.is_dir() and not d.is_symlink():
                shutil.rmtree(d)
            else:
                d.unlink()
        return removed

    def timings(self) -> pd.DataFrame:
        """Per done unit: its kind ("identity", "transfer", "pairs", ...), wall ``seconds`` and
        ``cpu_seconds`` as recorded in its ``done.json`` (NaN for units done before leam recorded them).
        A damaged ``done.json`` raises ``LeamError`` naming it."""
        rows = []
        for path in sorted((self.root / "parts").glob("*/done.json")):
            done = read_sealed(path, LEGACY_DONE_KEYS)
            if done is None:
                raise LeamError(f"{path} is damaged; {self.redo}")
            rows.append({"unit": path.parent.name, "kind": path.parent.name.split("__")[0].split("-")[0],
                         "seconds": done.get("seconds", np.nan), "cpu_seconds": done.get("cpu_seconds", np.nan)})
        return pd.DataFrame(rows, columns=["unit", "kind", "seconds", "cpu_seconds"])

    def part(self, unit: str, name: str) -> Path | None:
        """The path of the unit's file ``name`` once checked against the unit's ``done.json``; None when the
        unit has no such file. A damaged file or marker raises ``LeamError`` naming it."""
        d = self.unit_dir(unit)
        path = d / name
        if not path.is_file():
            return None
        done = read_sealed(d / "done.json", LEGACY_DONE_KEYS)
        if done is None:
            raise LeamError(f"{d / 'done.json'} is damaged or missing: the unit is not complete; {self.redo}")
        if not self._listed(d, done, name):
            raise LeamError(f"{path} is damaged (its size or SHA-256 is not the one in done.json); {self.redo}")
        return path

    def unit_table(self, unit: str, name: str) -> pd.DataFrame | None:
        path = self.part(unit, f"{name}.parquet")
        if path is None:
            return None
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError) as exc:  # a unit done before leam kept checksums; ArrowInvalid is a ValueError
            raise _unreadable_part(path, exc, self.command) from None

    def unit_arrays(self, unit: str) -> np.lib.npyio.NpzFile | None:
        """The unit's arrays (``maps.npz``, opened lazily), checked against its ``done.json``."""
        path = self.part(unit, self.arrays_name)
        if path is None:
            return None
        try:
            arrays = np.load(path)
            if "sha256" not in (read_sealed(path.parent / "done.json", LEGACY_DONE_KEYS) or {}):
                bad = arrays.zip.testzip()  # no checksum recorded: at least the zip's own CRCs
                if bad:
                    raise ValueError(f"{bad} fails its CRC")
            return arrays
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise _unreadable_part(path, exc, self.command) from None

    def clean_temporaries(self) -> int:
        """Remove temporary files left by a killed process; returns how many."""
        n = 0
        for tmp in self.root.rglob(".*.tmp"):
            tmp.unlink(missing_ok=True)
            n += 1
        return n

    def consolidate(self, units: list[str], notify: Callable[[str], None] | None = None) -> RunTables:
        """Concatenate the done units' tables in the given (planned) order into ``tables/``, streaming: a
        unit's rows are read, appended to the table's file and let go, so memory is bounded by a few units,
        not by the run. Holds the tables' lock (waiting for their readers, told to ``notify``) and marks them
        ``.consolidating`` until every table and ``derived_files`` is in place, so that no reader takes tables
        of two consolidations, or of one killed half-way, as whole; returns the tables as a reader of the run
        sees them (``tables``)."""
        folder = self.root / "tables"
        say = notify or (lambda line: None)
        with folder_lock(folder / ".lock", "writing this run's tables", waiting=lambda _: say(
                f"{folder}: waiting for the leam processes reading these tables (leam report, explore) to finish")):
            atomic_write(folder / CONSOLIDATING, str(os.getpid()).encode())
            self._write_tables(folder, [u for u in units if self.is_done(u)])
            for name, data in self.derived_files(self._tables(folder)).items():
                atomic_write(folder / name, data)
            (folder / CONSOLIDATING).unlink()
        return self.tables()

    def derived_files(self, tables: RunTables) -> dict[str, bytes]:
        """{name: bytes} of the files of ``tables/`` made from the consolidated tables, written as part of the
        consolidation (``leam protect-eval``'s CSVs); none for a study."""
        return {}

    def _write_tables(self, folder: Path, done: list[str]) -> None:
        """The done units' tables, each to a temporary file, then ``checksums.json`` with their sizes and
        SHA-256, then the tables renamed into place."""
        staged: dict[Path, Path] = {}
        sizes, sums = {}, {}
        try:
            for name in self.table_names:
                path = folder / f"{name}.parquet"
                parts = [p for u in done if (p := self.part(u, f"{name}.parquet")) is not None]
                try:
                    staged[path] = tmp = write_temporary(path, b"")
                    concatenate_parquet(parts, tmp, lambda p, e: _unreadable_part(p, e, self.command))
                    with open(tmp, "rb") as f:
                        os.fsync(f.fileno())
                except OSError as exc:
                    raise _write_error(path, exc) from None
                sizes[path.name], sums[path.name] = tmp.stat().st_size, sha256_file(tmp)
            atomic_write(folder / CHECKSUMS, sealed({"files": sizes, "sha256": sums}, indent=1))
            for path, tmp in list(staged.items()):
                try:
                    os.replace(tmp, path)
                except OSError as exc:
                    raise _write_error(path, exc) from None
                del staged[path]
        finally:
            for tmp in staged.values():
                tmp.unlink(missing_ok=True)

    def tables(self) -> RunTables:
        """The consolidated tables, each checked against ``tables/checksums.json`` (a damaged or missing
        table raises ``LeamError`` naming the file and how to rebuild it) and read when asked for: as a
        whole frame (``tables[name]``) or out of core (``tables.scan(name)``). Tables being rewritten, or
        left half-rewritten by a killed consolidation, are refused in one line; a reader that reads them
        over a while holds ``reading``."""
        folder = self.root / "tables"
        if (folder / CONSOLIDATING).exists():
            with self.reading():  # refused while the consolidation runs
                pid = (folder / CONSOLIDATING).read_text(errors="replace").strip() or "?"
                raise LeamError(f"{folder}: `{self.command}` (pid {pid}) was stopped while it rewrote these tables, "
                                f"so they may mix two versions; {self.rebuild}")
        return self._tables(folder)

    def _tables(self, folder: Path) -> RunTables:
        listing = None
        if (folder / CHECKSUMS).exists():
            listing = read_sealed(folder / CHECKSUMS, frozenset())
            if listing is None or not isinstance(listing.get("files"), dict):
                raise LeamError(f"{folder / CHECKSUMS} is damaged; {self.rebuild}")
        paths = {}
        for name in self.table_names:
            path = folder / f"{name}.parquet"
            if listing is not None and path.name in listing["files"]:
                if not self._listed(folder, listing, path.name):
                    why = f"damaged (its size or SHA-256 is not the one in {CHECKSUMS})" if path.exists() else "missing"
                    raise LeamError(f"{path} is {why}; {self.rebuild}")
            elif not path.is_file():
                continue
            paths[name] = path
        return RunTables(paths, self.rebuild)


def _unreadable_part(path: Path, exc: BaseException, command: str) -> LeamError:
    return LeamError(f"{path} is damaged ({one_line(exc)}); delete its folder {path.parent} and run `{command}` "
                     "with the run's options again: it redoes the unit")
