"""The face-label vocabulary: CelebAMask-HQ's 19 class names, their colours, and label maps in a chip frame.

Plain data at the bottom of leam (NumPy only): face parsers (``leam.parse``) produce ``LabelMap``s, and
region statistics (``leam.metrics.regions``) and reports read them, without importing a parser.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The order used by the BiSeNet CelebAMask-HQ face parser (label value = index).
CLASSES: tuple[str, ...] = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
    "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
)  # fmt: skip
UNLABELLED = 255  # pixels a parser leaves without any of its classes (e.g. outside the face oval)
UNLABELLED_NAME = "unlabelled"

# A fixed palette (RGB), one colour per class, for label PNGs and legends.
PALETTE: dict[str, tuple[int, int, int]] = {
    "background": (0, 0, 0), "skin": (204, 0, 0), "l_brow": (76, 153, 0), "r_brow": (204, 204, 0),
    "l_eye": (51, 51, 255), "r_eye": (204, 0, 204), "eye_g": (0, 255, 255), "l_ear": (255, 204, 204),
    "r_ear": (102, 51, 0), "ear_r": (255, 0, 0), "nose": (102, 204, 0), "mouth": (255, 255, 0),
    "u_lip": (0, 0, 153), "l_lip": (0, 0, 204), "neck": (255, 51, 153), "neck_l": (0, 204, 204),
    "cloth": (0, 51, 0), "hair": (255, 153, 51), "hat": (0, 204, 0), UNLABELLED_NAME: (128, 128, 128),
}  # fmt: skip


@dataclass(frozen=True)
class LabelMap:
    """Per-pixel class indices (H, W) uint8 into ``CLASSES`` (``UNLABELLED`` = none), in a chip frame.

    ``classes`` are the classes the parser can produce: statistics only ever report these (plus
    "unlabelled" when the parser leaves pixels without a class), never a class it cannot see.
    """

    labels: np.ndarray
    classes: tuple[str, ...]
    parser: str

    def __post_init__(self) -> None:
        if self.labels.ndim != 2 or self.labels.dtype != np.uint8:
            raise ValueError(f"expected (H, W) uint8 labels, got {self.labels.shape} {self.labels.dtype}")
        unknown = [c for c in self.classes if c not in CLASSES]
        if unknown:
            raise ValueError(f"unknown class names {unknown}; expected names from {CLASSES}")

    def mask(self, name: str) -> np.ndarray:
        """Boolean (H, W) mask of one class (or of "unlabelled")."""
        if name == UNLABELLED_NAME:
            return self.labels == UNLABELLED
        return self.labels == CLASSES.index(name)

    @property
    def categories(self) -> tuple[str, ...]:
        """The parser's classes, plus "unlabelled" when any pixel has no class."""
        extra = (UNLABELLED_NAME,) if (self.labels == UNLABELLED).any() else ()
        return self.classes + extra

    def to_rgb(self) -> np.ndarray:
        """(H, W, 3) uint8 picture of the labels in the fixed palette."""
        lut = np.zeros((256, 3), dtype=np.uint8)
        for i, name in enumerate(CLASSES):
            lut[i] = PALETTE[name]
        lut[UNLABELLED] = PALETTE[UNLABELLED_NAME]
        return lut[self.labels]
