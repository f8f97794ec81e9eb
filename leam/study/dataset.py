"""Moved to ``leam.data.dataset``; this shim keeps the old import path working."""

from leam.data.dataset import (
    MANIFEST,
    ManifestRow,
    Photo,
    attribute_names,
    load_dataset,
    read_manifest,
    skipped_entries,
    unlisted_files,
)

__all__ = [
    "MANIFEST",
    "ManifestRow",
    "Photo",
    "attribute_names",
    "load_dataset",
    "read_manifest",
    "skipped_entries",
    "unlisted_files",
]
