"""Models a user brings: ONNX files (onnx2torch), TorchScript files, nn.Modules; and the CLI with them.

A seeded random IResNet-18 is exported the way insightface ships its ONNX models (normalised RGB
input) and must come back with the same embeddings as the original and as onnxruntime, and with the
same LEAM maps at the residual blocks.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import warnings
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from leam.cli.main import main
from leam.errors import ModelError
from leam.maps import LEAM, layer_shapes
from leam.models import PRESETS, from_module, load_model_file
from leam.models._onnx import onnx_missing
from leam.models.external import probe, spread_layers
from tests.conftest import SHARED_DATA
from tests.helpers.iresnet import export_onnx, random_iresnet, without_input_norm
from tests.models.test_iresnet import WritesAFile

TOL = 1e-4
DEMO = SHARED_DATA / "lfw-demo"
needs_onnx = pytest.mark.skipif(onnx_missing() is not None, reason=str(onnx_missing()))
needs_demo = pytest.mark.skipif(not DEMO.is_dir(), reason=f"shared photos not found at {DEMO}")
# the residual blocks of IResNet-18 and the onnx2torch modules (ONNX Add nodes) that compute them
BLOCKS = {f"layer{i}.{j}": f"layer{i}/layer{i}/{j}/Add" for i in range(1, 5) for j in range(2)}


@pytest.fixture(scope="module")
def net():
    return random_iresnet(18, seed=1)


@pytest.fixture(scope="module")
def chips() -> np.ndarray:
    return np.random.default_rng(11).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def expected(net, chips) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(chips).permute(0, 3, 1, 2).float()).numpy()


@pytest.fixture(scope="module")
def onnx_file(net, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "r18.onnx"
    export_onnx(net, path)
    return path


@pytest.fixture(scope="module")
def onnx_model(onnx_file):
    if onnx_missing():
        pytest.skip(onnx_missing())
    return load_model_file(onnx_file, "arcface")


def leam_maps(net: nn.Module, layers, chips: np.ndarray):
    x = torch.from_numpy(chips).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        ref = net(x[1:2])[0]
    return LEAM(net, list(layers))(x[:1], ref)


# ------------------------------------------------------------------------------ default layers


def test_spread_layers():
    names = [f"l{i}" for i in range(20)]
    assert spread_layers(names, 9) == ["l0", "l2", "l5", "l7", "l10", "l12", "l14", "l17", "l19"]
    assert spread_layers(names, 2) == ["l0", "l19"]
    assert spread_layers(names[:5], 9) == names[:5]
    assert spread_layers(names, 1) == ["l19"]


def test_probe_leaves_out_aliases_and_reused_modules():
    relu = nn.ReLU()
    net = nn.Sequential(OrderedDict(
        conv=nn.Conv2d(3, 4, 3),
        block=nn.Sequential(OrderedDict(a=relu, conv=nn.Conv2d(4, 4, 3), b=relu)),  # block returns its b's tensor
        pool=nn.AdaptiveAvgPool2d(1),
        flat=nn.Flatten(),
        fc=nn.Linear(4, 5),
    ))
    layers, out_shape = probe(net, (8, 8))
    assert layers == ["conv", "block.conv", "pool"]  # relu runs twice; "block" returns relu's output
    assert out_shape == (1, 5)


# ------------------------------------------------------------------------------ ONNX


@needs_onnx
def test_onnx_matches_the_original(onnx_model, chips, expected, record_property):
    got = onnx_model.embed(chips)
    err = float(np.abs(got - expected).max())
    record_property("max_abs_diff_onnx2torch_vs_torch", err)
    assert got.shape == (3, 512)
    assert err < TOL, err


@needs_onnx
def test_onnx_matches_onnxruntime(onnx_model, onnx_file, chips):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    normalised = (chips.transpose(0, 3, 1, 2).astype(np.float32) - 127.5) / 127.5
    (reference,) = session.run(None, {"input": normalised})
    assert np.abs(onnx_model.embed(chips) - reference).max() < TOL


@needs_onnx
def test_onnx_spec_and_layers(onnx_model):
    spec = onnx_model.spec
    assert (spec.name, spec.input_size, spec.embedding_size, spec.color_order) == ("r18.onnx", (112, 112), 512, "RGB")
    assert onnx_model.extra == {"kind": "ONNX model", "preset": "arcface"}
    shapes = dict(layer_shapes(onnx_model.net, (112, 112)))
    assert shapes["conv1/Conv"] == (64, 112, 112)
    assert [shapes[b] for b in BLOCKS.values()] == [
        (64, 56, 56), (64, 56, 56), (128, 28, 28), (128, 28, 28), (256, 14, 14), (256, 14, 14), (512, 7, 7), (512, 7, 7)
    ]
    defaults = spec.default_layers
    assert len(set(defaults)) == 9 and defaults[0] == "conv1/Conv"
    assert shapes[defaults[-1]][1:] == (7, 7)


@needs_onnx
def test_onnx_leam_maps_equal_the_originals(onnx_model, net, chips):
    ours = leam_maps(net, BLOCKS, chips)
    theirs = leam_maps(onnx_model.net, BLOCKS.values(), chips)
    for block, node in BLOCKS.items():
        assert ours.raw[block].max() > 0, block
        np.testing.assert_allclose(theirs.maps[node], ours.maps[block], atol=TOL, err_msg=block)


@needs_onnx
def test_onnx_default_layers_get_gradients(onnx_model, chips):
    result = leam_maps(onnx_model.net, onnx_model.spec.default_layers, chips)
    for name in onnx_model.spec.default_layers:
        assert result.raw[name].max() > 0, name


@needs_onnx
def test_onnx_exported_for_batch_one(net, chips, expected, tmp_path):
    path = tmp_path / "b1.onnx"
    export_onnx(net, path, batch_dim=False)
    model = load_model_file(path, "arcface")
    assert model.net.one_at_a_time
    assert np.abs(model.embed(chips) - expected).max() < TOL


class SelfNormalising(nn.Module):
    """A graph that scales [0, 255] input itself with Sub and Mul nodes, as some insightface files do."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = without_input_norm(net)  # shares net's modules: export it in eval mode, or the
        # exporter's restoring of the mode would leave them training (and updating batch-norm statistics)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - 127.5) * (1 / 127.5))


