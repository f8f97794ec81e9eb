"""Where leam may write: every command plans its output files, checks them here before any work, and
marks the folders it writes, so that nothing it writes replaces a photo, a reference or a run's files,
and no data scan mistakes its outputs for photos.

The rules (``check_outputs``), for every planned output file:

* it is no folder, and no two planned outputs are one file (or a file and a folder above another);
* it is none of the call's inputs (photos, references): compared after resolving links, and by inode
  where the file exists, so symbolic and hard links are caught;
* it lies in no leam run folder (a folder holding ``run.json``) but the call's own run; a call that adds
  files beside a run (``leam report``) never replaces the run's own files;
* an existing file is replaced only when leam wrote it: each folder leam writes holds a marker,
  ``.leam-output``, listing the files leam wrote there (``claim_outputs``, called once the work is done
  and just before the first write, so that a call that fails earlier writes nothing).

``marked_files`` reads a marker back: ``leam.data.folders.scan_identity_folders`` leaves those files out.
Files are written by ``leam._io.write_file`` (atomic, with errors that say what is true).
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from leam._io import write_failure, write_file  # noqa: F401  (their old home: re-exported)
from leam.errors import LeamError

MARKER = ".leam-output"
RUN_MANIFEST = "run.json"
RUN_BACKUP = "run.json.bak"  # its copy (``leam.study.store``)


def unique_names(names: Sequence[str], reserved: Iterable[str] = ()) -> list[str]:
    """``names`` made unique (ignoring case and Unicode normalisation, for file systems that do: 'José' in NFC
    and in NFD are one file on APFS) and distinct from ``reserved``: a name that repeats, or is reserved, gets
    ``-2``, ``-3``, ... before its suffix, skipping any name taken by another entry, so the result is unique
    whatever the inputs are called.

    >>> unique_names(["a.jpg", "a.jpg", "a-2.jpg", "A.JPG"])
    ['a.jpg', 'a-3.jpg', 'a-2.jpg', 'A-4.JPG']
    """
    def key(name: str) -> str:
        return unicodedata.normalize("NFC", name).casefold()

    reserved_keys = {key(r) for r in [*reserved, MARKER]}
    taken = reserved_keys | {key(n) for n in names}  # a new name never takes another entry's own name
    kept: set[str] = set()
    out = []
    for n in names:
        k = key(n)
        if k not in reserved_keys and k not in kept:
            kept.add(k)
            out.append(n)
            continue
        stem, suffix = os.path.splitext(n)
        i = 2
        while key(candidate := f"{stem}-{i}{suffix}") in taken:
            i += 1
        taken.add(key(candidate))
        out.append(candidate)
    return out


def _real(path: str | Path) -> Path:
    """``path`` with every symbolic link resolved, as far as they resolve (a link loop is left as it is)."""
    return Path(os.path.realpath(path))


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a leam run: a ``run.json`` written by leam (a JSON object with its version
    and configuration; another program's ``run.json`` does not count), or its copy ``run.json.bak`` (a run
    whose ``run.json`` was damaged is still a run: its store reads the copy)."""
    return any(_is_run_manifest(Path(folder) / name) for name in (RUN_MANIFEST, RUN_BACKUP))


