"""Photo folders laid out as ``<identity>/<image files>``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from leam._io import text_name, unresolvable_link
from leam._paths import MARKER, is_run_folder, marked_files
from leam.errors import LeamError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


@dataclass(frozen=True)
class FolderScan:
    """``identities``: {identity: sorted image paths}; ``skipped``: {entry name: why it was left out}
    for entries of the data folder that could not be read as identity folders (never silently)."""

    identities: dict[str, list[Path]]
    skipped: dict[str, str] = field(default_factory=dict)


def scan_identity_folders(root: str | Path) -> FolderScan:
    """The identity folders of ``root`` (sub-folders holding images) and every entry left out with the
    reason (``left_out``): files outside identity folders, files that are not photos by their extension,
    folders inside identity folders (never read), empty folders, hidden entries (a name starting with "."),
    symbolic link loops, broken links, folders that cannot be listed, leam run folders, and the files leam
    wrote (listed in a folder's ``.leam-output`` marker: a folder holding only those is left out whole, one
    that also holds photos keeps the photos).

    Nothing is followed recursively, so a link cycle cannot make the scan hang. Identities are named
    with ``text_name``; an entry with an image suffix that is no regular file (a looping or broken
    link, a pipe) is kept, so that reading it fails with the reason. Two folder names that coincide once
    named (``Jos\\xe9`` written so, and ``Jos`` + the byte 0xE9) keep the first; the second is skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise LeamError(f"{root}: not a folder (expected <identity>/<image files>)")
    identities: dict[str, list[Path]] = {}
    skipped: dict[str, str] = {}
    for sub in sorted(root.iterdir()):
        name = text_name(sub.name)
        if sub.name.startswith(".") or unresolvable_link(sub) or not sub.is_dir():
            if sub.name != MARKER:
                skipped[name] = left_out(sub, top=True)
            continue
        if is_run_folder(sub):
            skipped[name] = "a leam run folder (it holds run.json), not photos of a person"
            continue
        try:
            entries = sorted(p for p in sub.iterdir() if p.name != MARKER)
        except OSError as exc:
            skipped[name] = f"the folder cannot be listed ({exc.strerror or exc})"
            continue
        leam_wrote = marked_files(sub)
        images = [p for p in entries if is_photo_name(p)]
        if leam_wrote:
            ours = [p for p in images if p.name in leam_wrote]
            images = [p for p in images if p.name not in leam_wrote]
            if not images and ours:
                skipped[name] = f"a folder of leam's outputs (listed in its {MARKER}), not photos of a person"
                continue
            elif ours:
                skipped.update({f"{name}/{text_name(p.name)}": f"written by leam (listed in {MARKER})" for p in ours})
        skipped.update({f"{name}/{text_name(p.name)}": left_out(p) for p in entries
                        if not is_photo_name(p) and p.name not in leam_wrote})
        if not entries:
            skipped[name] = "an empty folder"
        if images and name in identities:
            skipped[name] = f"its name is {name!r} once undecodable bytes are written as \\xNN, as another folder's"
        elif images:
            identities[name] = images
    return FolderScan(identities, skipped)


def is_photo_name(path: Path) -> bool:
    """Whether an entry of an identity folder is read as a photo: by its extension (``IMAGE_SUFFIXES``),
    not hidden, and no folder. A link loop or pipe with such a name is read, and fails with the reason."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and not path.is_dir()


def left_out(path: Path, top: bool = False) -> str:
    """Why an entry of a data folder (``top``) or of an identity folder is not read as a photo."""
    if path.name.startswith("."):
        return "hidden (its name starts with '.'); leam reads no hidden files or folders"
    if link := unresolvable_link(path):
        return link
    if top:
        return "a file outside the identity folders: photos go in <identity>/ folders (DATA/<identity>/<photo>)"
    if path.is_dir() and marked_files(path):
        return f"a folder of leam's outputs (listed in its {MARKER}), not photos of a person"
    if path.is_dir():
        return "a folder inside an identity folder: photos are read from <identity>/ itself, not its sub-folders"
    return f"not a photo by its extension: leam reads {' '.join(sorted(IMAGE_SUFFIXES))}"


def identity_folders(root: str | Path) -> dict[str, list[Path]]:
    """{identity: sorted image paths} for every sub-folder of ``root`` holding images (``scan_identity_folders``)."""
    return scan_identity_folders(root).identities
