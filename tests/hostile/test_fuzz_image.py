"""Fuzzing ``load_image`` with mutated real files (hypothesis, derandomised: the same examples on every
run): it returns an (H, W, 3) uint8 image or raises leam's ``ImageError``, nothing else, each call
within a deadline, and the process's peak memory stays bounded."""

from __future__ import annotations

import io
import resource
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from leam.data.images import load_image
from leam.errors import LeamError

pytestmark = pytest.mark.reliability
EXIF_ORIENTATION = 0x0112


def seed_files(face: np.ndarray) -> dict[str, bytes]:
    """Small real files of every format leam reads often, from a 48 x 48 face crop."""
    im = Image.fromarray(face)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6

    def saved(image: Image.Image, fmt: str, **kw) -> bytes:
        buf = io.BytesIO()
        image.save(buf, fmt, **kw)
        return buf.getvalue()

    return {
        "jpeg-exif": saved(im, "JPEG", quality=90, exif=exif),
        "jpeg-progressive": saved(im, "JPEG", quality=80, progressive=True),
        "png": saved(im, "PNG"),
        "png-palette-trns": saved(im.quantize(64), "PNG", transparency=0),
        "png-16bit-grey": saved(Image.fromarray(np.asarray(im.convert("L")).astype(np.uint16) * 257), "PNG"),
        "gif-2-frames": saved(im, "GIF", save_all=True, append_images=[im.rotate(90)]),
        "tiff": saved(im, "TIFF", compression="tiff_deflate"),
        "bmp": saved(im, "BMP"),
        "webp": saved(im, "WEBP", quality=80),
    }


SEEDS = ("jpeg-exif", "jpeg-progressive", "png", "png-palette-trns", "png-16bit-grey", "gif-2-frames", "tiff", "bmp",
         "webp")
FOUR_BYTES = (b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00", b"\x00\x00\xff\xff")
# (operation, where: a fraction of the file, or of its first 64 bytes for "header", what)
MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(0, 7)),
    st.tuples(st.just("header"), st.floats(0, 1), st.integers(0, 255)),  # sizes and lengths live there
    st.tuples(st.just("set"), st.floats(0, 1), st.sampled_from(FOUR_BYTES)),
    st.tuples(st.just("cut"), st.floats(0, 1), st.integers(1, 64)),
    st.tuples(st.just("truncate"), st.floats(0, 1), st.none()),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=32)),
    st.tuples(st.just("repeat"), st.floats(0, 1), st.integers(2, 8)),
)


def mutate(seed: bytes, mutations: list[tuple]) -> bytes:
    data = bytearray(seed)
    for op, where, what in mutations:
        if not data:
            break
        at = min(int(where * len(data)), len(data) - 1)
        if op == "flip":
            data[at] ^= 1 << what
        elif op == "header":
            data[min(int(where * 64), len(data) - 1)] = what
        elif op == "set":
            data[at : at + 4] = what
        elif op == "cut":
            del data[at : at + what]
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = what
        else:
            data[at:at] = data[at : at + 64] * what
    return bytes(data)


@pytest.fixture(scope="module")
def seeds(lfw_dir: Path) -> dict[str, bytes]:
    photo = np.asarray(Image.open(sorted((lfw_dir / "Tony_Blair").iterdir())[0]).convert("RGB"))
    return seed_files(np.ascontiguousarray(photo[80:128, 100:148]))


def test_seed_files_load(seeds, tmp_path) -> None:
    assert tuple(seeds) == SEEDS
    for name, data in seeds.items():
        path = tmp_path / f"{name}.img"
        path.write_bytes(data)
        image = load_image(path)
        assert image.shape[2] == 3 and image.dtype == np.uint8 and min(image.shape[:2]) == 48, name


def test_mutated_files_load_or_raise_image_error(seeds, tmp_path_factory) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    outcomes = {"loaded": 0, "refused": 0}

    @settings(max_examples=200, derandomize=True, deadline=2000, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(seed=st.sampled_from(SEEDS), mutations=st.lists(MUTATION, min_size=1, max_size=6))
    def check(seed: str, mutations: list[tuple]) -> None:
        path = folder / "fuzzed.img"
        path.write_bytes(mutate(seeds[seed], mutations))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # nothing but one line either: no warning escapes
                image = load_image(path)
        except LeamError as exc:  # ImageError, in one line naming the file
            assert "fuzzed.img" in str(exc) and "\n" not in str(exc)
            outcomes["refused"] += 1
            return
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
        assert image.shape[0] * image.shape[1] <= 60_000_000
        outcomes["loaded"] += 1

    check()
    grew_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grew_mib < 400, f"peak memory grew by {grew_mib:.0f} MiB"
    assert outcomes["loaded"] > 10 and outcomes["refused"] > 10, outcomes  # the mutations hit both ways