def _is_run_manifest(manifest: Path) -> bool:
    try:
        if not manifest.is_file() or manifest.stat().st_size > 50_000_000:
            return False
        data = json.loads(manifest.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "leam_version" in data and "config" in data


def run_folder_of(path: Path, cache: dict[Path, bool] | None = None) -> Path | None:
    """The nearest folder above ``path`` (resolved) holding a leam run (``is_run_folder``), or None."""
    cache = {} if cache is None else cache
    for folder in _real(path).parents:
        if folder not in cache:
            cache[folder] = is_run_folder(folder)
        if cache[folder]:
            return folder
    return None


def marked_files(folder: Path) -> set[str]:
    """The names of the files leam wrote in ``folder`` (its ``.leam-output`` marker; empty without one)."""
    try:
        listed = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {n for n in listed if isinstance(n, str)}


def refuse_repeated_inputs(groups: Mapping[str, Iterable[str | Path]]) -> None:
    """Refuse a file given twice among the inputs (``{role: paths}``, e.g. a photo among its own references),
    also under another name: a symbolic or hard link to it."""
    seen: dict[tuple[int, int] | str, tuple[str, str]] = {}
    for role, paths in groups.items():
        for p in paths:
            key = _inode(Path(p)) or str(_real(p))
            if key in seen:
                first_role, first = seen[key]
                said = (f"given twice, as a {first_role} and as a {role}" if first == str(p) else
                        f"the same file as the {first_role} {first}, given again as a {role}")
                raise LeamError(f"{p}: {said}; give each photo once (a photo is never its own reference: use "
                                "other photos of the person)")
            seen[key] = (role, str(p))


def check_outputs(
    outputs: Iterable[str | Path],
    inputs: Mapping[str, Iterable[str | Path]] | None = None,
    run: str | Path | None = None,
    run_owner: bool = False,
) -> list[Path]:
    """Refuse (``LeamError``, one line naming the clash) a plan of output files that would replace an
    input (``{role: paths}``), another output, a file of a run folder or a file leam did not write; see the
    module's rules. ``run``: the run folder this call works on; ``run_owner``: the call writes that run's
    own files (a study), rather than adding files beside them (a report). Returns the outputs as Paths."""
    outputs = [Path(o) for o in outputs]
    own_run = _real(run) if run is not None else None
    by_inode: dict[tuple[int, int], tuple[str, Path]] = {}
    by_path: dict[Path, tuple[str, Path]] = {}
    for role, paths in (inputs or {}).items():
        for p in map(Path, paths):
            by_path[_real(p)] = (role, p)
            if (ino := _inode(p)) is not None:
                by_inode[ino] = (role, p)
    planned: dict[Path, Path] = {}
    for o in outputs:
        r = _real(o)
        if r in planned:
            raise LeamError(f"{o}: two outputs of this command would be this one file; leam names them apart "
                            "(please report this)")
        planned[r] = o
    runs: dict[Path, bool] = {}
    markers: dict[Path, set[str]] = {}
    for r, o in planned.items():
        clash = by_path.get(r) or (by_inode.get(ino) if (ino := _inode(o)) is not None else None)
        if clash:
            role, p = clash
            raise LeamError(f"{o}: leam would write over the {role} {p}; choose another --out")
        if o.is_dir():
            raise LeamError(f"{o}: is a folder, where leam would write a file; choose another --out (or move it)")
        if above := next((planned[f] for f in r.parents if f in planned), None):
            raise LeamError(f"{above}: would be both a file and the folder of {o}; choose another --out")
        run = run_folder_of(o, runs)
        if run is not None and run != own_run:
            raise LeamError(f"{o}: inside the leam run folder {run}, whose files are the run's own; "
                            "choose another --out")
        if (run is not None and run_owner) or not (o.exists() or o.is_symlink()):
            continue  # the run's own files, written by the run itself; or a new file
        folder = _real(o.parent)
        if folder not in markers:
            markers[folder] = marked_files(folder)
        if o.name not in markers[folder]:
            what = f"a file of the leam run {run}" if run is not None else "a file leam did not write"
            raise LeamError(f"{o}: exists, and is {what}; leam replaces only its own outputs: move it away or "
                            "choose another --out")
    return outputs


def check_run_folder(out: str | Path, data: str | Path | None, files: Iterable[str] = (RUN_MANIFEST,)) -> None:
    """Refuse a run folder (``leam study``, ``leam protect-eval``) inside its data folder (it would sit among
    the photos), inside another run, or whose ``files`` (relative) would replace files leam did not write."""
    out = Path(out)
    if data is not None:
        d, o = _real(data), _real(out)
        if o == d or d in o.parents:
            raise LeamError(f"{out}: inside the data folder {data}; a run folder goes outside the photos it reads: "
                            "choose another --out")
    check_outputs([out / f for f in files], run=out, run_owner=True)


def claim_outputs(outputs: Iterable[str | Path]) -> None:
    """Create the folders of ``outputs`` and list the files in each folder's ``.leam-output`` marker (after
    ``check_outputs``): scans of photo folders leave them out, and a later call may replace them."""
    by_folder: dict[Path, set[str]] = {}
    for o in map(Path, outputs):
        by_folder.setdefault(o.parent, set()).add(o.name)
    for folder, names in by_folder.items():
        known = marked_files(folder)
        if names <= known and (folder / MARKER).is_file():
            continue
        marker = {"written_by": "leam", "note": "files leam wrote here; photo scans leave them out",
                  "files": sorted(known | names)}
        write_file(folder / MARKER, json.dumps(marker, indent=1).encode())
