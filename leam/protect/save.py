"""Write a protected photo like its original: same format, same (upright) size, the metadata kept
except what must go.

The pixels are stored upright (as ``load_image`` returns them after honouring EXIF orientation),
so the EXIF orientation is set to 1 (a viewer shows the same picture, and the saved size is the
size the photo is shown at). Kept: EXIF (IFD0 with its Exif and GPS sub-IFDs), the ICC profile, XMP,
DPI, a JPEG comment and progressive flag, PNG text chunks. Dropped: the EXIF thumbnail (IFD1) and the
maker note, which can hold a preview of the *unprotected* face; Photoshop's APP13 block (which can
hold one too, and which Pillow cannot write); an alpha channel and a greyscale, palette or 16-bit
mode (the protected photo is 8-bit RGB: the perturbation is in colour). JPEG is re-encoded at
``jpeg_quality`` (95) without chroma subsampling, so the perturbation survives as well as JPEG lets it;
PNG, TIFF (LZW), BMP and WebP (lossless) keep every pixel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, PngImagePlugin

from leam.errors import ImageError
from leam.study.store import atomic_write

FORMATS = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "BMP": ".bmp", "WEBP": ".webp"}
LOSSLESS = {"PNG", "TIFF", "BMP", "WEBP"}
ORIENTATION = 0x0112
MAKER_NOTE = 0x927C


def source_format(path: str | Path) -> str:
    """The Pillow format name of the photo at ``path`` (one of ``FORMATS``), or an ``ImageError``."""
    if not Path(path).is_file():
        raise ImageError(f"{path}: no such file")
    try:
        with Image.open(path) as im:
            fmt = im.format or ""
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path}: unreadable image ({exc})") from None
    if fmt not in FORMATS:
        raise ImageError(f"{path}: leam protect writes {', '.join(FORMATS)} photos, not {fmt or 'this format'}")
    return fmt


def encode_like(source: str | Path, pixels: np.ndarray, jpeg_quality: int = 95) -> bytes:
    """The bytes of ``pixels`` (H, W, 3) uint8 RGB encoded in ``source``'s format with its metadata."""
    import io

    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8 pixels, got {pixels.dtype} {pixels.shape}")
    fmt = source_format(source)
    with Image.open(source) as src:
        info = dict(src.info)
        exif = src.getexif()
        text = dict(getattr(src, "text", {}) or {}) if fmt == "PNG" else {}
    options: dict = {}
    if len(exif):
        exif[ORIENTATION] = 1
        sub = exif.get_ifd(ExifTags.IFD.Exif)
        sub.pop(MAKER_NOTE, None)
        options["exif"] = exif.tobytes()  # Pillow writes IFD0, Exif and GPS, never IFD1 (the thumbnail)
    for key in ("icc_profile", "dpi"):
        if info.get(key):
            options[key] = info[key]
    if fmt == "JPEG":
        options.update(quality=int(jpeg_quality), subsampling=0, progressive=bool(info.get("progressive")))
        for key in ("xmp", "comment"):
            if info.get(key):
                options[key] = info[key]
    elif fmt == "PNG":
        chunks = PngImagePlugin.PngInfo()
        for k, v in text.items():
            chunks.add_itxt(k, v) if not v.isascii() else chunks.add_text(k, v)
        options["pnginfo"] = chunks
    elif fmt == "TIFF":
        options["compression"] = "tiff_lzw"
    elif fmt == "WEBP":
        options.update(lossless=True, quality=100)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), "RGB").save(buf, format=fmt, **options)
    return buf.getvalue()


def save_like(source: str | Path, pixels: np.ndarray, out: str | Path, jpeg_quality: int = 95) -> Path:
    """Write ``pixels`` to ``out`` (atomically) like ``source``; never over ``source`` itself."""
    out = Path(out)
    if out.exists() and out.resolve() == Path(source).resolve():
        raise ImageError(f"{out}: refusing to write a protected photo over its original")
    atomic_write(out, encode_like(source, pixels, jpeg_quality))
    return out
