"""The Python API under a caller's habits: a model in train mode with trainable (and some frozen) parameters,
unknown layer names, many calls in a row, calls from several threads on the same model at once, errors and
interrupts inside the model's forward. Afterwards no hook survives (``_forward_hooks`` and the rest empty), each
module's mode and each parameter's ``requires_grad`` are as the caller left them, no ``.grad`` was filled, and
errors are leam's own, in one line. A real model (dlib-resnet) on real photos."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from leam.errors import LayerError
from leam.face import AlignedFace, align_file
from leam.maps import LEAM, capture_activations
from leam.maps.explain import Explanation, explain_face, explain_file, reference_embedding
from leam.models import FaceModel, create_model, from_module

pytestmark = pytest.mark.reliability
THREADS, CALLS = 4, 12
TOLERANCE = 1e-6  # threaded vs sequential maps and embeddings; equal in practice (each call on one thread)
FROZEN = ("stem.conv.weight", "stage3.block0.affine1.gamma")


@pytest.fixture(scope="module")
def model() -> FaceModel:
    torch.set_num_threads(1)  # per call: the threads' numbers match the sequential ones exactly
    return create_model("dlib-resnet")


@pytest.fixture(scope="module")
def faces(model, lfw_dir: Path) -> list[AlignedFace]:
    photos = sorted((lfw_dir / "Tony_Blair").iterdir())[:5]
    return [align_file(p, model.spec.template, "largest") for p in photos]


@pytest.fixture(scope="module")
def reference(model, faces) -> np.ndarray:
    return reference_embedding(model, faces[4:])


@pytest.fixture()
def training(model):
    """The model as a caller fine-tuning it leaves it: train mode, a frozen part, two frozen parameters."""
    net = model.net
    modes, flags = [(m, m.training) for m in net.modules()], [(p, p.requires_grad) for p in net.parameters()]
    net.train()
    net.stem.eval()
    for name, p in net.named_parameters():
        p.requires_grad_(name not in FROZEN)
    yield model
    for m, mode in modes:
        m.training = mode
    for p, flag in flags:
        p.requires_grad_(flag)
        p.grad = None


def hooked(net: nn.Module) -> list[str]:
    return [name for name, m in net.named_modules()
            if m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks]


def assert_as_the_caller_left_it(net: nn.Module) -> None:
    assert hooked(net) == []
    assert net.training and not net.stem.training and not net.stem.conv.training
    assert all(m.training for n, m in net.named_modules() if not n.startswith("stem"))
    assert {n for n, p in net.named_parameters() if not p.requires_grad} == set(FROZEN)
    assert all(p.grad is None for p in net.parameters())


def assert_same(got: Explanation, want: Explanation) -> None:
    assert got.layers == want.layers
    for layer in want.maps:
        np.testing.assert_allclose(got.raw[layer], want.raw[layer], rtol=TOLERANCE, atol=TOLERANCE, err_msg=layer)
    np.testing.assert_allclose(got.aggregate, want.aggregate, atol=TOLERANCE)
    assert got.cosine == pytest.approx(want.cosine, abs=TOLERANCE)


# ------------------------------------------------------------------------------ threads


def test_threads_on_one_model_give_the_sequential_results(training, faces, reference) -> None:
    model = training
    sequential = [explain_face(model, f, reference) for f in faces[:4]]
    embeddings = model.embed(np.stack([f.chip for f in faces]))
    assert_as_the_caller_left_it(model.net)

    def explain(k: int) -> Explanation:
        return explain_face(model, faces[k % 4], reference)

    def embed(_k: int) -> np.ndarray:
        return model.embed(np.stack([f.chip for f in faces]))

    with ThreadPoolExecutor(THREADS) as pool:  # explanations and embeddings of the same net, interleaved
        explained = [pool.submit(explain, k) for k in range(CALLS)]
        embedded = [pool.submit(embed, k) for k in range(CALLS // 2)]
        for k, future in enumerate(explained):
            assert_same(future.result(), sequential[k % 4])
        for future in embedded:
            np.testing.assert_allclose(future.result(), embeddings, atol=TOLERANCE)
    assert_as_the_caller_left_it(model.net)


def test_an_outside_forward_in_another_thread_is_not_captured(model, faces) -> None:
    """A caller's own forward of the net, in another thread while leam's hooks are on it, is not taken for
    leam's (the hooks capture their own thread's forwards only)."""
    x = model.chips_to_tensor(np.stack([f.chip for f in faces[:2]]))
    with capture_activations(model.net, ["stem"]) as acts:
        outside = threading.Thread(target=lambda: model.net(x[:1]))  # the net's lock is not the caller's
        outside.start()
        outside.join()
        assert acts == {}
        with torch.no_grad():
            model.net(x)
        assert acts["stem"].shape[0] == 2
    assert hooked(model.net) == []


# ------------------------------------------------------------------------------ repeated calls, train mode


def test_repeated_calls_leave_nothing_behind(training, faces, reference) -> None:
    model = training
    first = explain_face(model, faces[0], reference)
    for _ in range(5):
        assert_same(explain_face(model, faces[0], reference), first)
        model.embed(faces[0].chip[None])
        assert_as_the_caller_left_it(model.net)


def test_train_mode_batch_norm_and_dropout_are_neither_used_nor_changed() -> None:
    """A module with batch norm and dropout, in train mode with trainable parameters: leam computes as in
    eval mode (no running statistics updated, no dropout), and hands it back in train mode."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, 2), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.5),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 16)).train()
    stats = net[1].running_mean.clone(), net[1].running_var.clone(), int(net[1].num_batches_tracked)
    model = from_module(net)
    chips = np.random.default_rng(0).integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
    first, second = model.embed(chips), model.embed(chips)
    np.testing.assert_array_equal(first, second)  # no dropout
    x = model.chips_to_tensor(chips)
    result = LEAM(model.net, ["0", "2"])(x[:1], torch.as_tensor(first[1]))
    assert result.raw["0"].max() > 0
    assert torch.equal(net[1].running_mean, stats[0]) and torch.equal(net[1].running_var, stats[1])
    assert int(net[1].num_batches_tracked) == stats[2]
    assert all(m.training for m in net.modules()) and all(p.requires_grad and p.grad is None for p in net.parameters())
    assert hooked(model.net) == []


