"""Moved to ``leam.data.images``; this shim keeps the old import path working."""

from leam.data.images import MAX_PIXELS, load_image, to_rgb

__all__ = ["MAX_PIXELS", "load_image", "to_rgb"]
