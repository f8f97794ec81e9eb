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
    """One picture: the chip, each layer's overlay and the aggregate, titled; saved as PNG.

    Composed with Pillow rather than matplotlib: it is drawn once per photo in long runs.
    """
    from PIL import Image, ImageDraw, ImageFont

    panels = [("aligned face", chip), *((name, overlay(chip, m)) for name, m in maps.items())]
    panels.append(("aggregate", overlay(chip, aggregate)))
    h, w = chip.shape[:2]
    scale = max(1, round(150 / max(h, w)))
    ph, pw = h * scale, w * scale
    cols = min(6, len(panels))
    rows = -(-len(panels) // cols)
    pad, label, head = 6, 16, 24
    sheet = Image.new("RGB", (cols * (pw + pad) + pad, head + rows * (ph + label + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=11)
    draw.text((pad, 5), title, fill="black", font=ImageFont.load_default(size=13))
    for k, (name, img) in enumerate(panels):
        x = pad + (k % cols) * (pw + pad)
        y = head + (k // cols) * (ph + label + pad)
        draw.text((x, y + 1), name, fill="black", font=font)
        tile = Image.fromarray(img)
        sheet.paste(tile.resize((pw, ph), Image.NEAREST) if scale > 1 else tile, (x, y + label))
    sheet.save(path)


def label_overlay(image: np.ndarray, label_rgb: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a palette picture of a label map over an RGB image."""
    return ((1 - alpha) * image.astype(np.float64) + alpha * label_rgb).round().clip(0, 255).astype(np.uint8)


def legend_handles(classes: list[str]) -> list:
    from matplotlib.patches import Patch

    from leam.face.labels import PALETTE

    return [Patch(color=np.array(PALETTE[c]) / 255.0, label=c) for c in classes]


def _share_bars(
    ax: plt.Axes,
    means: Mapping[float, Mapping[str, float]],
    classes: list[str],
    errors: Mapping[float, Mapping[str, float]] | None = None,
) -> None:
    """Grouped bars on ``ax``: per class, its (mean) share of the top-p % pixels at each threshold."""
    thresholds = sorted(means)
    width = 0.8 / len(thresholds)
    x = np.arange(len(classes))
    cmap = colormaps["viridis"]
    for i, p in enumerate(thresholds):
        heights = [means[p].get(c, np.nan) for c in classes]
        err = None if errors is None else [errors[p].get(c, np.nan) for c in classes]
        ax.bar(x + (i - (len(thresholds) - 1) / 2) * width, heights, width, yerr=err, capsize=1.5,
               label=f"top {p:g}%", color=cmap(i / max(1, len(thresholds) - 1)), error_kw={"elinewidth": 0.6})
    ax.set_xticks(x, classes, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("share of the top pixels")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncol=3)
    ax.grid(axis="y", alpha=0.3)


def regions_figure(
    chip: np.ndarray,
    label_rgb: np.ndarray,
    classes: list[str],
    values: np.ndarray,
    shares: Mapping[float, Mapping[str, float]],
    title: str,
    path: str | Path,
) -> None:
    """Parsing overlay, map overlay with its top pixels outlined, and class shares per threshold."""
    from leam.metrics.regions import top_mask

    fig = plt.figure(figsize=(13, 4.4))
    grid = fig.add_gridspec(1, 4, width_ratios=[1, 1, 0.22, 2.6])
    ax0, ax1, ax2 = fig.add_subplot(grid[0]), fig.add_subplot(grid[1]), fig.add_subplot(grid[3])
    ax0.imshow(label_overlay(chip, label_rgb))
    ax0.set_title("face regions", fontsize=9)
    ax0.legend(handles=legend_handles(classes), fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=3)
    ax1.imshow(overlay(chip, values))
    smallest = min(shares)
    ax1.contour(top_mask(values, smallest), levels=[0.5], colors="white", linewidths=0.8)
    ax1.set_title(f"map (white: top {smallest:g}% pixels)", fontsize=9)
    for ax in (ax0, ax1):
        ax.axis("off")
    _share_bars(ax2, shares, classes)
    fig.suptitle(title, fontsize=10, parse_math=False)  # titles hold file names: a "$" is no mathtext
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.2, top=0.88, wspace=0.05)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def shares_bar_chart(
    means: Mapping[float, Mapping[str, float]],
    classes: list[str],
    title: str,
    path: str | Path,
    errors: Mapping[float, Mapping[str, float]] | None = None,
) -> None:
    """One chart of (mean ± std) shares per class and threshold, e.g. over an identity's photos."""
    fig, ax = plt.subplots(figsize=(9, 3.6))
    _share_bars(ax, means, classes, errors)
    ax.set_title(title, fontsize=10, parse_math=False)  # titles hold identity names: a "$" is no mathtext
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
