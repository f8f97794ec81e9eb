"""Pictures of maps: overlays on the chip, the map drawn back onto the photo, a grid of all layers."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import colormaps  # noqa: E402

from leam.face.align import Warp, warp_to_photo  # noqa: E402

CMAP = "jet"
PHOTO_MAX_SIDE = 1600  # photo overlays of larger photos are drawn at this size


def colorize(values: np.ndarray, cmap: str = CMAP) -> np.ndarray:
    """(H, W) values in [0, 1] → (H, W, 3) uint8 RGB."""
    rgba = colormaps[cmap](np.clip(values, 0.0, 1.0))
    return (rgba[..., :3] * 255).round().astype(np.uint8)


def overlay(image: np.ndarray, values: np.ndarray, alpha: float = 0.5, mask: np.ndarray | None = None) -> np.ndarray:
    """Blend a [0, 1] map over an RGB image; where ``mask`` (H, W) is 0 the image is left as is."""
    weight = alpha if mask is None else alpha * np.clip(mask, 0.0, 1.0)[..., None]
    out = (1.0 - weight) * image.astype(np.float64) + weight * colorize(values)
    return out.round().clip(0, 255).astype(np.uint8)


def photo_overlay(photo: np.ndarray, chip_map: np.ndarray, warp: Warp, alpha: float = 0.5) -> np.ndarray:
    """Draw a chip-frame map back onto the photo (downscaled to ``PHOTO_MAX_SIDE`` when larger)."""
    h, w = photo.shape[:2]
    s = min(1.0, PHOTO_MAX_SIDE / max(h, w))
    if s < 1.0:
        from PIL import Image

        photo = np.asarray(Image.fromarray(photo).resize((round(w * s), round(h * s)), Image.BILINEAR))
        matrix = warp.matrix @ np.diag([1.0 / s, 1.0 / s, 1.0])
        warp = Warp(matrix, warp.size)
    shape = photo.shape[:2]
    values = warp_to_photo(chip_map, warp, shape)
    coverage = warp_to_photo(np.ones_like(chip_map), warp, shape)
    return overlay(photo, values, alpha, mask=coverage)


def grid_figure(
    chip: np.ndarray, maps: Mapping[str, np.ndarray], aggregate: np.ndarray, title: str, path: str | Path
) -> None:
    """One figure: the chip, each layer's overlay, and the aggregate; saved as PNG."""
    panels = [("aligned face", chip, None), *((name, chip, m) for name, m in maps.items())]
    panels.append(("aggregate", chip, aggregate))
    cols = min(6, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, img, m) in zip(axes.flat, panels):
        ax.imshow(img if m is None else overlay(img, m))
        ax.set_title(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
