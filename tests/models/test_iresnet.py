"""IResNet (insightface's arcface_torch backbones): parameter names, strict loading, refusals, alignment.

No weights are downloaded: seeded random IResNets are saved the way arcface_torch saves them
(``torch.save(backbone.state_dict(), path)``) and read back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from leam.cli.main import main
from leam.data.images import load_image
from leam.errors import ModelError
from leam.face import align_photo
from leam.maps import LEAM, layer_shapes
from leam.models import create_model, default_weights_path, list_models, model_spec
from leam.models.iresnet import ARCFACE_DST, ARCFACE_TEMPLATE, DEPTHS, expected_state
from tests.conftest import SHARED_DATA
from tests.helpers.iresnet import random_iresnet

GLINT = SHARED_DATA / "glint-aligned"


@pytest.fixture(scope="module")
def net18():
    return random_iresnet(18, seed=0)


@pytest.fixture(scope="module")
def weights18(net18, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("iresnet") / "backbone.pth"
    torch.save(net18.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def chips() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------ insightface's names


@pytest.mark.parametrize(("depth", "n_keys"), [(18, 187), (34, 331), (50, 475), (100, 925)])
def test_state_dict_keys_are_insightfaces(depth, n_keys):
    # 5 keys per batch norm, 1 per conv and PReLU; block 0 of each stage has a downsample conv + bn
    state = expected_state(depth)
    assert len(state) == n_keys
    last = f"layer4.{DEPTHS[depth][3] - 1}"
    assert state["conv1.weight"] == (64, 3, 3, 3)
    assert state["bn1.running_var"] == (64,)
    assert state["prelu.weight"] == (64,)
    assert state["layer1.0.bn1.weight"] == (64,)
    assert state["layer1.0.conv1.weight"] == (64, 64, 3, 3)
    assert state["layer1.0.downsample.0.weight"] == (64, 64, 1, 1)
    assert state["layer1.0.downsample.1.num_batches_tracked"] == ()
    assert state["layer2.0.conv2.weight"] == (128, 128, 3, 3)
    assert state[f"{last}.prelu.weight"] == (512,)
    assert state[f"{last}.bn3.running_mean"] == (512,)
    assert state["bn2.weight"] == (512,)
    assert state["fc.weight"] == (512, 512 * 7 * 7)
    assert state["fc.bias"] == (512,)
    assert state["features.running_var"] == (512,)
    assert "layer1.1.downsample.0.weight" not in state
    assert not any(k.startswith(("input_norm", "dropout")) for k in state)


def test_registered_without_installed_weights():
    for depth in DEPTHS:
        name = f"iresnet{depth}"
        assert name in list_models()
        assert default_weights_path(name) is None
        spec = model_spec(name)
        assert spec.input_size == (112, 112) and spec.embedding_size == 512 and spec.color_order == "RGB"
        assert spec.template is ARCFACE_TEMPLATE


def test_without_weights_says_which_file_and_where():
    with pytest.raises(ModelError, match=r"iresnet50 has no installed weights: .*backbone\.pth.*--weights PATH"):
        create_model("iresnet50")


def test_leam_models_lists_them_as_missing(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "iresnet100: insightface arcface_torch IResNet-100" in out
    assert "weights missing: pass your arcface_torch IResNet-100 state dict (backbone.pth" in out


@pytest.mark.parametrize(
    ("depth", "layers"),
    [
        (18, ("prelu", "layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1", "layer4.0", "layer4.1")),
        (50, ("prelu", "layer1.0", "layer1.2", "layer2.1", "layer2.3", "layer3.3", "layer3.8", "layer3.13",
              "layer4.2")),
        (100, ("prelu", "layer1.0", "layer1.2", "layer2.5", "layer2.12", "layer3.9", "layer3.19", "layer3.29",
               "layer4.2")),
    ],
)
def test_default_layers(depth, layers):
    assert model_spec(f"iresnet{depth}").default_layers == layers


# ------------------------------------------------------------------------------ save, reload, explain


def test_reload_in_insightface_format(net18, weights18, chips):
    model = create_model("iresnet18", weights=weights18)
    assert model.weights_path == weights18
    with torch.no_grad():
        expected = net18(torch.from_numpy(chips).permute(0, 3, 1, 2).float()).numpy()
    got = model.embed(chips)
    assert got.shape == (3, 512) and got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose(model.embed(chips, batch_size=2), got, atol=1e-5)


def test_reload_iresnet50(tmp_path, chips):
    net = random_iresnet(50, seed=5)
    path = tmp_path / "backbone.pth"
    torch.save(net.state_dict(), path)
    model = create_model("iresnet50", weights=path)
    with torch.no_grad():
        expected = net(torch.from_numpy(chips[:1]).permute(0, 3, 1, 2).float()).numpy()
    np.testing.assert_array_equal(model.embed(chips[:1]), expected)


def test_input_normalisation_is_inside(net18):
    x = torch.full((1, 3, 112, 112), 127.5)
    assert torch.equal(net18.input_norm(x), torch.zeros_like(x))
    assert torch.equal(net18.input_norm(torch.full_like(x, 255.0)), torch.ones_like(x))


def test_default_layers_are_feature_maps_with_gradients(net18, chips):
    shapes = dict(layer_shapes(net18, (112, 112)))
    defaults = model_spec("iresnet18").default_layers
    assert [shapes[n] for n in defaults] == [
        (64, 112, 112), (64, 56, 56), (64, 56, 56), (128, 28, 28), (128, 28, 28),
        (256, 14, 14), (256, 14, 14), (512, 7, 7), (512, 7, 7),
    ]
    x = torch.from_numpy(chips).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        ref = net18(x[1:2])[0]
    result = LEAM(net18, list(defaults))(x[:1], ref)
    for name in defaults:
        assert result.raw[name].max() > 0, name


def test_ddp_prefix_is_stripped(net18, tmp_path, chips):
    path = tmp_path / "ddp.pth"
    torch.save({f"module.{k}": v for k, v in net18.state_dict().items()}, path)
    with torch.no_grad():
        expected = net18(torch.from_numpy(chips[:1]).permute(0, 3, 1, 2).float()).numpy()
    np.testing.assert_array_equal(create_model("iresnet18", weights=path).embed(chips[:1]), expected)


def test_file_without_num_batches_tracked_loads(net18, tmp_path):
    path = tmp_path / "old.pth"
    torch.save({k: v for k, v in net18.state_dict().items() if not k.endswith("num_batches_tracked")}, path)
    create_model("iresnet18", weights=path)


# ------------------------------------------------------------------------------ mismatches, refusals


def _save_edited(net, path: Path, rename=None, drop=None, reshape=None) -> Path:
    state = dict(net.state_dict())
    if rename:
        state[rename[1]] = state.pop(rename[0])
    if drop:
        del state[drop]
    if reshape:
        state[reshape[0]] = state[reshape[0]][: reshape[1]]
    torch.save(state, path)
    return path


def test_renamed_key(net18, tmp_path):
    path = _save_edited(net18, tmp_path / "renamed.pth", rename=("layer2.1.bn3.weight", "layer2.1.bn3.wieght"))
    with pytest.raises(ModelError) as e:
        create_model("iresnet18", weights=path)
    assert str(e.value) == (
        f"{path} does not match iresnet18: 1 missing key: layer2.1.bn3.weight; 1 unexpected key: layer2.1.bn3.wieght"
    )


def test_missing_and_misshaped_keys(net18, tmp_path):
    path = _save_edited(net18, tmp_path / "edited.pth", drop="fc.bias", reshape=("prelu.weight", 32))
    with pytest.raises(ModelError, match=r"1 missing key: fc\.bias; 1 mis-shaped key: prelu\.weight "
                                         r"\(file \(32,\), model \(64,\)\)$"):
        create_model("iresnet18", weights=path)


def test_wrong_depth_names_the_one_that_fits(weights18):
    # IResNet-34 has 8 more blocks than IResNet-18, of 15 keys each (not counting num_batches_tracked)
    with pytest.raises(ModelError, match=r"does not match iresnet34 \(the file fits iresnet18\): "
                                         r"120 missing keys: layer1\.2\.bn1\.weight, .*\(112 more\)$"):
        create_model("iresnet34", weights=weights18)


class WritesAFile:
    """Unpickling this object creates ``path``: what a malicious checkpoint could do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (self.path, "unpickled"))


