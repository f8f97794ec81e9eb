"""Moved to ``leam.data.folders`` (and ``text_name``, ``unresolvable_link`` to ``leam._io``); this shim keeps
the old import path working."""

from leam._io import text_name, unresolvable_link
from leam.data.folders import (
    IMAGE_SUFFIXES,
    FolderScan,
    identity_folders,
    is_photo_name,
    left_out,
    scan_identity_folders,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "FolderScan",
    "identity_folders",
    "is_photo_name",
    "left_out",
    "scan_identity_folders",
    "text_name",
    "unresolvable_link",
]
