"""Model files whose input size is left open or whose output is no usable embedding, TorchScript files and
slow models, through the ``leam`` command (``explain``, ``embed --json``, ``verify NAME=PATH``) and the Python
API: each is refused at load time in one line naming the file, or works and gives what the plain tiny
embedder gives (tests/helpers/onnx_files.py's ``shaped_models`` compute the same Conv→GAP as it, then differ)."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from leam.errors import LeamError
from leam.models import _probe, from_module, load_model_file
from leam.models.external import SlowModelWarning
from tests.helpers.onnx_files import tiny_model, write_shaped_models
from tests.hostile.test_model_files import assert_one_line_error, leam
from tests.study.conftest import linked_people

pytestmark = pytest.mark.reliability

REFUSED = {  # case: what its one line says (after the file's path)
    "dynamic-size-fixed-inside": r"fails on a \(1, 3, 112, 112\) input: RuntimeError: mat1 and mat2 .* leaves its "
                                 r"image size open .* 112x112: is it made for another size\?",
    "fixed-height-96": r"takes 96x\? images, but preset 'arcface' gives 112x112",
    "rank-3": r"returns shapes \(1, 1, 4\) and \(2, 1, 4\) .* expected embeddings \(N, D\) \(a Flatten at its end "
              r"would turn \(2, 1, 4\) into \(2, 4\)\)",
    "feature-map": r"returns shapes \(1, 4, 1, 1\) and \(2, 4, 1, 1\) .*\(a Flatten at its end",
    "integer": r"returns int64 embeddings, expected floating point",
    "size-1": r"returns embeddings of size 1 \(N, 1\): .* expected \(N, D\) with D ≥ 2",
    "constant": r"gives the same embedding for two different images: its output does not depend on its input",
    "batch-mixing": r"gives an image another embedding in a batch of two than alone",
    "nan": r"gives a non-finite embedding \(NaN or Inf\) for random image 1, random image 2",
}
WORKS = ["dynamic-size", "no-input-shape", "float64", "reshape-batch-one"]  # all equal to the plain tiny embedder


@pytest.fixture(scope="module")
def shaped(tmp_path_factory) -> dict[str, Path]:
    import onnx

    paths = write_shaped_models(tmp_path_factory.mktemp("shaped"))
    paths["plain"] = paths["dynamic-size"].parent / "plain.onnx"
    onnx.save(tiny_model(), str(paths["plain"]))
    return paths


@pytest.fixture(scope="module")
def photos(lfw_dir: Path) -> list[Path]:
    return sorted((lfw_dir / "Tony_Blair").iterdir())[:2]


@pytest.fixture(scope="module")
def chips() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)


def test_every_case_is_judged(shaped) -> None:
    assert set(shaped) == set(REFUSED) | set(WORKS) | {"plain"}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_in_one_line_by_the_command(capsys, shaped, photos, tmp_path, case) -> None:
    rc, out, err = leam(capsys, "explain", photos[0], "--reference", photos[1], "--model-file", shaped[case],
                        "--out", tmp_path / "out")
    assert rc == 1 and out == ""
    name = shaped[case].name if case == "nan" else str(shaped[case])  # NaN: the model by its file's name
    assert_one_line_error(err, REFUSED[case], name.replace(".", r"\."))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_by_load_model_file(shaped, case) -> None:
    with pytest.raises(LeamError, match=REFUSED[case]) as info:
        load_model_file(shaped[case])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("case", WORKS)
def test_works_as_the_plain_embedder(shaped, chips, case) -> None:
    model, plain = load_model_file(shaped[case]), load_model_file(shaped["plain"])
    got = model.embed(chips)
    assert got.dtype == np.float32 and model.spec.embedding_size == 4
    np.testing.assert_allclose(got, plain.embed(chips), rtol=1e-6, atol=1e-7)
    assert model.net.one_at_a_time == (case == "reshape-batch-one")  # a batch of one, run image by image


@pytest.mark.parametrize("case", WORKS)
def test_works_through_explain_with_maps(capsys, shaped, photos, tmp_path, case) -> None:
    summaries = {}
    for which in (case, "plain"):
        rc, _, err = leam(capsys, "explain", photos[0], "--reference", photos[1], "--model-file", shaped[which],
                          "--out", tmp_path / which)
        assert rc == 0, err
        summaries[which] = json.loads((tmp_path / which / "summary.json").read_text())
        with np.load(tmp_path / which / "maps.npz") as maps:
            assert maps["conv"].max() == 1 and maps["conv"].min() == 0  # a map, not a blank (pool's is 1x1)
    assert summaries[case]["cosine_similarity"] == pytest.approx(summaries["plain"]["cosine_similarity"], abs=1e-6)


def test_embed_json_of_a_batch_one_graph(capsys, shaped, photos) -> None:
    results = {}
    for which in ("reshape-batch-one", "plain"):
        rc, out, err = leam(capsys, "embed", *photos, "--model-file", shaped[which], "--json")
        assert rc == 0, err
        results[which] = np.array([row["embedding"] for row in json.loads(out)])
    assert results["plain"].shape == (2, 4)
    np.testing.assert_allclose(results["reshape-batch-one"], results["plain"], rtol=1e-6, atol=1e-7)


def test_verify_takes_a_working_file_and_refuses_a_constant_one(shaped, tmp_path) -> None:
    from tests.hostile.test_study_options import leam as leam_run

    (tmp_path / "data").mkdir()
    data = linked_people(tmp_path / "data", 2)
    rc, _, err = leam_run(["verify", data, "--model", f"mine={shaped['no-input-shape']}", "--pairs", "2",
                           "--out", tmp_path / "ok"])
    assert rc == 0, err
    assert json.loads((tmp_path / "ok" / "summary.json").read_text())
    rc, out, err = leam_run(["verify", data, "--model", f"mine={shaped['constant']}", "--pairs", "2",
                             "--out", tmp_path / "refused"])
    assert rc == 1 and "does not depend on its input" in err and err.count("\n") == 1
    assert not (tmp_path / "refused").exists()


# ------------------------------------------------------------------------------ TorchScript


class Scripted(nn.Module):
    """What a user scripts: conv, batch norm, ReLU, mean pooling, linear, L2 normalisation."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn, self.conv2 = nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.Conv2d(8, 16, 3, 2, 1)
        self.fc = nn.Linear(16, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv2(F.relu(self.bn(self.conv1(x)))))
        return F.normalize(self.fc(x.mean(dim=(2, 3))), dim=1)


