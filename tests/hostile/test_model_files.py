"""Untrusted, corrupt and mismatched model files through the ``leam`` command: a pickle payload never
runs unless ``--trust-model-file`` is given (which warns, and then really unpickles); an ONNX file never
reads weights from a file outside its folder (or from a pipe, or beyond a file's end); every broken
file gives one line naming the file and what is wrong, never a traceback."""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytest
import torch
from torch import nn

from leam.cli.main import main
from leam.models import default_weights_path
from leam.models.iresnet import DEPTHS, IResNet
from leam.parse.bisenet import BiSeNet
from tests.conftest import dlib_model_file
from tests.helpers.onnx_files import (
    SECRET,
    ExternalCase,
    save_with_external_weight,
    tiny_model,
    write_external_data_cases,
)

pytestmark = pytest.mark.reliability


class WritesMarker:
    """Unpickling this writes ``path``: what code hidden in a weight file could do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return Path.write_text, (self.path, "the payload ran")


def tiny_embedder() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, 2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 16))


def leam(capsys, *argv) -> tuple[int, str, str]:
    """``leam ARGV`` in this process: (exit status, stdout, stderr); an exception fails the test."""
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(err: str, *patterns: str) -> None:
    assert err.startswith("leam: error: ") and err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    for pattern in patterns:
        assert re.search(pattern, err), (pattern, err)


@pytest.fixture(scope="module")
def photo(lfw_dir: Path) -> Path:
    return sorted((lfw_dir / "Tony_Blair").iterdir())[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """Corrupt copies of the installed weight files, and garbage of every kind."""
    folder = tmp_path_factory.mktemp("model-files")
    garbage = bytes(range(256)) * 20
    for ext, source in (("dat", default_weights_path("dlib-resnet")), ("pb", default_weights_path("facenet")),
                        ("h5", default_weights_path("facenet-keras"))):
        if source is None:
            pytest.skip(f"installed weights for .{ext} missing")
        data = source.read_bytes()
        (folder / f"truncated.{ext}").write_bytes(data[: len(data) // 3])
    for ext in ("dat", "pb", "h5", "onnx", "pth"):
        (folder / f"garbage.{ext}").write_bytes(garbage)
        (folder / f"empty.{ext}").write_bytes(b"")
    import h5py

    with h5py.File(folder / "no_model.h5", "w") as f:
        f.attrs["note"] = "an HDF5 file, but no Keras model"
    return folder


# --------------------------------------------------------------------------- pickle payloads


PAYLOAD_COMMANDS = {  # how each kind of .pth reaches leam
    "weights": lambda path, photo: ["layers", "--model", "iresnet18", "--weights", path],
    "model-file": lambda path, photo: ["layers", "--model-file", path],
    "parser-weights": lambda path, photo: ["parse", photo, "--parser", "bisenet", "--parser-weights", path],
    "verify-weights": lambda path, photo: ["verify", photo.parent.parent, "--model", "iresnet18", "--weights", path],
}


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-format"])
@pytest.mark.parametrize("option", PAYLOAD_COMMANDS)
def test_pickle_payload_never_runs(capsys, photo, tmp_path, option, legacy) -> None:
    marker = tmp_path / "marker.txt"
    path = tmp_path / "backbone.pth"
    torch.save({"conv1.weight": torch.zeros(1), "payload": WritesMarker(marker)}, path,
               _use_new_zipfile_serialization=not legacy)
    rc, _, err = leam(capsys, *PAYLOAD_COMMANDS[option](path, photo))
    assert rc == 1
    assert_one_line_error(err, re.escape(str(path)), "refused to unpickle|not a torch.save archive|tensors-only|"
                                                     "not a model file")
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is live: an unrestricted load runs it
    assert marker.read_text() == "the payload ran"


# --------------------------------------------------------------------------- --trust-model-file


def test_trusted_pickled_module_is_loaded_with_a_warning(capsys, tmp_path) -> None:
    path = tmp_path / "whole.pth"
    torch.save(tiny_embedder(), path)
    rc, _, err = leam(capsys, "layers", "--model-file", path)
    assert rc == 1
    assert_one_line_error(err, "refused to unpickle", "--trust-model-file")
    rc, out, err = leam(capsys, "layers", "--model-file", path, "--trust-model-file")
    assert rc == 0, err
    assert err.count("\n") == 1 and err.startswith("leam: warning: --trust-model-file:") and str(path) in err
    assert re.search(r"^\* 0 +8 x 55 x 55$", out, re.MULTILINE)  # the conv's feature map, 112 -> 55


def test_trusted_payload_runs(capsys, tmp_path) -> None:
    """The flag really takes the full-pickle path: the payload's code runs (then it is no model)."""
    marker = tmp_path / "marker.txt"
    path = tmp_path / "model.pth"
    torch.save(WritesMarker(marker), path)
    rc, _, err = leam(capsys, "layers", "--model-file", path, "--trust-model-file")
    assert marker.read_text() == "the payload ran"
    assert rc == 1
    assert err.startswith("leam: warning: --trust-model-file")
    assert_one_line_error(err.split("\n", 1)[1], "not a model file")


