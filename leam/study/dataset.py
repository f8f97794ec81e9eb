"""A study's photos: ``<identity>/<image files>``, optionally described by ``manifest.csv``."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from leam.dataset import scan_identity_folders, text_name
from leam.errors import LeamError


@dataclass(frozen=True)
class Photo:
    path: Path
    identity: str
    name: str  # file path relative to the data folder (``text_name``): a stable key
    attrs: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


def load_dataset(root: str | Path) -> dict[str, list[Photo]]:
    """{identity: photos sorted by name}. With ``manifest.csv`` (``path,identity[,attr...]``) the
    manifest decides which photos belong to whom and gives their attributes (e.g. gender)."""
    root = Path(root)
    manifest = root / "manifest.csv"
    out: dict[str, list[Photo]] = {}
    if manifest.is_file():
        with manifest.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = {"path", "identity"} - set(reader.fieldnames or ())
            if missing:
                raise LeamError(f"{manifest}: missing column(s) {sorted(missing)}; expected path,identity[,attr...]")
            for row in reader:
                rel = row.pop("path")
                identity = row.pop("identity")
                out.setdefault(identity, []).append(Photo(root / rel, identity, rel, dict(row)))
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
    """{entry: reason} for the entries of a folder-laid-out data folder that are not read (symbolic link
    loops, broken links, unlistable folders); none for a data folder with ``manifest.csv``."""
    root = Path(root)
    if (root / "manifest.csv").is_file():
        return {}
    return scan_identity_folders(root).skipped
