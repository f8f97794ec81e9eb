"""Protected photos carry no picture of the unprotected face (issue 13.3).

Inputs are made on the spot from a real face photo, each hiding a preview of that face where cameras and
editors put one: the EXIF thumbnail (IFD1), XMP ``xmp:Thumbnails`` (base64), a Photoshop APP13 thumbnail
resource, an MPF second image, a JPEG comment, PNG text (XMP, ImageMagick's hex EXIF), TIFF tags (XMP,
Photoshop, IPTC), WebP EXIF and XMP, and an ICC profile with a JPEG inside. The output's bytes are then
searched by this file's own scanner, not through leam or only through Pillow: every JPEG and PNG start,
raw, in base64 or in hex, also inside compressed PNG chunks; none may decode, besides the photo itself,
and the preview's bytes must be gone. The scanner is run on each input too, so the test can fail.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms, PngImagePlugin, TiffImagePlugin

from leam.data.images import load_image
from leam.protect.save import encode_like
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.reliability
JPEG_SOI, PNG_SIG = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    folder = SHARED_DATA / "lfw-demo"
    if not folder.is_dir():
        pytest.skip(f"shared test photos not found at {folder}")
    first = sorted(p for p in folder.iterdir() if p.is_dir())[0]
    return np.asarray(Image.open(sorted(first.glob("*.jpg"))[0]).convert("RGB"))


@pytest.fixture(scope="module")
def preview(face: np.ndarray) -> bytes:
    """The unprotected face as a 96 x 96 JPEG thumbnail, as a camera would embed it."""
    buf = io.BytesIO()
    Image.fromarray(face).resize((96, 96)).save(buf, "JPEG", quality=80)
    return buf.getvalue()


# ------------------------------------------------------------------------ an independent scanner


def embedded_images(data: bytes, skip_first: bool) -> list[tuple[int, str]]:
    """(offset, how) of every image that decodes inside ``data``: raw JPEG/PNG starts, base64 and hex runs,
    and (recursively) the contents of zlib-compressed PNG chunks. ``skip_first``: the file is itself
    a JPEG or PNG, whose start at offset 0 is the photo."""
    found = []
    for sig in (JPEG_SOI, PNG_SIG):
        for m in re.finditer(re.escape(sig), data):
            if (m.start() == 0 and skip_first) or not _decodes(data[m.start():]):
                continue
            found.append((m.start(), "raw"))
    for m in re.finditer(rb"[A-Za-z0-9+/=\r\n ]{200,}", data):
        try:
            blob = base64.b64decode(re.sub(rb"\s", b"", m.group()), validate=False)
        except (binascii.Error, ValueError):
            continue
        found += [(m.start(), "base64") for sig in (JPEG_SOI, PNG_SIG) if sig in blob]
    for m in re.finditer(rb"[0-9a-fA-F\r\n ]{400,}", data):
        hexits = re.sub(rb"\s", b"", m.group())
        blob = binascii.unhexlify(hexits[: len(hexits) // 2 * 2])
        found += [(m.start(), "hex") for sig in (JPEG_SOI, PNG_SIG) if sig in blob]
    for offset, inner in compressed_chunks(data):
        found += [(offset, f"zlib/{how}") for _, how in embedded_images(inner, False)]
    return found


def compressed_chunks(data: bytes) -> list[tuple[int, bytes]]:
    """The inflated contents of a PNG's zTXt, iTXt and iCCP chunks."""
    if not data.startswith(PNG_SIG):
        return []
    out, i = [], 8
    while i + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[i: i + 8])
        body = data[i + 8: i + 8 + length]
        if kind in (b"zTXt", b"iCCP", b"iTXt"):
            try:
                out.append((i, zlib.decompress(body[body.index(b"\0") + 2:] if kind != b"iTXt" else
                                               body.split(b"\0", 3)[-1].split(b"\0", 1)[-1])))
            except (ValueError, zlib.error):
                out.append((i, body))
        i += 12 + length
    return out