def test_pickle_payload_is_refused_unrun(tmp_path):
    marker = tmp_path / "was-unpickled.txt"
    path = tmp_path / "backbone.pth"
    torch.save({"conv1.weight": torch.zeros(1), "payload": WritesAFile(marker)}, path)
    with pytest.raises(ModelError, match=r"refused to unpickle it: leam loads plain state dicts only"):
        create_model("iresnet18", weights=path)
    assert not marker.exists()


def test_pickled_whole_model_is_refused(net18, tmp_path):
    path = tmp_path / "model.pth"
    torch.save(net18, path)
    with pytest.raises(ModelError, match="refused to unpickle"):
        create_model("iresnet18", weights=path)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"not a checkpoint", "is not a PyTorch state dict file"), (None, "weight file not found")],
    ids=["text", "missing"],
)
def test_bad_weight_files(tmp_path, content, message):
    path = tmp_path / "backbone.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError, match=message):
        create_model("iresnet18", weights=path)


def test_a_list_is_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(ModelError, match="holds a list, not a state dict of tensors"):
        create_model("iresnet18", weights=path)


# ------------------------------------------------------------------------------ the ArcFace template


def test_template_eye_centres_are_arcfaces():
    """The mean of each eye's two dlib corners lies within 1.5 px of insightface's eye centre."""
    pts = ARCFACE_TEMPLATE.points
    left, right = pts[2:4].mean(axis=0), pts[0:2].mean(axis=0)
    assert np.linalg.norm(left - ARCFACE_DST[0]) < 1.5
    assert np.linalg.norm(right - ARCFACE_DST[1]) < 1.5
    assert abs(pts[4, 0] - ARCFACE_DST[2, 0]) < 1.0 and pts[4, 1] > ARCFACE_DST[2, 1]  # nose base below the tip