@needs_onnx
def test_preset_chosen_as_insightface_does(net, onnx_file, chips, expected, tmp_path):
    assert load_model_file(onnx_file).extra["preset"] == "arcface"
    path = tmp_path / "self_normalising.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(SelfNormalising(net).eval(), (torch.zeros(1, 3, 112, 112),), str(path), dynamo=False,
                          opset_version=17, input_names=["input"], dynamic_axes={"input": {0: "batch"}})
    model = load_model_file(path)
    assert model.extra["preset"] == "arcface-raw"
    assert np.abs(model.embed(chips) - expected).max() < TOL


@needs_onnx
def test_onnx_input_size_must_fit_the_preset(onnx_file):
    small = replace(PRESETS["arcface"], name="small", input_size=(96, 96))
    with pytest.raises(ModelError, match=r"r18\.onnx takes 112x112 images, but preset 'small' gives 96x96"):
        load_model_file(onnx_file, small)


@needs_onnx
def test_onnx2torch_import_leaves_no_torchvision_behind():
    assert "onnx2torch" in sys.modules and "torchvision" not in sys.modules


def test_missing_onnx_packages_are_named(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx2torch" else real(name, *a))
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\x08\x07")
    with pytest.raises(ModelError, match=r"needs onnx2torch: pip install .*--no-deps 'onnx2torch>=1\.5'"):
        load_model_file(path)


@needs_onnx
def test_not_an_onnx_file(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\xff\xfe not protobuf")
    with pytest.raises(ModelError, match="junk.onnx is not an ONNX model"):
        load_model_file(path)


# ------------------------------------------------------------------------------ TorchScript, modules


@needs_onnx
def test_torchscript_round_trip(net, chips, expected, tmp_path):
    path = tmp_path / "r18.pt"
    x = torch.zeros(1, 3, 112, 112)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript; users still have it
        torch.jit.save(torch.jit.trace(without_input_norm(net), x, check_trace=False), str(path))
    model = load_model_file(path, "arcface")
    assert model.extra["kind"] == "TorchScript model"
    assert np.abs(model.embed(chips) - expected).max() < TOL
    result = leam_maps(model.net, model.spec.default_layers, chips)
    assert all(result.raw[n].max() > 0 for n in model.spec.default_layers)


def test_from_module_keeps_the_modules_names(net, chips, expected):
    model = from_module(without_input_norm(net), "arcface", name="mine")
    assert model.spec.name == "mine" and model.spec.embedding_size == 512
    assert np.abs(model.embed(chips) - expected).max() < TOL
    names = dict(model.net.named_modules())
    assert names["layer2.1"] is net.layer2[1]
    ours, theirs = leam_maps(net, BLOCKS, chips), leam_maps(model.net, BLOCKS, chips)
    for block in BLOCKS:
        np.testing.assert_allclose(theirs.maps[block], ours.maps[block], atol=TOL)


def test_from_module_leaves_the_modules_mode_alone(chips):
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten()).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    model = from_module(net)
    model.embed(chips)
    assert all(m.training for m in net.modules())
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # no batch-norm updates


def test_bgr_preset_swaps_channels(net, chips, expected):
    model = from_module(without_input_norm(net), "arcface-bgr")
    assert np.abs(model.embed(np.ascontiguousarray(chips[..., ::-1])) - expected).max() < TOL


def test_from_module_checks_the_output():
    with pytest.raises(ModelError, match=r"returns shapes \(1, 4, 110, 110\) and .* expected embeddings \(N, D\)"):
        from_module(nn.Conv2d(3, 4, 3))
    with pytest.raises(ModelError, match="unknown preset 'vgg'; presets: arcface, arcface-raw, arcface-bgr"):
        from_module(nn.Conv2d(3, 4, 3), "vgg")


# ------------------------------------------------------------------------------ refused files


def test_state_dict_is_not_a_model_file(net, tmp_path):
    path = tmp_path / "backbone.pth"
    torch.save(net.state_dict(), path)
    with pytest.raises(ModelError, match=r"is a state dict .*; use --model iresnet18 --weights .*backbone\.pth"):
        load_model_file(path)


def test_pickled_payload_model_file_is_refused_unrun(tmp_path):
    marker = tmp_path / "was-unpickled.txt"
    path = tmp_path / "model.pth"
    torch.save(WritesAFile(marker), path)
    with pytest.raises(ModelError, match="refused to unpickle"):
        load_model_file(path)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["notes.txt", "missing.onnx"])
