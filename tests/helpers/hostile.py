"""Hostile inputs made on the spot from real LFW photos: broken, odd, huge and misleading image files.

Nothing here is committed but this generator; every file is written into a folder the test owns.
Each ``Hostile`` says what leam must do with it: ``error`` is a regular expression the one-line error
must match, or None when the file is legitimately fine (a CMYK JPEG, a 16-bit PNG, an EXIF-rotated
photo: the face must be found); ``largest`` marks photos with several faces that are fine once
``--face largest`` is given. Multi-frame files (GIF, TIFF) are read at their first frame.

>>> cases = write_hostile_images(tmp / "hostile", [face_a, face_b])     # doctest: +SKIP
"""

from __future__ import annotations

import csv
import os
import struct
import unicodedata
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

EXIF_ORIENTATION = 0x0112
# The transposition that stores an upright photo so that EXIF orientation ``o`` turns it upright again
# (Pillow's ``exif_transpose`` applies the inverse of each of these).
STORED_AS = {
    1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}  # fmt: skip
BOMB_SIDE = 30_000
NON_UTF8 = os.fsdecode(b"caf\xe9-latin1.jpg")  # a Latin-1 byte that is not UTF-8: a surrogate in Python
SCRIPT_NAME = "\"'><script>alert(1)<\\script>.jpg"
MATHTEXT_NAME = "$\\oops{$.jpg"  # "$" starts matplotlib's mathtext, where \oops{ does not parse
NAMES = (
    "zero-byte", "text-as-jpeg", "truncated-jpeg", "truncated-png", "cmyk-jpeg", "16bit-rgb-png", "16bit-grey-png",
    "palette-png-transparent", "greyscale-jpeg", "1x1", "10x10", *(f"exif-{o}" for o in range(1, 9)),
    "bomb-png-30000", "bomb-jpeg-header", "over-limit-70mp", "animated-gif", "multipage-tiff", "gif-face-on-frame-2",
    "symlink-loop", "broken-symlink", "named-pipe", "non-utf8-name", "script-name", "mathtext-name", "no-face",
    "six-faces", "mirror",
)  # fmt: skip  (write_hostile_images writes them in this order)
# Names of people, photos and attributes for the explorer's and the report's pages and file names
# (``write_named_people``): markup, quotes, ``</script>``, bidi controls, line separators, names equal up to case
# or Unicode normalisation, and 250-byte names (a file name made from one, plus a suffix, would pass 255 bytes).
LONG_NAME = "Ω" * 125  # 250 bytes of UTF-8
HOSTILE_PEOPLE = (
    "Anna", "anna", unicodedata.normalize("NFC", "José"), unicodedata.normalize("NFD", "José"), LONG_NAME,
    "\"'><img src=x onerror=alert(1)>", "</script><script>alert(2)</script>", "Evil\u202egnp.exe",
    "line\u2028sep\u2029", "&amp; &lt;b&gt;", "../../escape",
)  # fmt: skip
HOSTILE_PHOTOS = ("é" * 123 + ".jpg", "\"'><img src=x onerror=alert(3)>.jpg", "bidi\u202egpj.jpg", "a\u2028b.jpg")
HOSTILE_ATTRIBUTES = ("<i>group</i>", "(i)group(/i)", "Group", "group", "photos", "g" * 250)
HOSTILE_VALUES = ("</script>\u2028<!--", "Zoë\u202e", "x")
GOOD = ("cmyk-jpeg", "16bit-rgb-png", "16bit-grey-png", "palette-png-transparent", "greyscale-jpeg",
        *(f"exif-{o}" for o in range(1, 9)), "animated-gif", "multipage-tiff", "non-utf8-name", "script-name",
        "mathtext-name")


@dataclass(frozen=True)
class Hostile:
    """One hostile file: its ``path``, and ``error`` (regex of the one-line error) or None (fine).

    ``error`` comes from reading the image (``load_image`` raises ``ImageError``) unless ``face``:
    then the image reads and the face step refuses it."""

    name: str
    path: Path
    error: str | None
    face: bool = False  # the error is about faces (none, several), not the file
    largest: bool = False  # several faces: fine with --face largest
    same_as_first: bool = False  # its face is faces[0]'s, where faces[0] has it (upright, first frame)