def _decodes(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return im.size[0] * im.size[1] > 1
    except Exception:  # noqa: BLE001 - anything that fails to decode is no image
        return False


def assert_no_preview(out: bytes, preview: bytes, photo_sig: bytes | None) -> None:
    found = embedded_images(out, skip_first=photo_sig is not None and out.startswith(photo_sig))
    assert not found, f"images left in the output at {found}"
    for form in (preview[:64], base64.b64encode(preview)[:64], preview[:64].hex().encode()):
        assert form not in out


# ------------------------------------------------------------------------------ hostile inputs


def exif_with_thumbnail(thumbnail: bytes, make: str = "Camera Co") -> bytes:
    """EXIF (little-endian TIFF) with IFD0 {Make} and IFD1 holding ``thumbnail`` (JPEGInterchangeFormat)."""
    make_b = make.encode() + b"\0"
    ifd0 = 8
    ifd1 = ifd0 + 2 + 12 + 4
    make_at = ifd1 + 2 + 2 * 12 + 4
    thumb_at = make_at + len(make_b)
    tiff = b"II*\0" + struct.pack("<I", ifd0)
    tiff += struct.pack("<H", 1) + struct.pack("<HHII", 0x010F, 2, len(make_b), make_at) + struct.pack("<I", ifd1)
    tiff += struct.pack("<H", 2) + struct.pack("<HHII", 0x0201, 4, 1, thumb_at)
    tiff += struct.pack("<HHII", 0x0202, 4, 1, len(thumbnail)) + struct.pack("<I", 0)
    return b"Exif\0\0" + tiff + make_b + thumbnail


def xmp_with_thumbnail(thumbnail: bytes) -> bytes:
    b64 = base64.encodebytes(thumbnail).decode()
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:xmpGImg="http://ns.adobe.com/xap/1.0/g/img/">'
        '<xmp:Thumbnails><rdf:Alt><rdf:li rdf:parseType="Resource"><xmpGImg:format>JPEG</xmpGImg:format>'
        f"<xmpGImg:image>{b64}</xmpGImg:image></rdf:li></rdf:Alt></xmp:Thumbnails>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
    ).encode()


def photoshop_thumbnail(thumbnail: bytes) -> bytes:
    """An image resource block holding resource 0x040C (the thumbnail: a 28-byte header, then JFIF)."""
    data = struct.pack(">IIIIIIHH", 1, 96, 96, 288, 288 * 96, len(thumbnail), 24, 1) + thumbnail
    block = b"8BIM" + struct.pack(">H", 0x040C) + b"\0\0" + struct.pack(">I", len(data)) + data
    return block + (b"\0" if len(data) % 2 else b"")


def with_app13(jpeg: bytes, thumbnail: bytes) -> bytes:
    payload = b"Photoshop 3.0\0" + photoshop_thumbnail(thumbnail)
    return jpeg[:2] + b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


