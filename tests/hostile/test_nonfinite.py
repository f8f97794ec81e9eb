"""Models whose numbers are not finite: every command refuses the photo in one line naming the model and the
photo (a study: a failure row), and nothing leam prints or stores holds NaN or Inf.

The models are real ONNX graphs (tests/helpers/nonfinite_models.py) that go NaN or Inf on some photos only,
as a user's graph with a bad division does; the photos are lfw-demo's, the thresholds placed between the
photos' own chip means so that exactly one photo of the set breaks.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from leam.errors import NonFiniteError
from leam.face import align_file
from leam.models import check_finite, from_module, load_model_file
from tests.helpers.nonfinite_models import nonfinite_model
from tests.helpers.onnx_files import tiny_model
from tests.hostile.test_study_options import assert_refused, leam
from tests.study.conftest import linked_people

pytestmark = pytest.mark.reliability
PRESET = "arcface-raw"  # the graph sees RGB in [0, 255]: its threshold is one of the chips' means


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Two identities of lfw-demo, three photos each (links)."""
    return linked_people(tmp_path_factory.mktemp("data"), 2)


@pytest.fixture(scope="module")
def means(data, tmp_path_factory) -> dict[Path, float]:
    """Each photo's aligned chip mean, as the graphs compute it (RGB in [0, 255], the arcface template)."""
    import onnx

    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    onnx.save(tiny_model(), str(path))
    template = load_model_file(path, PRESET).spec.template
    return {p: float(align_file(p, template).chip.mean()) for p in sorted(data.glob("*/*.jpg"))}