def write_hostile_images(folder: Path, faces: list[Path], bomb: bool = True) -> list[Hostile]:
    """Write every hostile image into ``folder`` from real single-face photos ``faces`` (two or more,
    the first used for most variants); returns them in a fixed order."""
    folder.mkdir(parents=True, exist_ok=True)
    face = np.asarray(Image.open(faces[0]).convert("RGB"))
    other = np.asarray(Image.open(faces[1]).convert("RGB"))
    out: list[Hostile] = []

    def add(name: str, filename: str, error: str | None, **kw) -> Path:
        path = folder / filename
        out.append(Hostile(name, path, error, **kw))
        return path

    add("zero-byte", "empty.jpg", r"empty file").write_bytes(b"")
    add("text-as-jpeg", "notes.jpg", r"not an image file").write_text("these are not pixels\n")
    jpeg = faces[0].read_bytes()
    add("truncated-jpeg", "truncated.jpg", r"unreadable or truncated image").write_bytes(jpeg[: len(jpeg) // 2])
    png = _png_bytes(face)
    add("truncated-png", "truncated.png", r"unreadable or truncated image").write_bytes(png[: len(png) // 2])
    Image.fromarray(face).convert("CMYK").save(add("cmyk-jpeg", "cmyk.jpg", None, same_as_first=True), quality=95)
    add("16bit-rgb-png", "rgb16.png", None, same_as_first=True).write_bytes(_png16_rgb(face.astype(np.uint16) * 257))
    grey = np.asarray(Image.fromarray(face).convert("L"))
    Image.fromarray(grey.astype(np.uint16) * 257).save(add("16bit-grey-png", "grey16.png", None, same_as_first=True))
    palette = Image.fromarray(face).quantize(255)
    corner = palette.getpixel((0, 0))  # the corner's colour made transparent: background, not face
    palette.save(add("palette-png-transparent", "palette.png", None, same_as_first=True), transparency=corner)
    Image.fromarray(grey).save(add("greyscale-jpeg", "grey.jpg", None, same_as_first=True), quality=95)
    Image.new("RGB", (1, 1), (128, 100, 90)).save(add("1x1", "one_pixel.png", r"no face found", face=True))
    Image.fromarray(face).resize((10, 10)).save(add("10x10", "ten_pixels.png", r"no face found", face=True))
    for o, stored in STORED_AS.items():
        im = Image.fromarray(face) if stored is None else Image.fromarray(face).transpose(stored)
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = o
        im.save(add(f"exif-{o}", f"exif_orientation_{o}.jpg", None, same_as_first=True), quality=95, exif=exif)
    if bomb:
        add("bomb-png-30000", "bomb.png", r"decompression bomb|exceeds the limit").write_bytes(png_bomb(BOMB_SIDE))
    add("bomb-jpeg-header", "bomb_header.jpg", r"decompression bomb|exceeds the limit").write_bytes(
        jpeg_with_size(jpeg, BOMB_SIDE, BOMB_SIDE))
    add("over-limit-70mp", "seventy_mp.jpg", r"exceeds the limit of 60,000,000").write_bytes(
        jpeg_with_size(jpeg, 10_000, 7_000))  # under Pillow's own bomb limit, over leam's
    frames = [Image.fromarray(face), Image.fromarray(other), Image.new("RGB", face.shape[1::-1], (0, 0, 255))]
    frames[0].save(add("animated-gif", "animated.gif", None, same_as_first=True), save_all=True,
                   append_images=frames[1:], duration=100, loop=0)
    frames[0].save(add("multipage-tiff", "multipage.tif", None, same_as_first=True), save_all=True,
                   append_images=frames[1:])
    blank_first = [Image.new("RGB", face.shape[1::-1], (90, 90, 90)), Image.fromarray(face)]
    blank_first[0].save(add("gif-face-on-frame-2", "face_on_second_frame.gif", r"no face found", face=True),
                        save_all=True, append_images=blank_first[1:])  # only the first frame is read
    loop = add("symlink-loop", "loop.jpg", r"symbolic link loop")
    loop.symlink_to(loop.name)  # points at itself: ELOOP
    add("broken-symlink", "dangling.jpg", r"broken symbolic link").symlink_to("no_such_target.jpg")
    os.mkfifo(add("named-pipe", "pipe.jpg", r"not a regular file"))  # opening it would block for ever
    Image.fromarray(face).save(add("non-utf8-name", NON_UTF8, None, same_as_first=True), quality=95)
    Image.fromarray(face).save(add("script-name", SCRIPT_NAME, None, same_as_first=True), quality=95)
    Image.fromarray(face).save(add("mathtext-name", MATHTEXT_NAME, None, same_as_first=True), quality=95)
    rng = np.random.default_rng(0)
    texture = (rng.random((240, 320, 1)) * 60 + np.linspace(60, 200, 320)[None, :, None]).astype(np.uint8)
    Image.fromarray(np.repeat(texture, 3, axis=2)).save(add("no-face", "landscape.png", r"no face found", face=True))
    tiles = [np.asarray(Image.open(faces[i % len(faces)]).convert("RGB")) for i in range(6)]
    six = np.vstack([np.hstack(tiles[:3]), np.hstack(tiles[3:])])
    Image.fromarray(six).save(add("six-faces", "six_faces.jpg", r"6 faces found", face=True, largest=True),
                              quality=95)
    mirror = np.hstack([face, face[:, ::-1]])  # the face and its reflection, side by side
    Image.fromarray(mirror).save(add("mirror", "mirror.jpg", r"2 faces found", face=True, largest=True), quality=95)
    return out


def write_named_people(root: Path, people: list[Path], photos: int = 2) -> dict[str, list[str]]:
    """A data folder ``root`` with a ``manifest.csv`` naming ``HOSTILE_PEOPLE``, each with ``photos`` links to
    the photos of one folder of ``people`` (real single-face photos), in a folder of the person's name where a
    file name can hold it (else ``person-<k>``), every other person's photos under ``HOSTILE_PHOTOS`` names;
    every photo has each of ``HOSTILE_ATTRIBUTES``, valued from ``HOSTILE_VALUES``. Returns {person: paths}."""
    rows, paths = [], {}
    for k, (name, source) in enumerate(zip(HOSTILE_PEOPLE, people, strict=False)):
        folder = name if "/" not in name else f"person-{k}"
        (root / folder).mkdir(parents=True)
        originals = sorted(source.iterdir())[:photos]
        for j, photo in enumerate(originals):
            file = HOSTILE_PHOTOS[(k + j) % len(HOSTILE_PHOTOS)] if k % 2 else photo.name
            (root / folder / file).symlink_to(photo)
            values = {a: HOSTILE_VALUES[(k + i) % len(HOSTILE_VALUES)] for i, a in enumerate(HOSTILE_ATTRIBUTES)}
            rows.append({"path": f"{folder}/{file}", "identity": name, **values})
            paths.setdefault(name, []).append(f"{folder}/{file}")
    with (root / "manifest.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["path", "identity", *HOSTILE_ATTRIBUTES])
        writer.writeheader()
        writer.writerows(rows)
    return paths


# ----------------------------------------------------------------------------------- raw encoders


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, bit_depth: int, colour: int, idat: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _png_bytes(rgb: np.ndarray) -> bytes:
    rows = b"".join(b"\x00" + row.tobytes() for row in rgb.astype(np.uint8))
    return _png(rgb.shape[1], rgb.shape[0], 8, 2, zlib.compress(rows))


def _png16_rgb(rgb16: np.ndarray) -> bytes:
    """A 48-bit (16 bits per channel) RGB PNG, which Pillow cannot write itself."""
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb16)
    return _png(rgb16.shape[1], rgb16.shape[0], 16, 2, zlib.compress(rows))


def png_bomb(side: int) -> bytes:
    """A valid side x side 8-bit greyscale PNG of zeros: ~1 MB on disk, side² bytes once decoded."""
    z = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    parts = [z.compress(row) for _ in range(side)]
    parts.append(z.flush())
    return _png(side, side, 8, 0, b"".join(parts))


def jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with its frame header (SOF0/SOF2) claiming ``width`` x ``height``."""
    data = bytearray(jpeg)
    i = 2
    while i < len(data) - 9:
        if data[i] != 0xFF:
            raise ValueError(f"no JPEG marker at byte {i}")
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5 : i + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        i += 2 + length
    raise ValueError("no frame header found")