def test_other_files(tmp_path, name):
    path = tmp_path / name
    if name.endswith(".txt"):
        path.write_text("hello")
    with pytest.raises(ModelError, match="not a model file|model file not found"):
        load_model_file(path)


# ------------------------------------------------------------------------------ the CLI


def test_cli_option_conflicts(capsys, tmp_path):
    assert main(["layers", "--model-file", str(tmp_path / "x.onnx"), "--weights", "w.pth"]) == 1
    assert "--weights goes with --model" in capsys.readouterr().err
    assert main(["layers", "--model", "iresnet18", "--preset", "arcface"]) == 1
    assert "--preset goes with --model-file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["layers", "--model", "dlib-resnet", "--model-file", "x.onnx"])


@needs_onnx
def test_cli_layers_and_embed(onnx_file, capsys):
    assert main(["layers", "--model-file", str(onnx_file), "--preset", "arcface"]) == 0
    out = capsys.readouterr().out
    assert "* conv1/Conv" in out and "layer4/layer4/1/Add" in out and "512 x 7 x 7" in out


@needs_onnx
@needs_demo
def test_cli_explain_with_an_onnx_file(onnx_file, tmp_path):
    person = sorted(p for p in DEMO.iterdir() if p.is_dir())[0]
    a, b = sorted(person.iterdir())[:2]
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "leam.cli.main", "explain", str(a), "--reference", str(b),
         "--model-file", str(onnx_file), "--preset", "arcface", "--out", str(out)],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "r18.onnx" and len(summary["layers"]) == 9
    assert summary["warp_photo_to_chip"]["size"] == [112, 112]
    with np.load(out / "maps.npz") as maps:
        assert maps["aggregate"].shape == (112, 112)
    for name in summary["layers"]:
        assert (out / summary["files"][f"overlay:{name}"]).is_file()
    assert "/" not in summary["files"]["overlay:conv1/Conv"].removeprefix("layers/")



