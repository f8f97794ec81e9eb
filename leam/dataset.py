"""Photo folders laid out as ``<identity>/<image files>``."""

from __future__ import annotations

from pathlib import Path

from leam.errors import LeamError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def identity_folders(root: str | Path) -> dict[str, list[Path]]:
    """{identity: sorted image paths} for every sub-folder of ``root`` holding images."""
    root = Path(root)
    if not root.is_dir():
        raise LeamError(f"{root}: not a folder (expected <identity>/<image files>)")
    out = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = sorted(p for p in sub.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if images:
            out[sub.name] = images
    return out
