"""Protected photos are written like their originals: format, upright size, metadata kept and dropped."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms, PngImagePlugin

from leam.data.images import load_image
from leam.errors import ImageError
from leam.protect.save import encode_like, save_like


def _pixels(h: int = 40, w: int = 60) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3)).astype(np.uint8)


def _srgb() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def test_png_is_lossless_and_keeps_text_icc_and_dpi(tmp_path: Path):
    src = tmp_path / "in.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "someone")
    info.add_itxt("Title", "Zoë <b>")
    Image.fromarray(_pixels()).save(src, pnginfo=info, icc_profile=_srgb(), dpi=(300, 300))
    changed = _pixels()[::-1].copy()
    out = save_like(src, changed, tmp_path / "out.png")
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (60, 40)
        assert im.text == {"Author": "someone", "Title": "Zoë <b>"}
        assert im.info["icc_profile"] == _srgb()
        assert tuple(round(v) for v in im.info["dpi"]) == (300, 300)
    np.testing.assert_array_equal(load_image(out), changed)
    assert out.stat().st_mode & 0o044  # readable by others, as any photo the user writes


def test_jpeg_is_stored_upright_with_orientation_1_and_no_maker_note(tmp_path: Path):
    src = tmp_path / "in.jpg"
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # rotated: shown 90° clockwise
    exif[ExifTags.Base.Make] = "Cam"
    exif[ExifTags.IFD.Exif] = {ExifTags.Base.MakerNote: b"preview of the face", ExifTags.Base.DateTimeOriginal:
                               "2020:01:02 03:04:05"}
    Image.fromarray(_pixels(40, 60)).save(src, quality=95, exif=exif.tobytes(), icc_profile=_srgb())
    upright = load_image(src)
    assert upright.shape == (60, 40, 3)  # as shown
    out = save_like(src, upright, tmp_path / "out.jpg")
    with Image.open(out) as im:
        assert im.format == "JPEG" and im.size == (40, 60)
        saved = im.getexif()
        assert saved[ExifTags.Base.Orientation] == 1 and saved[ExifTags.Base.Make] == "Cam"
        sub = saved.get_ifd(ExifTags.IFD.Exif)
        assert sub[ExifTags.Base.DateTimeOriginal] == "2020:01:02 03:04:05"
        assert ExifTags.Base.MakerNote not in sub
        assert im.info["icc_profile"] == _srgb()
    again = load_image(out).astype(int)
    assert np.abs(again - upright).mean() < 8  # quality 95, 4:4:4: close (random pixels are JPEG's worst case)


def test_exif_thumbnail_is_dropped(raw_photos_dir: Path, tmp_path: Path):
    src = raw_photos_dir / "img1.jpg"
    with Image.open(src) as im:
        assert im.getexif().get_ifd(ExifTags.IFD.IFD1), "the test needs a photo with an EXIF thumbnail"
    data = encode_like(src, load_image(src))
    with Image.open(io.BytesIO(data)) as im:
        assert not im.getexif().get_ifd(ExifTags.IFD.IFD1)


def test_refuses_unsupported_formats_and_overwriting_the_original(tmp_path: Path):
    gif = tmp_path / "in.gif"
    Image.fromarray(_pixels()).convert("P").save(gif)
    with pytest.raises(ImageError, match="writes JPEG, PNG, TIFF, BMP, WEBP photos, not GIF"):
        encode_like(gif, _pixels())
    png = tmp_path / "in.png"
    Image.fromarray(_pixels()).save(png)
    with pytest.raises(ImageError, match="refusing to write a protected photo over its original"):
        save_like(png, _pixels(), png)
    with pytest.raises(ValueError, match=r"expected \(H, W, 3\) uint8"):
        encode_like(png, _pixels().astype(np.float32))
