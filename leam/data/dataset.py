"""A study's photos: ``<identity>/<image files>``, optionally described by ``manifest.csv``."""

from __future__ import annotations

import csv
import io
import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from leam._io import text_name
from leam._paths import MARKER, is_run_folder, marked_files
from leam.data.folders import scan_identity_folders
from leam.errors import LeamError

MANIFEST = "manifest.csv"


@dataclass(frozen=True)
class Photo:
    path: Path
    identity: str
    name: str  # file path relative to the data folder (``text_name``): a stable key
    attrs: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class ManifestRow:
    """One photo of ``manifest.csv``: its ``path`` (relative to the data folder, as written), identity,
    other columns, and the line it starts on."""

    line: int
    path: str
    identity: str
    attrs: dict[str, str]


def read_manifest(root: str | Path) -> list[ManifestRow]:
    """The rows of ``root/manifest.csv`` (``path,identity[,attr...]``, UTF-8 with or without a BOM), or a
    ``LeamError`` naming the file and the line of the first problem: bytes that are not UTF-8, a row with
    another number of fields than the header, a path or identity left empty, a path given twice, a path
    that is absolute or leads out of the data folder (``..``)."""
    manifest = Path(root) / MANIFEST
    data = manifest.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise LeamError(f"{manifest} line {line}: bytes that are not UTF-8 ({data[exc.start:exc.start + 1]!r} at byte "
                        f"{exc.start}); save the manifest as UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, [])
        missing = [c for c in ("path", "identity") if c not in header]
        if missing:
            raise LeamError(f"{manifest} line 1: missing column(s) {', '.join(missing)}; expected a header "
                            f"path,identity[,attr...], got {','.join(header)!r}")
        if twice := sorted({c for c in header if header.count(c) > 1}):
            raise LeamError(f"{manifest} line 1: column(s) {', '.join(twice)} given twice; name each column once")
        rows, seen, line = [], {}, 1
        for fields in reader:
            start, line = line + 1, reader.line_num
            if not fields:  # a blank line
                continue
            rows.append(_manifest_row(manifest, start, header, fields, seen))
    except csv.Error as exc:
        raise LeamError(f"{manifest} line {reader.line_num}: not readable as CSV ({exc})") from None
    return rows


def _manifest_row(manifest: Path, line: int, header: list[str], fields: list[str], seen: dict[str, int]) -> ManifestRow:
    where = f"{manifest} line {line}"
    if len(fields) != len(header):
        raise LeamError(f"{where}: {len(fields)} field(s), where the header has {len(header)} ({','.join(header)}); "
                        "quote values that hold commas")
    row = dict(zip(header, fields))
    path, identity = row.pop("path"), row.pop("identity")
    if not path.strip() or not identity.strip():
        raise LeamError(f"{where}: the {'path' if not path.strip() else 'identity'} is empty; give each photo's "
                        "path and identity")
    normal = _normal(path)
    if posixpath.isabs(normal) or normal == ".." or normal.startswith("../"):
        raise LeamError(f"{where}: the path {path!r} leads out of the data folder; give paths relative to it "
                        "(a link inside the folder may point elsewhere)")
    if normal in seen:
        raise LeamError(f"{where}: the path {path!r} is listed twice (also on line {seen[normal]}); list each "
                        "photo once")
    seen[normal] = line
    return ManifestRow(line, path, identity, row)


def _normal(path: str) -> str:
    """A manifest path as one spelling: ``./a//b.jpg`` and ``a\\b.jpg`` are ``a/b.jpg``."""
    return posixpath.normpath(path.replace("\\", "/"))


def load_dataset(root: str | Path) -> dict[str, list[Photo]]:
    """{identity: photos sorted by name}. With ``manifest.csv`` (``path,identity[,attr...]``, see
    ``read_manifest``) the manifest decides which photos belong to whom and gives their attributes (e.g.
    gender); a row whose file is not there is left out (``skipped_entries`` lists it)."""
    root = Path(root)
    out: dict[str, list[Photo]] = {}
    if (root / MANIFEST).is_file():
        for row in read_manifest(root):
            if os.path.lexists(root / row.path):
                out.setdefault(row.identity, []).append(Photo(root / row.path, row.identity, row.path, row.attrs))
    else:
        for identity, paths in scan_identity_folders(root).identities.items():
            out[identity] = [Photo(p, identity, text_name(str(p.relative_to(root)))) for p in paths]
    if not out:
        raise LeamError(f"{root}: no photos found (expected <identity>/<image files>)")
    return {k: sorted(v, key=lambda p: p.name) for k, v in sorted(out.items())}


def attribute_names(dataset: dict[str, list[Photo]]) -> list[str]:
    names: dict[str, None] = {}
    for photos in dataset.values():
        for p in photos:
            names.update(dict.fromkeys(p.attrs))
    return list(names)


def skipped_entries(root: str | Path) -> dict[str, str]:
    """{entry: reason} for what the data folder holds but the study does not read: for a folder laid out as
    ``<identity>/<images>``, the entries ``scan_identity_folders`` leaves out; with ``manifest.csv``, its
    rows whose file is not there and the files it does not list (``unlisted_files``)."""
    root = Path(root)
    if not (root / MANIFEST).is_file():
        return scan_identity_folders(root).skipped
    rows = read_manifest(root)
    skipped = {text_name(r.path): f"listed in {MANIFEST} (line {r.line}), but there is no such file"
               for r in rows if not os.path.lexists(root / r.path)}
    listed = {_normal(r.path) for r in rows}
    return {**skipped, **unlisted_files(root, listed)}


def unlisted_files(root: Path, listed: set[str]) -> dict[str, str]:
    """{entry: reason} for the files under ``root`` that ``listed`` (normalised relative paths) does not hold:
    a folder none of whose files is listed counts as one entry; a folder that cannot be listed is one too.
    Links to folders are followed, each folder once (no cycle); leam's run folders and the files leam
    wrote (``.leam-output``) are left out."""
    out: dict[str, str] = {}
    visited: set[tuple[int, int]] = set()

    def unreadable(exc: OSError) -> None:
        where = Path(exc.filename).relative_to(root).as_posix() if exc.filename else "."
        out[text_name(where)] = f"the folder cannot be listed ({exc.strerror or exc})"

    for folder, subfolders, files in os.walk(root, onerror=unreadable, followlinks=True):
        here = Path(folder)
        st = here.stat()
        if (st.st_dev, st.st_ino) in visited or (here != root and is_run_folder(here)):
            subfolders.clear()
            continue
        visited.add((st.st_dev, st.st_ino))
        subfolders.sort()
        rel = here.relative_to(root).as_posix()
        ours = marked_files(here) | {MARKER} | ({MANIFEST} if here == root else set())
        names = [f for f in sorted(files) if f not in ours]
        unlisted = [f for f in names if posixpath.normpath(f"{rel}/{f}") not in listed]
        if unlisted and len(unlisted) == len(names) and here != root:
            out[text_name(rel)] = f"a folder of {len(names)} file(s), none of them listed in {MANIFEST}"
        else:
            out.update({text_name(posixpath.normpath(f"{rel}/{f}")): f"not listed in {MANIFEST}" for f in unlisted})
    return out