# ------------------------------------------------------------------------------ layer names


def test_an_unknown_layer_is_one_line_with_near_matches(model, faces, reference) -> None:
    with pytest.raises(LayerError) as info:
        explain_face(model, faces[0], reference, layers=["stage4.block0", "stage5.blok0"])
    message = str(info.value)
    assert "\n" not in message and len(message) < 1500
    assert message.startswith("unknown layer 'stage5.blok0' (did you mean 'stage5.block0'")
    assert "valid layers: " in message and "more (`leam layers` lists them)" in message  # 111 names: not all listed
    assert hooked(model.net) == []


@pytest.mark.parametrize(("layers", "pattern"), [
    (["stem", 3], r"unknown layer 3; valid layers"),
    (["fc"], r"layer 'fc' gives \(1, 128\), expected a feature map"),
    (["stem", "stem"], r"layer names repeat"),
    ([""], r"unknown layer ''"),
])
def test_bad_layer_arguments_are_layer_errors(model, faces, reference, layers, pattern) -> None:
    with pytest.raises(LayerError, match=pattern):
        explain_face(model, faces[0], reference, layers=layers)
    assert hooked(model.net) == []


def test_a_string_for_the_layers_is_a_layer_error(model) -> None:
    with pytest.raises(LayerError, match=r"expected a list of layer names, got the string 'stem' \(write \['stem'\]\)"):
        LEAM(model.net, "stem")


def test_explain_file_refuses_an_unknown_layer(model, lfw_dir) -> None:
    photos = sorted((lfw_dir / "Tony_Blair").iterdir())[:2]
    with pytest.raises(LayerError, match="did you mean 'stage2.block0'"):
        explain_file(model, photos[0], photos[1:], layers=["stage2.blocko"])


# ------------------------------------------------------------------------------ errors and interrupts inside


class Boom(Exception):
    pass


class Interrupt(BaseException):  # like KeyboardInterrupt or SystemExit: not an Exception
    pass


@pytest.mark.parametrize("error", [RuntimeError("boom"), Boom("boom"), KeyboardInterrupt(), Interrupt()])
def test_an_error_inside_the_forward_leaves_the_model_as_it_was(training, faces, reference, monkeypatch,
                                                                 error) -> None:
    model = training
    block = model.net.get_submodule("stage3.block1")

    def raising(*_args, **_kwargs):
        raise error

    monkeypatch.setattr(block, "forward", raising)
    with pytest.raises(type(error)):
        explain_face(model, faces[0], reference)
    with pytest.raises(type(error)):
        model.embed(faces[0].chip[None])
    assert_as_the_caller_left_it(model.net)
    monkeypatch.undo()
    with ThreadPoolExecutor(1) as pool:  # the net's lock was released: another thread gets it at once
        done = pool.submit(explain_face, model, faces[0], reference)
        assert done.result(timeout=120).cosine > 0
    assert_as_the_caller_left_it(model.net)


@pytest.mark.parametrize(("call", "pattern"), [
    (lambda m, x, r: LEAM(m.net, ["stem"], direction="sideways"), "expected direction in"),
    (lambda m, x, r: LEAM(m.net, ["stem"])(x[0], r), r"expected images of shape \(N, C, H, W\)"),
    (lambda m, x, r: LEAM(m.net, ["stem"])(x, torch.stack([r, r, r])), "expected 1 references, got 3"),
    (lambda m, x, r: LEAM(m.net, ["stem"])(x, r).aggregate("median"), "expected aggregation in"),
    (lambda m, x, r: m.embed(np.zeros((1, 50, 50, 3), np.uint8)), r"expected chips of shape \(N, \d+, \d+, 3\)"),
    (lambda m, x, r: reference_embedding(m, []), "at least one reference face"),
])
def test_misused_arguments_are_leams_own_errors(model, faces, reference, call, pattern) -> None:
    """Each is a ``UsageError``: a ``LeamError`` (the CLI's one line) and a ``ValueError`` (as before)."""
    from leam.errors import LeamError, UsageError

    x = model.chips_to_tensor(faces[0].chip[None])
    with pytest.raises(UsageError, match=pattern) as caught:
        call(model, x, torch.as_tensor(reference))
    assert isinstance(caught.value, LeamError) and isinstance(caught.value, ValueError)
    assert not hooked(model.net)