@needs_onnx
@needs_demo
def test_cli_embed_with_an_onnx_file(onnx_file, capsys):
    photo = sorted(sorted(p for p in DEMO.iterdir() if p.is_dir())[0].iterdir())[0]
    assert main(["embed", str(photo), "--model-file", str(onnx_file), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)[0]["embedding"]) == 512


# ------------------------------------------------------------------------------ external data


@needs_onnx
def test_onnx_with_external_data_equals_the_inline_file(onnx_file, onnx_model, chips, tmp_path):
    """The IResNet-18 file re-saved with every tensor in one weights file beside it (as onnx saves models
    over 2 GB) gives exactly the inline file's embeddings."""
    import onnx

    path = tmp_path / "r18.onnx"
    onnx.save_model(onnx.load(str(onnx_file)), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="r18.onnx.data", size_threshold=0)
    assert path.stat().st_size < 100_000 < (tmp_path / "r18.onnx.data").stat().st_size
    model = load_model_file(path, "arcface")
    np.testing.assert_array_equal(model.embed(chips), onnx_model.embed(chips))


@needs_onnx
def test_all_tensors_reaches_every_kind_of_tensor():
    from onnx import TensorProto, helper, numpy_helper

    from leam.models._onnx_data import all_tensors

    def t(name):
        return numpy_helper.from_array(np.zeros(2, np.float32), name)

    sparse = lambda v: helper.make_sparse_tensor(t(v), numpy_helper.from_array(np.array([0, 1]), v + "i"), [4])  # noqa: E731
    inner = helper.make_graph([helper.make_node("Constant", [], ["k"], value=t("in_subgraph"))], "g", [], [])
    node = helper.make_node("If", ["c"], ["o"], then_branch=inner, else_branch=inner)
    node.attribute.extend([helper.make_attribute("ts", [t("attr_list")]),
                           helper.make_attribute("sp", sparse("attr_sparse"))])
    graph = helper.make_graph([node, helper.make_node("Constant", [], ["z"], value=t("attr"))], "m", [], [],
                              [t("init")], sparse_initializer=[sparse("sparse_init")])
    model = helper.make_model(graph)
    function = helper.make_function("f", "fn", [], ["k"], [helper.make_node("Constant", [], ["k"], value=t("in_fn"))],
                                    [helper.make_opsetid("", 17)])
    model.functions.append(function)
    model.training_info.add().initialization.CopyFrom(helper.make_graph([], "i", [], [], [t("training")]))
    names = sorted(x.name for x in all_tensors(model))
    assert names == sorted(["init", "sparse_init", "sparse_initi", "in_subgraph", "in_subgraph", "attr_list",
                            "attr_sparse", "attr_sparsei", "attr", "in_fn", "training"])
    assert TensorProto.EXTERNAL == 1 and TensorProto.DEFAULT == 0  # the values _onnx_data writes


@pytest.mark.parametrize("dtype, dims, size", [
    ("FLOAT", [4, 3, 3, 3], 432), ("FLOAT16", [5], 10), ("INT64", [2, 2], 32), ("BOOL", [3], 3),
    ("INT4", [3], 2), ("UINT4", [4], 2), ("COMPLEX128", [1], 16), ("FLOAT", [], 4), ("FLOAT", [0, 7], 0),
    ("STRING", [2], None),
])
@needs_onnx
def test_tensor_bytes(dtype, dims, size):
    from onnx import TensorProto

    from leam.models._onnx_data import tensor_bytes

    assert tensor_bytes(TensorProto(data_type=getattr(TensorProto, dtype), dims=dims)) == size