@functools.cache
def srgb() -> bytes:
    """An sRGB ICC profile, made once: littleCMS stamps it with the time it was made, to the second."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def hostile_sources(folder: Path, face: np.ndarray, thumb: bytes) -> dict[str, Path]:
    """Each kind of embedded preview in a file of its own (and one of everything at once)."""
    folder.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(face)
    files: dict[str, Path] = {}

    def jpeg(name: str, **kw) -> Path:
        files[name] = folder / f"{name}.jpg"
        img.save(files[name], "JPEG", quality=92, **kw)
        return files[name]

    jpeg("exif-thumbnail", exif=exif_with_thumbnail(thumb))
    jpeg("xmp-thumbnail", xmp=xmp_with_thumbnail(thumb))
    jpeg("comment-base64", comment=base64.b64encode(thumb))
    jpeg("icc-with-jpeg", icc_profile=srgb() + thumb)
    app13 = jpeg("app13-thumbnail")
    app13.write_bytes(with_app13(app13.read_bytes(), thumb))
    everything = jpeg("everything", exif=exif_with_thumbnail(thumb), xmp=xmp_with_thumbnail(thumb),
                      comment=b"kept: a short comment", icc_profile=srgb())
    everything.write_bytes(with_app13(everything.read_bytes(), thumb))
    files["mpf-second-image"] = folder / "mpf-second-image.jpg"
    img.save(files["mpf-second-image"], "MPO", save_all=True, append_images=[Image.open(io.BytesIO(thumb))])

    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp_with_thumbnail(thumb).decode(), zip=True)
    info.add_text("Raw profile type exif", "\nexif\n" + exif_with_thumbnail(thumb)[6:].hex(), zip=True)
    info.add_text("Thumb", base64.b64encode(thumb).decode())
    info.add_text("Author", "kept: someone")
    files["png-text"] = folder / "png-text.png"
    img.save(files["png-text"], pnginfo=info, icc_profile=srgb())

    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[700] = xmp_with_thumbnail(thumb)
    tags.tagtype[700] = 1
    tags[34377] = photoshop_thumbnail(thumb)
    tags.tagtype[34377] = 1
    tags[33723] = b"\x1c\x02\x00\x00\x02\x00\x04" + thumb
    tags.tagtype[33723] = 7
    tags[0x010F] = "kept: Cam"
    files["tiff-tags"] = folder / "tiff-tags.tif"
    img.save(files["tiff-tags"], tiffinfo=tags)

    files["webp-exif-xmp"] = folder / "webp-exif-xmp.webp"
    img.save(files["webp-exif-xmp"], "WEBP", lossless=True, exif=exif_with_thumbnail(thumb),
             xmp=xmp_with_thumbnail(thumb))
    return files


@pytest.fixture(scope="module")
def sources(face, preview, tmp_path_factory) -> dict[str, Path]:
    return hostile_sources(tmp_path_factory.mktemp("previews"), face, preview)


KINDS = ("exif-thumbnail", "xmp-thumbnail", "comment-base64", "icc-with-jpeg", "app13-thumbnail", "everything",
         "mpf-second-image", "png-text", "tiff-tags", "webp-exif-xmp")
SIGNATURE = {".jpg": JPEG_SOI, ".png": PNG_SIG, ".tif": None, ".webp": None}


@pytest.mark.parametrize("kind", KINDS)
def test_no_preview_of_the_face_survives(sources, preview, kind) -> None:
    src = sources[kind]
    raw = src.read_bytes()
    sig = SIGNATURE[src.suffix]
    assert embedded_images(raw, skip_first=sig is not None), f"the scanner finds no preview in the {kind} input"
    pixels = load_image(src)
    out = encode_like(src, pixels)
    assert_no_preview(out, preview, sig)
    with Image.open(io.BytesIO(out)) as im:  # still a photo of the input's format and size, one frame
        assert im.size == (pixels.shape[1], pixels.shape[0]) and getattr(im, "n_frames", 1) == 1
        assert "xmp" not in im.info and "photoshop" not in im.info and "mp" not in im.info
        assert not im.getexif().get_ifd(ExifTags.IFD.IFD1)


def test_what_cannot_hold_a_face_is_kept(sources) -> None:
    """The short EXIF make, the comment, the PNG author and a plain sRGB profile stay: the rule drops
    pictures, not all metadata."""
    with Image.open(io.BytesIO(encode_like(sources["everything"], load_image(sources["everything"])))) as im:
        assert im.getexif()[ExifTags.Base.Make] == "Camera Co" and im.info["comment"] == b"kept: a short comment"
        assert im.info["icc_profile"] == srgb()
    with Image.open(io.BytesIO(encode_like(sources["png-text"], load_image(sources["png-text"])))) as im:
        assert im.text == {"Author": "kept: someone"} and im.info["icc_profile"] == srgb()
    with Image.open(io.BytesIO(encode_like(sources["tiff-tags"], load_image(sources["tiff-tags"])))) as im:
        assert im.getexif()[ExifTags.Base.Make] == "kept: Cam"
        assert not {700, 33723, 34377} & set(im.tag_v2)
    with Image.open(io.BytesIO(encode_like(sources["icc-with-jpeg"], load_image(sources["icc-with-jpeg"])))) as im:
        assert "icc_profile" not in im.info  # the profile held a JPEG: dropped whole
