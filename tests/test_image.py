"""load_image on files made on the spot: every kind either loads as (H, W, 3) uint8 RGB with the
right values or raises ImageError naming the file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from leam.data.images import load_image
from leam.errors import ImageError

EXIF_ORIENTATION = 0x0112


def check_rgb(a: np.ndarray, shape: tuple[int, int]) -> None:
    assert a.shape == (*shape, 3)
    assert a.dtype == np.uint8
    assert a.flags.writeable and a.flags.c_contiguous


def two_colour_rgb(h: int = 32, w: int = 64) -> np.ndarray:
    rgb = np.zeros((h, w, 3), dtype=np.uint8)
    rgb[:, : w // 2] = (200, 50, 20)
    rgb[:, w // 2 :] = (10, 120, 240)
    return rgb


def noise_jpeg_bytes(tmp_path) -> bytes:
    path = tmp_path / "noise_full.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    return path.read_bytes()


# ---------------------------------------------------------------------------------- readable images


def test_rgb_png_round_trip(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    path = tmp_path / "rgb.png"
    Image.fromarray(rgb).save(path)
    out = load_image(path)
    check_rgb(out, (7, 5))
    np.testing.assert_array_equal(out, rgb)
    np.testing.assert_array_equal(load_image(str(path)), rgb)  # a str path works too


def test_one_pixel_image(tmp_path):
    path = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (12, 34, 56)).save(path)
    out = load_image(path)
    check_rgb(out, (1, 1))
    assert out[0, 0].tolist() == [12, 34, 56]


def test_greyscale(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    path = tmp_path / "grey.png"
    Image.fromarray(grey, mode="L").save(path)
    out = load_image(path)
    check_rgb(out, (3, 4))
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))


def test_16bit_greyscale_png_is_scaled_to_8bit(tmp_path):
    values = np.array([[0, 257 * 100, 65535], [1000, 200, 30000]], dtype=np.uint16)
    path = tmp_path / "grey16.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")  # really stored and read as 16-bit
    out = load_image(path)
    check_rgb(out, (2, 3))
    # v / 257, rounded: 25700 -> 100, 65535 -> 255, 1000 -> 3.9 -> 4, 200 -> 0.8 -> 1, 30000 -> 116.7 -> 117
    np.testing.assert_array_equal(out[..., 0], [[0, 100, 255], [4, 1, 117]])
    assert (out == out[..., :1]).all()


def test_dark_16bit_greyscale_png_stays_dark(tmp_path):
    path = tmp_path / "dark16.png"
    Image.fromarray(np.array([[0, 100, 255]], dtype=np.uint16)).save(path)
    np.testing.assert_array_equal(load_image(path)[..., 0], [[0, 0, 1]])


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.array([[[200, 0, 0, 255], [200, 0, 0, 128], [200, 0, 0, 0]]], dtype=np.uint8)
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    out = load_image(path)
    check_rgb(out, (1, 3))
    assert out[0, 0].tolist() == [200, 0, 0]  # opaque
    assert out[0, 2].tolist() == [255, 255, 255]  # transparent -> the white background
    # half transparent: 200 * 128/255 + 255 * 127/255 = 227.4 and 255 * 127/255 = 127
    np.testing.assert_allclose(out[0, 1], [227, 127, 127], atol=1)


def test_greyscale_with_alpha(tmp_path):
    la = np.array([[[50, 255], [50, 0]]], dtype=np.uint8)
    path = tmp_path / "la.png"
    Image.fromarray(la, mode="LA").save(path)
    out = load_image(path)
    check_rgb(out, (1, 2))
    assert out[0].tolist() == [[50, 50, 50], [255, 255, 255]]


def test_palette_png_with_transparency(tmp_path):
    im = Image.new("P", (3, 2), 0)
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255])  # index 0 black (made transparent), 1 red, 2 blue
    im.putpixel((1, 0), 1)
    im.putpixel((2, 1), 2)
    path = tmp_path / "palette.png"
    im.save(path, transparency=0)
    assert Image.open(path).mode == "P"
    out = load_image(path)
    check_rgb(out, (2, 3))
    assert out[0, 1].tolist() == [255, 0, 0]
    assert out[1, 2].tolist() == [0, 0, 255]
    assert out[0, 0].tolist() == out[1, 1].tolist() == [255, 255, 255]  # transparent -> white, not black


def test_rgb_png_with_a_transparent_colour(tmp_path):
    rgb = np.array([[[0, 0, 0], [9, 8, 7]]], dtype=np.uint8)
    path = tmp_path / "rgb_trns.png"
    Image.fromarray(rgb).save(path, transparency=(0, 0, 0))
    assert load_image(path)[0].tolist() == [[255, 255, 255], [9, 8, 7]]


def test_cmyk_jpeg(tmp_path):
    rgb = two_colour_rgb()
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    out = load_image(path)
    check_rgb(out, (32, 64))
    np.testing.assert_allclose(out[16, 8], (200, 50, 20), atol=3)
    np.testing.assert_allclose(out[16, 56], (10, 120, 240), atol=3)


def test_multi_frame_gif_gives_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 6), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(path).n_frames == 3
    out = load_image(path)
    check_rgb(out, (6, 8))
    assert (out == [255, 0, 0]).all()


@pytest.mark.parametrize(
    ("orientation", "upright"),
    [
        (1, lambda a: a),
        (2, np.fliplr),
        (3, lambda a: np.rot90(a, 2)),
        (4, np.flipud),
        (5, lambda a: a.transpose(1, 0, 2)),
        (6, lambda a: np.rot90(a, -1)),  # the camera was turned: rotate 90 degrees clockwise to view
        (7, lambda a: np.rot90(a, 2).transpose(1, 0, 2)),
        (8, lambda a: np.rot90(a, 1)),  # rotate 90 degrees counter-clockwise to view
    ],
)
def test_exif_orientation_is_applied(tmp_path, orientation, upright):
    stored = np.random.default_rng(orientation).integers(0, 256, (2, 3, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    path = tmp_path / f"orient{orientation}.png"  # PNG keeps EXIF and is lossless
    Image.fromarray(stored).save(path, exif=exif)
    np.testing.assert_array_equal(load_image(path), upright(stored))


def test_pixel_limit(tmp_path):
    path = tmp_path / "hundred.png"
    Image.new("RGB", (100, 80), (1, 2, 3)).save(path)
    check_rgb(load_image(path, max_pixels=8000), (80, 100))
    with pytest.raises(ImageError, match=r"hundred.png: 100x80 pixels exceeds the limit of 7,999"):
        load_image(path, max_pixels=7999)


# ------------------------------------------------------------------------------------ unreadable files


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="not_here.jpg: no such file"):
        load_image(tmp_path / "not_here.jpg")


def test_folder_is_not_a_photo(tmp_path):
    folder = tmp_path / "photos.jpg"
    folder.mkdir()
    with pytest.raises(ImageError, match="photos.jpg"):
        load_image(folder)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="empty.jpg: empty file"):
        load_image(path)


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels\n")
    with pytest.raises(ImageError, match="notes.jpg: not an image file"):
        load_image(path)


def test_truncated_jpeg(tmp_path):
    data = noise_jpeg_bytes(tmp_path)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.jpg: unreadable or truncated image"):
        load_image(path)


def test_jpeg_header_only(tmp_path):
    path = tmp_path / "header.jpg"
    path.write_bytes(noise_jpeg_bytes(tmp_path)[:4])
    with pytest.raises(ImageError, match="header.jpg"):
        load_image(path)


def test_truncated_png(tmp_path):
    full = tmp_path / "full.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(full)
    data = full.read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.png: unreadable or truncated image"):
        load_image(path)


def test_png_with_a_corrupt_chunk(tmp_path):
    full = tmp_path / "full.png"
    Image.fromarray(two_colour_rgb()).save(full)
    data = bytearray(full.read_bytes())
    at = data.index(b"IDAT") + 10
    data[at : at + 8] = b"\x00" * 8  # compressed pixel data (and its CRC check) broken
    path = tmp_path / "corrupt.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="corrupt.png"):
        load_image(path)
