"""Write a protected photo like its original: same format, same (upright) size, and only the metadata
that cannot carry a picture of the unprotected face.

The pixels are stored upright (as ``load_image`` returns them after honouring EXIF orientation),
so the EXIF orientation is set to 1 (a viewer shows the same picture, and the saved size is the
size the photo is shown at). Kept: the ICC profile, DPI, and short descriptive values: EXIF's
camera, date, exposure and GPS fields, a JPEG comment, PNG text chunks. Dropped, because each can hold a
preview of the face: the EXIF thumbnail (IFD1), the maker note and any other EXIF field but those
listed in ``IFD0_KEPT`` and the Exif and GPS sub-IFDs; XMP (``xmp:Thumbnails``); Photoshop/IPTC blocks
(APP13) and MPF images (APP2), which leam never writes; and any kept value over ``MAX_VALUE`` bytes or
holding an image (``holds_image``: a JPEG or PNG raw, in base64 or in hex). Also dropped: an alpha
channel and a greyscale, palette or 16-bit mode (the protected photo is 8-bit RGB: the perturbation is in
colour). JPEG is re-encoded at ``jpeg_quality`` (95) without chroma subsampling, so the perturbation
survives as well as JPEG lets it; PNG, TIFF (LZW), BMP and WebP (lossless) keep every pixel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, PngImagePlugin

from leam._paths import write_file
from leam.errors import ImageError

FORMATS = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "BMP": ".bmp", "WEBP": ".webp"}
LOSSLESS = {"PNG", "TIFF", "BMP", "WEBP"}
ORIENTATION = 0x0112
MAKER_NOTE = 0x927C
# IFD0 fields kept (descriptive, small): description, make, model, orientation, resolution, software,
# date, artist, copyright; and the pointers to the Exif and GPS sub-IFDs (rebuilt, never copied)
IFD0_KEPT = (0x010E, 0x010F, 0x0110, ORIENTATION, 0x011A, 0x011B, 0x0128, 0x0131, 0x0132, 0x013B, 0x8298)
MAX_VALUE = 512  # bytes: a longer metadata value is dropped (there would be room for a small preview)
# an image's first bytes raw, in base64 and in hex (ImageMagick keeps EXIF in PNG text as hex)
TEXT_SIGNATURES = (b"/9j/", b"iVBORw0KGgo", b"ffd8ff", b"FFD8FF", b"89504e470d0a1a0a", b"89504E470D0A1A0A")


def source_format(path: str | Path) -> str:
    """The Pillow format name of the photo at ``path`` (one of ``FORMATS``), or an ``ImageError``."""
    if not Path(path).is_file():
        raise ImageError(f"{path}: no such file")
    try:
        with Image.open(path) as im:
            fmt = im.format or ""
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path}: unreadable image ({exc})") from None
    if fmt == "MPO":  # a camera's JPEG with more images after the first (MPF): written as a plain JPEG
        fmt = "JPEG"
    if fmt not in FORMATS:
        raise ImageError(f"{path}: leam protect writes {', '.join(FORMATS)} photos, not {fmt or 'this format'}")
    return fmt


def holds_image(value: object) -> bool:
    """Whether a metadata value holds a JPEG or PNG image: raw (one that Pillow can open), in base64 or in hex."""
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    if not isinstance(data, bytes | bytearray):
        return False
    data = bytes(data)
    if b"\x89PNG\r\n\x1a\n" in data or any(sig in data for sig in TEXT_SIGNATURES):
        return True
    starts, i = [], data.find(b"\xff\xd8\xff")
    while i >= 0 and len(starts) < 50:
        starts.append(i)
        i = data.find(b"\xff\xd8\xff", i + 1)
    return len(starts) == 50 or any(_opens(data[i:]) for i in starts)  # 50: too many to try, none kept


def _opens(data: bytes) -> bool:
    import io

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size[0] > 0
    except Exception:  # noqa: BLE001 - any failure to parse means "no image here"
        return False


def _short(value: object) -> bool:
    """A value small enough to keep, and no image."""
    size = len(value) if isinstance(value, str | bytes | bytearray | tuple) else 0
    return size <= MAX_VALUE and not holds_image(value)


def clean_exif(exif: Image.Exif) -> Image.Exif:
    """A new EXIF block: the ``IFD0_KEPT`` fields (orientation 1) and the Exif and GPS sub-IFDs without the
    maker note or the interoperability pointer, every value ``_short``; never IFD1 (the thumbnail)."""
    clean = Image.Exif()
    for tag in IFD0_KEPT:
        if tag in exif and _short(exif[tag]):
            clean[tag] = exif[tag]
    clean[ORIENTATION] = 1
    for ifd in (ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo):
        sub = {k: v for k, v in exif.get_ifd(ifd).items()
               if k not in (MAKER_NOTE, ExifTags.IFD.Interop) and _short(v)}
        if sub:
            clean[ifd] = sub
    return clean


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
        options["exif"] = clean_exif(exif).tobytes()
    if info.get("icc_profile") and not holds_image(info["icc_profile"]):
        options["icc_profile"] = info["icc_profile"]
    if info.get("dpi"):
        options["dpi"] = info["dpi"]
    if fmt == "JPEG":
        options.update(quality=int(jpeg_quality), subsampling=0, progressive=bool(info.get("progressive")))
        if info.get("comment") and _short(info["comment"]):
            options["comment"] = info["comment"]
    elif fmt == "PNG":
        chunks = PngImagePlugin.PngInfo()
        for k, v in text.items():
            if _short(v) and not k.startswith(("XML:com.adobe.xmp", "Raw profile type")):
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
    write_file(out, encode_like(source, pixels, jpeg_quality))
    return out