@pytest.fixture(scope="module")
def broken(means, tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """{kind: (model file, the one photo it breaks)}: "nan" and "inf" break the darkest photo, "grad" every one."""
    ranked = sorted(means, key=means.get)
    folder = tmp_path_factory.mktemp("models")
    low = (means[ranked[0]] + means[ranked[1]]) / 2
    assert min(low - means[ranked[0]], means[ranked[1]] - low) > 0.1, "the two darkest photos are too close"
    return {"nan": (nonfinite_model(folder / "nan.onnx", "nan", low), ranked[0]),
            "inf": (nonfinite_model(folder / "inf.onnx", "inf", low), ranked[0]),
            "grad": (nonfinite_model(folder / "grad.onnx", "grad", 0.0), ranked[0])}


def others(means: dict[Path, float], bad: Path) -> list[Path]:
    return [p for p in means if p != bad]


@pytest.mark.parametrize("kind", ["nan", "inf"])
@pytest.mark.parametrize("role", ["photo", "reference"])
def test_explain_refuses_the_photo_in_one_line(broken, means, tmp_path, kind, role) -> None:
    model, bad = broken[kind]
    good = others(means, bad)
    photo, refs = (bad, good[:1]) if role == "photo" else (good[0], [good[1], bad])
    out = tmp_path / "out"
    line = assert_refused(["explain", photo, "--reference", *refs, "--model-file", model, "--preset", PRESET,
                           "--out", out], rf"model '{kind}\.onnx' gives a non-finite embedding \(NaN or Inf\)", out)
    assert bad.name in line and all(p.name not in line for p in good)


def test_explain_works_on_the_photos_it_spares(broken, means, tmp_path) -> None:
    model, bad = broken["nan"]
    good = others(means, bad)
    rc, out, err = leam(["explain", good[0], "--reference", good[1], "--model-file", model, "--preset", PRESET,
                         "--out", tmp_path / "out"])
    assert rc == 0, err
    cosine = float(re.search(r"cosine similarity to the reference: (\S+)", out).group(1))
    assert np.isfinite(cosine)


def test_a_finite_embedding_with_a_nonfinite_map_is_refused(broken, means, tmp_path) -> None:
    model, bad = broken["grad"]
    good = others(means, bad)
    out = tmp_path / "out"
    line = assert_refused(["explain", good[0], "--reference", good[1], "--model-file", model, "--preset", PRESET,
                           "--layers", "relu", "conv", "--out", out],
                          r"model 'grad\.onnx' gives a non-finite leam map at layer 'relu' \(NaN or Inf\)", out)
    assert good[0].name in line


def test_a_layer_the_embedding_ignores_is_named(broken, means, tmp_path) -> None:
    model, bad = broken["grad"]
    good = others(means, bad)
    out = tmp_path / "out"
    assert_refused(["explain", good[0], "--reference", good[1], "--model-file", model, "--preset", PRESET,
                    "--layers", "mean", "--out", out], r"the embedding does not depend on 'mean'", out)


@pytest.mark.parametrize("kind", ["nan", "inf"])
def test_embed_json_prints_nothing_and_names_the_photo(broken, means, kind) -> None:
    model, bad = broken[kind]
    rc, out, err = leam(["embed", *means, "--model-file", model, "--preset", PRESET, "--json"])
    lines = err.strip().splitlines()
    assert rc == 1 and out == "" and len(lines) == 1, (rc, out, err)
    assert "non-finite embedding" in lines[0] and bad.name in lines[0]


def test_verify_refuses_in_one_line(broken, data, tmp_path) -> None:
    model, bad = broken["nan"]
    out = tmp_path / "verify"
    rc, _, err = leam(["verify", data, "--model-file", model, "--preset", PRESET, "--out", out])
    lines = [line for line in err.splitlines() if line.strip() and "photo/s]" not in line]  # less the progress bar
    assert rc == 1 and len(lines) == 1 and "non-finite embedding" in lines[0] and bad.name in lines[0], err
    assert not out.exists()


@pytest.fixture(scope="module")
def nan_run(broken, data, tmp_path_factory) -> Path:
    model, _ = broken["nan"]
    out = tmp_path_factory.mktemp("runs") / "broken"
    rc, _, err = leam(["study", data, "--models", f"badgraph={model}:{PRESET}", "--workers", "1", "--pairs", "1",
                       "--occlusion-seeds", "1", "--occlusion-percents", "5", "--thresholds", "10", "--no-transfer",
                       "--faithfulness", "--fills", "black", "--faithfulness-photos", "1", "--out", out])
    assert rc == 0, err
    return out


def test_a_study_records_the_photo_as_a_failure_and_goes_on(nan_run, broken, means) -> None:
    _, bad = broken["nan"]
    failures = pd.read_parquet(nan_run / "tables" / "failures.parquet")
    row = failures[failures["image"] == f"{bad.parent.name}/{bad.name}"]
    assert len(row) == 1 and row["stage"].iloc[0] == "embed", failures
    assert "non-finite embedding" in row["reason"].iloc[0]
    images = pd.read_parquet(nan_run / "tables" / "images.parquet")
    assert bad.name not in " ".join(images["image"])
    # an occluded copy of another photo may be dark enough to break too: that photo's failure, at its stage
    every = {f"{p.parent.name}/{p.name}" for p in means}
    assert set(images["image"]) | set(failures["image"]) == every and len(images) >= 3
    assert failures["reason"].str.contains("non-finite embedding").all()


def test_a_deleted_copy_going_nan_is_the_photos_faithfulness_failure(nan_run) -> None:
    """Black deletion darkens the chip below the graph's threshold: that photo's curves fail, the study goes on."""
    failures = pd.read_parquet(nan_run / "tables" / "failures.parquet")
    faithful = failures[failures["stage"] == "faithfulness"]
    assert len(faithful) >= 1 and faithful["reason"].str.contains("non-finite embedding").all(), failures
    curves = pd.read_parquet(nan_run / "tables" / "faithfulness.parquet")
    assert not set(faithful["image"]) & set(curves.get("image", pd.Series(dtype=str)))


def test_nothing_a_study_stores_is_infinite(nan_run) -> None:
    """No table of the run holds ±Inf (NaN marks "not applicable" in some columns, e.g. a CI of one value)."""
    for table in sorted((nan_run / "tables").glob("*.parquet")):
        numbers = pd.read_parquet(table).select_dtypes("number").to_numpy(dtype=np.float64)
        assert not np.isinf(numbers).any(), table.name


def test_report_of_that_study_shows_no_nan(nan_run, tmp_path) -> None:
    rc, _, err = leam(["report", nan_run, "--out", tmp_path / "report.html"])
    assert rc == 0, err
    text = re.sub(r"<[^>]+>", " ", (tmp_path / "report.html").read_text())
    assert "non-finite embedding (NaN or Inf) for …:" in text  # the failures, grouped by reason
    text = text.replace("(NaN or Inf)", "").replace("nan.onnx", "")  # the reason and the model file's name
    assert not re.search(r"(?<![\w'])(nan|inf)(?![\w'])", text, re.IGNORECASE), "a NaN or Inf is shown"


class HalfNaN(nn.Module):
    """A real module whose embedding is NaN for images darker than ``threshold`` (a user's bad division);
    ``seen``: the image means of its last forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        self.threshold, self.seen = -1e9, torch.zeros(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x.mean(dim=(1, 2, 3)).detach()
        return self.conv(x).mean(dim=(2, 3)) * torch.sqrt(self.seen - self.threshold)[:, None]


def test_the_python_api_refuses_by_name(means) -> None:
    inner = HalfNaN()
    model = from_module(inner, "arcface")
    chips = np.stack([align_file(p, model.spec.template).chip for p in means])
    names = [f"photo{i}.jpg" for i in range(len(chips))]
    assert np.isfinite(model.embed(chips, names=names)).all()
    order = np.argsort(inner.seen.numpy())
    inner.threshold = float(inner.seen[order[2:4]].mean())  # now the three darker photos break
    with pytest.raises(NonFiniteError, match=r"model 'HalfNaN' gives a non-finite embedding") as caught:
        model.embed(chips, names=names)
    named = re.search(r" for (.*): nothing", str(caught.value)).group(1).split(", ")
    assert sorted(named) == sorted(names[i] for i in order[:3]) and "\n" not in str(caught.value)


@pytest.mark.parametrize(("values", "problem"), [
    (np.array([[1.0, np.nan], [1.0, 2.0]]), "non-finite embedding"),
    (np.array([[1.0, 2.0], [np.inf, 2.0]]), "non-finite embedding"),
    (np.array([[0.0, 0.0], [1.0, 2.0]]), "embedding of zeros"),
    (np.array([[-0.0, 0.0]]), "embedding of zeros"),
])
def test_check_finite(values, problem) -> None:
    with pytest.raises(NonFiniteError, match=problem):
        check_finite(values, "m")
    assert check_finite(np.ones((3, 2)), "m").shape == (3, 2)
    assert check_finite(np.zeros((0, 4)), "m").shape == (0, 4)
    assert check_finite(np.zeros((2, 5, 5)), "m", what="map").shape == (2, 5, 5)  # a blank map is finite