def test_alignment_approximates_insightfaces_on_glint(record_property):
    """Glint360K chips (aligned by insightface) padded and enlarged as a photo, then aligned by leam:
    insightface's five target points should land near their places. These photos are among those
    the template was fitted on (benchmarks/arcface_template.py reports held-out identities)."""
    if not GLINT.is_dir():
        pytest.skip(f"shared test photos not found at {GLINT}")
    pad, up = 56, 2
    errors = []
    for person in sorted(p for p in GLINT.iterdir() if p.is_dir()):
        for path in sorted(person.glob("*.png"))[:2]:
            chip = load_image(path)
            photo = np.pad(chip, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
            photo = np.asarray(Image.fromarray(photo).resize((photo.shape[1] * up,) * 2, Image.BILINEAR))
            try:
                aligned = align_photo(photo, ARCFACE_TEMPLATE, str(path), largest_face=True)
            except Exception:  # noqa: BLE001 - dlib misses a few tight crops
                continue
            in_photo = (ARCFACE_DST + pad + 0.5) * up - 0.5
            errors.append(np.linalg.norm(aligned.warp.to_chip(in_photo) - ARCFACE_DST, axis=1).mean())
    errors = np.array(errors)
    record_property("glint_arcface_point_error_px", float(np.median(errors)))
    print(f"ArcFace points after leam's alignment, {len(errors)} glint faces: median {np.median(errors):.2f} px, "
          f"mean {errors.mean():.2f} px")
    assert len(errors) >= 20
    assert np.median(errors) < 2.5
    assert errors.mean() < 3.5