def test_trusted_whole_iresnet_as_weights(capsys, tmp_path) -> None:
    torch.manual_seed(0)
    net = IResNet(DEPTHS[18]).eval()
    path = tmp_path / "whole_iresnet18.pth"
    torch.save(net, path)
    rc, _, err = leam(capsys, "layers", "--model", "iresnet18", "--weights", path)
    assert rc == 1
    assert_one_line_error(err, "refused to unpickle")
    rc, out, err = leam(capsys, "layers", "--model", "iresnet18", "--weights", path, "--trust-model-file")
    assert rc == 0, err
    assert "* layer4" in out and "(* = default layers)" in out


def test_trusted_whole_bisenet_as_parser_weights(capsys, photo, tmp_path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "whole_bisenet.pth"
    torch.save(BiSeNet().eval(), path)
    argv = ["parse", photo, "--parser", "bisenet", "--parser-weights", path, "--out", tmp_path / "out"]
    rc, _, err = leam(capsys, *argv)
    assert rc == 1
    assert_one_line_error(err, "tensors-only")
    rc, out, err = leam(capsys, *argv, "--trust-model-file")
    assert rc == 0, err
    assert "parser bisenet" in out and (tmp_path / "out" / "labels.png").is_file()


# --------------------------------------------------------------------------- corrupt files


CORRUPT = {
    "dat-truncated": (["--model", "dlib-resnet", "--weights", "truncated.dat"], r"unexpected end of data at byte \d+"),
    "dat-garbage": (["--model", "dlib-resnet", "--weights", "garbage.dat"], r"expected .* at byte 0, got 0"),
    "dat-empty": (["--model", "dlib-resnet", "--weights", "empty.dat"], r"unexpected end of data at byte 0"),
    "dat-other-dlib-model": (["--model", "dlib-resnet", "--weights", "SHAPE_PREDICTOR"],  # a dlib file, not this net
                             r"expected one of \('loss_metric_2',\) at byte 2: negative length -10 at byte 4"),
    "pb-truncated": (["--model", "facenet", "--weights", "truncated.pb"], r"truncated file: field \d+ at byte \d+"),
    "pb-garbage": (["--model", "facenet", "--weights", "garbage.pb"], r"malformed|truncated"),
    "pb-empty": (["--model", "facenet", "--weights", "empty.pb"], r"0 convolutions, Inception-ResNet-v1 has 132"),
    "pb-given-a-dat": (["--model", "facenet", "--weights", "truncated.dat"], r"not FaceNet's"),
    "h5-truncated": (["--model", "facenet-keras", "--weights", "truncated.h5"], r"not an HDF5 file \(.*truncated"),
    "h5-garbage": (["--model", "facenet-keras", "--weights", "garbage.h5"], r"not an HDF5 file"),
    "h5-empty": (["--model", "facenet-keras", "--weights", "empty.h5"], r"not an HDF5 file"),
    "h5-no-model": (["--model", "facenet-keras", "--weights", "no_model.h5"], r"holds no Keras model"),
    "onnx-truncated": (["--model-file", "truncated.onnx"], r"not an ONNX model"),
    "onnx-garbage": (["--model-file", "garbage.onnx"], r"not an ONNX model"),
    "onnx-empty": (["--model-file", "empty.onnx"], r"not an ONNX model \(an empty file\)"),
    "pth-garbage-weights": (["--model", "iresnet18", "--weights", "garbage.pth"], r"not a PyTorch state dict file"),
    "pth-empty-weights": (["--model", "iresnet18", "--weights", "empty.pth"], r"not a PyTorch state dict file"),
    "pth-garbage-model-file": (["--model-file", "garbage.pth"], r"not a model file"),
    "pb-as-model-file": (["--model-file", "truncated.pb"], r"not a model file"),
}


@pytest.mark.parametrize("case", CORRUPT)
def test_corrupt_model_file(capsys, files, tmp_path, case) -> None:
    argv, pattern = CORRUPT[case]
    if case.startswith("onnx-truncated"):
        onnx_bytes = tiny_onnx(tmp_path)
        (files / "truncated.onnx").write_bytes(onnx_bytes[: len(onnx_bytes) // 2])
    named = {"SHAPE_PREDICTOR": dlib_model_file("shape_predictor_5_face_landmarks.dat")}
    argv = [named.get(a) or (files / a if "." in a else a) for a in argv]
    rc, _, err = leam(capsys, "layers", *argv)
    assert rc == 1
    assert_one_line_error(err, re.escape(Path(argv[-1]).name), pattern)


def tiny_onnx(tmp_path: Path) -> bytes:
    import warnings

    path = tmp_path / "tiny.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's TorchScript-based exporter is deprecated
        torch.onnx.export(tiny_embedder().eval(), (torch.zeros(1, 3, 112, 112),), str(path), dynamo=False,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    return path.read_bytes()


def test_the_intact_tiny_onnx_loads(capsys, tmp_path) -> None:
    """The truncated ONNX case's source file is itself fine: what fails there is the cut."""
    tiny_onnx(tmp_path)
    rc, out, err = leam(capsys, "layers", "--model-file", tmp_path / "tiny.onnx")
    assert rc == 0, err


# --------------------------------------------------------------------------- mismatched state dicts


def test_mismatched_iresnet_state_dict(capsys, tmp_path) -> None:
    state = IResNet(DEPTHS[18]).state_dict()
    state["conv1.renamed"] = state.pop("conv1.weight")
    state["fc.weight"] = torch.zeros(256, 25088)
    path = tmp_path / "backbone.pth"
    torch.save(state, path)
    rc, _, err = leam(capsys, "layers", "--model", "iresnet18", "--weights", path)
    assert rc == 1
    assert_one_line_error(err, re.escape(str(path)), r"does not match iresnet18", r"1 missing key: conv1\.weight",
                          r"1 unexpected key: conv1\.renamed",
                          r"1 mis-shaped key: fc\.weight \(file \(256, 25088\), model \(512, 25088\)\)")


def test_mismatched_bisenet_state_dict(capsys, photo, tmp_path) -> None:
    state = BiSeNet().state_dict()
    state["ffm.renamed"] = state.pop("ffm.conv1.weight")
    state["conv_out.conv_out.weight"] = torch.zeros(5, 256, 1, 1)  # 5 classes instead of 19
    path = tmp_path / "79999_iter.pth"
    torch.save(state, path)
    rc, _, err = leam(capsys, "parse", photo, "--parser", "bisenet", "--parser-weights", path)
    assert rc == 1
    assert_one_line_error(err, re.escape(str(path)), r"not a BiSeNet face-parsing state dict",
                          r"1 missing: ffm\.conv1\.weight", r"1 unexpected: ffm\.renamed",
                          r"conv_out\.conv_out\.weight \(file \(5, 256, 1, 1\), expected \(19, 256, 1, 1\)\)")


# --------------------------------------------------------------------------- ONNX external data


_OPENED: list[str] | None = None  # while a list: every path Python code opens (audit hook "open")


WRITER = "fifo-writer"  # the test's own thread (``unblocking_writer``): what it opens is not leam's


def _record_opens(event: str, args: tuple) -> None:
    if (event == "open" and _OPENED is not None and isinstance(args[0], (str, bytes, os.PathLike))
            and threading.current_thread().name != WRITER):
        _OPENED.append(os.path.realpath(os.fsdecode(args[0])))


sys.addaudithook(_record_opens)  # audit hooks stay for the process; this one records only inside `opened`


@contextmanager
def opened() -> Iterator[list[str]]:
    """The real paths of every file Python code opens within the block."""
    global _OPENED
    _OPENED = []
    try:
        yield _OPENED
    finally:
        _OPENED = None


@contextmanager
def unblocking_writer(fifo: Path) -> Iterator[list[bool]]:
    """While the block runs, a thread writes into ``fifo`` as soon as anything opens it for reading (which
    would otherwise wait for ever); the list it yields holds True when that happened."""
    stop, seen = threading.Event(), []

    def watch() -> None:
        while not stop.is_set():
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO while no reader has it open
            except OSError:
                time.sleep(0.01)
                continue
            seen.append(True)
            os.write(fd, SECRET)
            os.close(fd)
            return

    thread = threading.Thread(target=watch, daemon=True, name=WRITER)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


@pytest.fixture(scope="module")
def external_cases(tmp_path_factory) -> tuple[list[ExternalCase], Path]:
    pytest.importorskip("onnx")
    root = tmp_path_factory.mktemp("external-data")
    return write_external_data_cases(root / "cases", root / "secret.bin"), root / "secret.bin"


def _case(external_cases, name: str) -> ExternalCase:
    return next(c for c in external_cases[0] if c.name == name)


CASE_NAMES = ("dotdot", "dotdot-in-subfolder", "etc-passwd", "absolute", "absolute-etc-passwd", "symlink",
              "symlinked-folder", "fifo", "folder", "missing", "symlink-loop", "hardlink", "beyond-the-file",
              "offset-past-the-end", "length-too-short", "negative-offset", "length-not-a-number", "no-location",
              "sparse-initializer", "subgraph-attribute")


def test_every_external_data_case_is_listed(external_cases) -> None:
    assert tuple(c.name for c in external_cases[0]) == CASE_NAMES


@pytest.mark.parametrize("name", CASE_NAMES)
def test_external_data_outside_the_rules_is_refused_unread(capsys, external_cases, name) -> None:
    """Each hostile model is refused in one line naming the model file, the tensor and the location,
    and neither the file outside the folder nor the file the location names is opened."""
    case, secret = _case(external_cases, name), external_cases[1]
    target = os.path.realpath(case.model.parent / case.location) if case.location else None
    with unblocking_writer(case.model.parent / "pipe.bin") if name == "fifo" else nullcontext([]) as fifo_read:
        with opened() as paths:
            rc, _, err = leam(capsys, "layers", "--model-file", case.model)
    assert rc == 1
    assert_one_line_error(err, re.escape(str(case.model)), f"tensor '{case.tensor}'", re.escape(repr(case.location)),
                          case.error)
    assert str(secret) not in paths and target not in paths and not fifo_read
    ours = [p for p in paths if p.startswith(str(secret.parent))]
    assert ours == [os.path.realpath(case.model)]  # of the files the test made: the model file, nothing else


ENTRY_POINTS = {  # every command that loads a --model-file, each with the symlinked weights
    "embed": lambda model, photo: ["embed", photo, "--model-file", model],
    "explain": lambda model, photo: ["explain", photo, "--reference", "REF", "--model-file", model, "--out", "OUT"],
    "regions": lambda model, photo: ["regions", photo, "--reference", "REF", "--model-file", model, "--out", "OUT"],
    "demo": lambda model, photo: ["demo", photo.parent.parent, "--model-file", model, "--out", "OUT"],
    "verify": lambda model, photo: ["verify", photo.parent.parent, "--model-file", model, "--out", "OUT"],
}


@pytest.mark.parametrize("command", ENTRY_POINTS)
def test_every_command_checks_external_data(capsys, external_cases, photo, tmp_path, command) -> None:
    case, secret = _case(external_cases, "symlink"), external_cases[1]
    named = {"OUT": tmp_path / "out", "REF": sorted(photo.parent.iterdir())[1]}
    argv = [named.get(a, a) if isinstance(a, str) else a for a in ENTRY_POINTS[command](case.model, photo)]
    with opened() as paths:
        rc, _, err = leam(capsys, *argv)
    assert rc == 1
    assert_one_line_error(err, re.escape(str(case.model)), "tensor 'W'", "leads outside the model's folder")
    assert str(secret) not in paths


def test_an_onnx_file_as_weights_is_not_read_through(capsys, external_cases) -> None:
    """A registered model's --weights never reads an ONNX file's external data (it is no state dict)."""
    case, secret = _case(external_cases, "dotdot"), external_cases[1]
    with opened() as paths:
        rc, _, err = leam(capsys, "layers", "--model", "iresnet18", "--weights", case.model)
    assert rc == 1
    assert_one_line_error(err, re.escape(str(case.model)), "not a PyTorch state dict file")
    assert str(secret) not in paths


def test_external_data_beside_the_model_loads(capsys, photo, tmp_path) -> None:
    """Weights in a file beside the model (also through a link inside the folder) give the same embedding
    as the same model with its weights inline."""
    pytest.importorskip("onnx")
    import onnx

    inline = tmp_path / "inline" / "tiny.onnx"
    inline.parent.mkdir()
    onnx.save(tiny_model(), str(inline))
    external = save_with_external_weight(tmp_path / "external")
    linked = save_with_external_weight(tmp_path / "linked", "weights/v1/tiny.weights")
    (linked.parent / "current.weights").symlink_to("weights/v1/tiny.weights")
    model = onnx.load(str(linked), load_external_data=False)
    model.graph.initializer[0].external_data[0].value = "current.weights"
    onnx.save(model, str(linked))
    embeddings = []
    for path in (inline, external, linked):
        rc, out, err = leam(capsys, "embed", photo, "--model-file", path, "--json")
        assert rc == 0, err
        embeddings.append(json.loads(out)[0]["embedding"])
    assert len(embeddings[0]) == 4 and embeddings[0] == embeddings[1] == embeddings[2]


# --------------------------------------------------------------------------- not a file


WEIGHT_OPTIONS = {
    "dlib-resnet": ["--model", "dlib-resnet", "--weights"],
    "facenet": ["--model", "facenet", "--weights"],
    "facenet-keras": ["--model", "facenet-keras", "--weights"],
    "iresnet18": ["--model", "iresnet18", "--weights"],
    "model-file": ["--model-file"],
}


@pytest.mark.parametrize("kind", ["folder", "fifo", "broken-link", "missing"])
@pytest.mark.parametrize("option", WEIGHT_OPTIONS)
def test_a_weight_path_that_is_no_file(capsys, tmp_path, option, kind) -> None:
    """Every model family's weight loader says what the path is instead of a file, in one line."""
    path = tmp_path / ("weights.onnx" if option == "model-file" else "weights")
    expected = {"folder": "is a folder; expected a file", "fifo": r"is not a regular file \(a pipe or device\)",
                "broken-link": "is a broken symbolic link", "missing": "not found"}[kind]
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "broken-link":
        path.symlink_to("nowhere")
    rc, _, err = leam(capsys, "layers", *WEIGHT_OPTIONS[option], path)
    assert rc == 1
    assert_one_line_error(err, re.escape(str(path)), expected)
