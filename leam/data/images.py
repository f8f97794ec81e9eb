"""Read photos into RGB uint8 arrays, honouring EXIF orientation, with clear errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from leam._io import text_name, unresolvable_link
from leam.errors import ImageError

MAX_PIXELS = 60_000_000  # larger images are refused (decompression-bomb guard): ~ 9,500 x 6,300


def load_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The photo at ``path`` as an (H, W, 3) uint8 RGB array, upright per its EXIF orientation.

    Greyscale, RGBA (composited on white), palette, CMYK and 16-bit images are converted; of a
    multi-frame file (animated GIF, multi-page TIFF) the first frame is used. Damaged metadata that
    Pillow skips (e.g. corrupt EXIF) is ignored silently. Raises ``ImageError`` naming the file for
    anything unreadable: missing, empty, not a regular file, a symbolic link loop, truncated, not an
    image, or over ``max_pixels`` (checked from the header, before any pixel is decoded).
    """
    path = Path(path)
    name = text_name(str(path))  # as it can be printed and stored, whatever bytes the name holds
    if not path.is_file():  # never opened: a pipe or device named like a photo could block or never end
        why = "not a regular file (a folder, pipe or device)" if path.exists() else "no such file"
        raise ImageError(f"{name}: {unresolvable_link(path) or why}")
    if path.stat().st_size == 0:
        raise ImageError(f"{name}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Pillow's notes on damaged metadata (EXIF, TIFF tags)
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.width * im.height > max_pixels:
                    raise ImageError(
                        f"{name}: {im.width}x{im.height} pixels exceeds the limit of {max_pixels:,}"
                    )
                im.seek(0)
                im.load()
                return to_rgb(ImageOps.exif_transpose(im))
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{name}: refused as a possible decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file (or a format Pillow cannot read)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name}: unreadable or truncated image ({exc})") from None


def to_rgb(im: Image.Image) -> np.ndarray:
    """Any PIL image → (H, W, 3) uint8 RGB."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        # 16-bit modes always span 0..65535; a 32-bit "I" image is taken as 16-bit when it exceeds 8 bits
        scale = 257.0 if im.mode != "I" or a.max() > 255 else 1.0
        grey = np.clip(np.round(a / scale), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if im.mode == "P" or im.mode == "LA" or (im.mode == "RGB" and "transparency" in im.info):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
