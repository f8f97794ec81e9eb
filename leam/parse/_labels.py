"""Moved to ``leam.face.labels``; this shim keeps the old import path working."""

from leam.face.labels import CLASSES, PALETTE, UNLABELLED, UNLABELLED_NAME, LabelMap

__all__ = ["CLASSES", "PALETTE", "UNLABELLED", "UNLABELLED_NAME", "LabelMap"]
