"""Hostile image files (``tests/helpers/hostile.py``) against ``load_image`` and ``leam explain``: each
either works, as a legitimate photo should (CMYK, 16-bit, palette, EXIF-rotated: the face is found
where it is in the upright photo), or fails with one line on stderr naming the problem, never a
traceback, a hang or a huge allocation."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from leam._io import text_name
from leam.cli.main import main
from leam.data.images import load_image
from leam.errors import ImageError
from leam.face import align_file
from leam.models.dlib_resnet import DLIB_TEMPLATE
from tests.helpers.hostile import GOOD, NAMES, NON_UTF8, Hostile, write_hostile_images

pytestmark = pytest.mark.reliability
PERSON = "Tony_Blair"  # every one of the first six photos shows one face to dlib's detector
# good files run through the whole command (all of them are checked with the face step alone)
EXPLAINED = ("cmyk-jpeg", "16bit-rgb-png", "animated-gif", "non-utf8-name", "exif-6", "mathtext-name")


@pytest.fixture(scope="module")
def faces(lfw_dir: Path) -> list[Path]:
    return sorted((lfw_dir / PERSON).iterdir())[:6]


@pytest.fixture(scope="module")
def hostile(faces: list[Path], tmp_path_factory) -> dict[str, Hostile]:
    cases = write_hostile_images(tmp_path_factory.mktemp("hostile"), faces)
    assert tuple(c.name for c in cases) == NAMES
    assert {c.name for c in cases if c.error is None} == set(GOOD)
    return {c.name: c for c in cases}


@pytest.fixture(scope="module")
def upright_landmarks(faces: list[Path]) -> np.ndarray:
    """The five landmarks found in faces[0] itself, (5, 2) x, y."""
    return align_file(faces[0], DLIB_TEMPLATE).face.landmarks


def explain(case: Hostile, reference: Path, out: Path, capsys, *options: str) -> tuple[int, str]:
    """``leam explain`` in this process (an uncaught exception fails the test with its traceback)."""
    capsys.readouterr()
    rc = main(["explain", str(case.path), "--reference", str(reference), "--layers", "stage2.block1",
               "--out", str(out), *options])
    return rc, capsys.readouterr().err


def assert_one_line_error(err: str, pattern: str) -> None:
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("leam: error: ") and re.search(pattern, err), err
    assert "Traceback" not in err


@pytest.mark.parametrize("name", NAMES)
def test_load_image(hostile, faces, name: str) -> None:
    case = hostile[name]
    if case.error and not case.face:
        with pytest.raises(ImageError, match=case.error) as info:
            load_image(case.path)
        assert "\n" not in str(info.value) and str(info.value).startswith(f"{text_name(str(case.path))}: ")
        return
    image = load_image(case.path)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    if case.same_as_first:  # upright, first frame: the photo itself, up to lossy re-encoding
        first = np.asarray(Image.open(faces[0]).convert("RGB"), dtype=np.float64)
        if name.startswith(("16bit-grey", "greyscale")):
            first = np.repeat(np.asarray(Image.open(faces[0]).convert("L"), np.float64)[..., None], 3, axis=2)
        assert image.shape == first.shape
        assert np.abs(image - first).mean() < 4.0, name


@pytest.mark.parametrize("name", [n for n in NAMES if n not in GOOD or n in EXPLAINED])
def test_explain(hostile, faces, tmp_path, capsys, name: str) -> None:
    """Every bad file, and a sample of the good ones (``test_face_found_upright`` checks them all)."""
    case = hostile[name]
    rc, err = explain(case, faces[1], tmp_path / "out", capsys)
    if case.error:
        assert rc == 1
        assert_one_line_error(err, case.error)
        assert not (tmp_path / "out").exists()  # nothing half-written
    else:
        assert rc == 0, err
        assert json.loads((tmp_path / "out" / "summary.json").read_text())["image"] == text_name(str(case.path))
    if case.largest:
        rc, err = explain(case, faces[1], tmp_path / "largest", capsys, "--largest-face")
        assert rc == 0, err


@pytest.mark.parametrize("name", GOOD)
def test_face_found_upright(hostile, upright_landmarks, name: str) -> None:
    """Legitimate variants of faces[0] (EXIF orientations, CMYK, 16-bit, palette, first frames...): the
    face is found where it is in the upright photo."""
    case = hostile[name]
    assert case.error is None and case.same_as_first
    landmarks = align_file(case.path, DLIB_TEMPLATE).face.landmarks
    np.testing.assert_allclose(landmarks, upright_landmarks, atol=3)  # pixels, in a 250 x 250 photo


@pytest.mark.parametrize("name", ["non-utf8-name", "mathtext-name", "script-name"])
def test_regions_with_hostile_names(hostile, faces, tmp_path, capsys, name: str) -> None:
    """``leam regions`` titles its figure with the file name: drawn as text, not parsed as mathtext."""
    capsys.readouterr()
    rc = main(["regions", str(hostile[name].path), "--reference", str(faces[1]), "--layers", "stem",
               "--out", str(tmp_path / "out")])
    assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "out" / "regions.png").is_file()


def test_hostile_files_as_references(hostile, faces, tmp_path, capsys) -> None:
    """A bad reference photo fails the same way as a bad photo to explain."""
    for name in ("truncated-jpeg", "symlink-loop", "bomb-jpeg-header", "no-face"):
        case = hostile[name]
        capsys.readouterr()
        rc = main(["explain", str(faces[0]), "--reference", str(faces[1]), str(case.path), "--layers", "stem",
                   "--out", str(tmp_path / name)])
        assert rc == 1
        assert_one_line_error(capsys.readouterr().err, case.error)


def test_bomb_is_refused_fast_without_allocating(hostile) -> None:
    """In a fresh process: refusing a 30,000 x 30,000 PNG (0.9 GB of pixels from ~1 MB) takes well under
    a second and leaves the peak memory where it was."""
    probe = (
        "import resource, sys, time\n"
        "from leam.data.images import load_image\n"
        "from leam.errors import ImageError\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "start = time.perf_counter()\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        load_image(path)\n"
        "    except ImageError as exc:\n"
        "        print(exc)\n"
        "grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
        "print(f'{time.perf_counter() - start:.3f} {grew}')\n"
    )
    paths = [hostile[n].path for n in ("bomb-png-30000", "bomb-jpeg-header", "over-limit-70mp")]
    r = subprocess.run([sys.executable, "-c", probe, *map(str, paths)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    *messages, timing = r.stdout.strip().splitlines()
    assert len(messages) == 3 and all(re.search(r"decompression bomb|exceeds the limit", m) for m in messages)
    seconds, grew_kib = timing.split()
    assert float(seconds) < 1.0
    assert int(grew_kib) < 50_000  # < 50 MB; decoding the PNG alone would need 900 MB


def test_first_frame_only(hostile, faces) -> None:
    """Multi-frame files are read at their first frame (documented in ``load_image``)."""
    gif = load_image(hostile["animated-gif"].path)
    with Image.open(hostile["animated-gif"].path) as im:
        assert im.n_frames == 3
        im.seek(0)
        np.testing.assert_array_equal(gif, np.asarray(im.convert("RGB")))
    with Image.open(hostile["multipage-tiff"].path) as im:
        assert im.n_frames == 3
    np.testing.assert_array_equal(load_image(hostile["multipage-tiff"].path), np.asarray(Image.open(faces[0])))


def test_real_command_with_hostile_names(hostile, faces, tmp_path) -> None:
    """The command in a subprocess: a non-UTF-8 photo name and output folder work; a symbolic link loop
    gives one line."""
    def leam(*args) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "leam.cli.main", *map(str, args)], capture_output=True,
                              timeout=300)

    out = tmp_path / NON_UTF8.replace(".jpg", "-out")
    r = leam("explain", hostile["non-utf8-name"].path, "--reference", faces[1], "--layers", "stem", "--out", out)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert (out / "summary.json").is_file()
    r = leam("explain", hostile["symlink-loop"].path, "--reference", faces[1], "--layers", "stem")
    assert r.returncode == 1
    assert_one_line_error(r.stderr.decode(), hostile["symlink-loop"].error)


def test_unwritable_output_gives_one_line(faces, tmp_path, capsys) -> None:
    """An output folder inside a file, and a full disk (files may not grow past 20 kB): one line each."""
    from tests.helpers.killable import run_leam

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    capsys.readouterr()
    rc = main(["explain", str(faces[0]), "--reference", str(faces[1]), "--layers", "stem",
               "--out", str(blocker / "out")])
    assert rc == 1
    assert_one_line_error(capsys.readouterr().err, r"a_file/out\S*: Not a directory")
    log = tmp_path / "log.txt"
    argv = ["explain", faces[0], "--reference", faces[1], "--layers", "stem", "--out", tmp_path / "full"]
    assert run_leam(argv, log, max_file_bytes=20_000) == 1
    assert_one_line_error(log.read_text(), r"File too large")