class Branchy(Scripted):
    """Control flow on the input: scripted, it becomes an ONNX If."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.mean() > 0):
            x = x * 2.0
        x = F.relu(self.conv2(F.relu(self.bn(self.conv1(x)))))
        return F.normalize(self.fc(x.mean(dim=(2, 3))), dim=1)


def scripted_file(folder: Path, cls: type[nn.Module]) -> tuple[nn.Module, Path]:
    torch.manual_seed(0)
    net = cls().eval()
    path = folder / f"{cls.__name__.lower()}.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch >= 2.10 deprecates TorchScript
        torch.jit.save(torch.jit.script(net), str(path))
    return net, path


def test_a_scripted_module_gives_its_embeddings_and_maps(capsys, photos, chips, tmp_path) -> None:
    net, path = scripted_file(tmp_path, Scripted)  # F.normalize: Clip with an omitted max, which onnx2torch needs fixed
    model = load_model_file(path)
    x = torch.from_numpy(chips).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        expected = net((x - 127.5) / 127.5).numpy()
    np.testing.assert_allclose(model.embed(chips), expected, atol=1e-5)
    rc, _, err = leam(capsys, "explain", photos[0], "--reference", photos[1], "--model-file", path,
                      "--out", tmp_path / "out")
    assert rc == 0, err
    with np.load(tmp_path / "out" / "maps.npz") as maps:
        layers = [k for k in maps.files if not k.startswith("raw/") and k != "aggregate"]
        assert layers and all(maps[f"raw/{k}"].max() > 0 for k in layers)


def test_a_scripted_module_with_control_flow_is_refused_in_one_line(capsys, photos, tmp_path) -> None:
    _, path = scripted_file(tmp_path, Branchy)
    rc, _, err = leam(capsys, "embed", photos[0], "--model-file", path)
    assert rc == 1
    assert_one_line_error(err, r"onnx2torch cannot convert branchy\.pt: .*'If'.* control flow .* torch\.jit\.trace")


# ------------------------------------------------------------------------------ slow models, interrupts


class Sleepy(nn.Module):
    """A tiny embedder that takes ``seconds`` per forward, and counts its forwards."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.fc = nn.Conv2d(3, 4, 3, 4), nn.Linear(4, 8)
        self.seconds, self.calls = seconds, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        time.sleep(self.seconds)
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def test_a_slow_model_is_said_to_be_slow(monkeypatch) -> None:
    monkeypatch.setattr(_probe, "SLOW_SECONDS", 0.05)
    with pytest.warns(SlowModelWarning, match=r"model Sleepy takes 0\.[1-9] s per image on cpu .* Ctrl-C"):
        from_module(Sleepy(0.2))  # a batch of 2 in 0.2 s: 0.1 s per image
    with warnings.catch_warnings():
        warnings.simplefilter("error", SlowModelWarning)
        model = from_module(Sleepy(0.0))  # quick: not a word
    assert model.net.source_model.calls == 2  # one image, then a batch of two: all the load costs


def test_the_command_says_it_in_one_line(capsys, monkeypatch, shaped, photos) -> None:
    monkeypatch.setattr(_probe, "SLOW_SECONDS", 0.0)
    rc, out, err = leam(capsys, "embed", photos[0], "--model-file", shaped["plain"], "--json")
    assert rc == 0 and len(json.loads(out)) == 1
    lines = [line for line in err.splitlines() if "per image" in line]
    assert len(lines) == 1 and lines[0].startswith(f"leam: warning: model file {shaped['plain']} takes "), err


class Interrupted(Sleepy):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise KeyboardInterrupt


def test_an_interrupt_while_loading_passes_through_and_leaves_the_module_as_it_was() -> None:
    net = Interrupted(0.0).train()
    with pytest.raises(KeyboardInterrupt):  # not a ModelError: the command exits with 130
        from_module(net)
    assert net.training and all(p.requires_grad for p in net.parameters())
    assert not any(m._forward_hooks for m in net.modules())
