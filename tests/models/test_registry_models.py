"""Every registered model whose weights are installed, through the same checks: a new model registered
with ``@register_model`` is tested here without a new test (as timm's tests run over its registry).

On one real pair (two lfw-demo photos of one person): the embedding's shape, the layers ``leam layers``
lists (the defaults among them), and LEAM maps that are not blank at any default layer.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest

from leam.cli.main import main
from leam.face import AlignedFace, align_file
from leam.maps.explain import explain_face
from leam.models import FaceModel, create_model, default_weights_path, list_models, model_spec
from tests.conftest import SHARED_DATA

PERSON = SHARED_DATA / "lfw-demo" / "Cameron_Diaz"
PAIR = (PERSON / "Cameron_Diaz_0001.jpg", PERSON / "Cameron_Diaz_0002.jpg")


def installed(name: str) -> pytest.param:
    missing = default_weights_path(name) is None
    return pytest.param(name, marks=pytest.mark.skipif(missing, reason=f"{name}: no weights installed"))


MODELS = [installed(name) for name in list_models()]


@cache
def model_and_faces(name: str) -> tuple[FaceModel, tuple[AlignedFace, AlignedFace]]:
    """The model, and the pair aligned to its template (built once per model)."""
    model = create_model(name)
    faces = tuple(align_file(p, model.spec.template, largest_face=True) for p in PAIR)
    return model, faces


@pytest.fixture
def pair() -> tuple[Path, Path]:
    if not all(p.is_file() for p in PAIR):
        pytest.skip(f"shared photos not found at {PERSON} (expected ../shared/data next to the repo)")
    return PAIR


@pytest.mark.parametrize("name", list_models())
def test_spec_chip_is_its_template_chip(name):
    """The size a model is fed is the chip size its alignment template states (no weights needed)."""
    spec = model_spec(name)
    assert spec.input_size == spec.template.size
    assert spec.template.points.shape == (5, 2) and spec.default_layers


@pytest.mark.parametrize("name", MODELS)
def test_embed_shape(name, pair):
    model, faces = model_and_faces(name)
    emb = model.embed(np.stack([f.chip for f in faces]))
    assert emb.shape == (2, model.spec.embedding_size) and emb.dtype == np.float32
    assert np.isfinite(emb).all() and not np.allclose(emb[0], emb[1])


@pytest.mark.parametrize("name", MODELS)
def test_layers_lists_the_default_layers(name, capsys):
    assert main(["layers", "--model", name]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line[:2] in ("* ", "  ")]
    listed = [row[2:].split()[0] for row in rows]
    starred = {row[2:].split()[0] for row in rows if row.startswith("* ")}
    assert listed, "leam layers listed no layer"
    assert starred == set(model_spec(name).default_layers) <= set(listed)


@pytest.mark.parametrize("name", MODELS)
def test_leam_maps_are_not_blank_on_a_real_face(name, pair):
    model, (face, reference) = model_and_faces(name)
    ex = explain_face(model, face, model.embed(reference.chip[None])[0])
    assert ex.layers == list(model.spec.default_layers)
    for layer, m in ex.maps.items():
        assert m.shape[0] > 1 and np.isfinite(m).all(), layer
        assert m.max() > 0 and m.std() > 0, f"{name}: the map at {layer} is blank"
    assert ex.aggregate.shape == model.spec.input_size and ex.aggregate.std() > 0
    assert -1 < ex.cosine < 1
