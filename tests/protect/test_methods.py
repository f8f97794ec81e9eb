"""The protection methods' registry: each method one file and one registration, found by the CLI, the
evaluation and the report; a new method needs nothing else."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from leam.protect.methods import Method, MethodSpec, Protected, list_methods, method_spec, register_method
from leam.protect.methods._registry import _REGISTRY


def test_every_method_is_registered_once_in_order_with_its_role():
    assert list_methods() == ["leam", "consensus", "random", "black", "dense"]
    assert list_methods("mask") == ["leam", "consensus"]
    assert list_methods("baseline") == ["random", "black", "dense"]
    assert [m for m in list_methods() if method_spec(m).optimised] == ["leam", "consensus", "random"]
    assert {method_spec(m).pixels_from for m in ("black", "dense")} == {"leam"}
    assert [m for m in list_methods() if method_spec(m).needs_consensus] == ["consensus"]


def test_the_cli_offers_the_registered_methods():
    from leam.cli.main import build_parser

    commands = next(a for a in build_parser()._actions if a.choices and "protect" in a.choices).choices
    options = {c: {a.dest: a.choices for a in commands[c]._actions} for c in ("protect", "protect-eval")}
    assert options["protect"]["mask"] == list_methods("mask")
    assert options["protect-eval"]["methods"] == list_methods()


def test_the_registry_the_run_folder_and_the_summary_load_no_model():
    code = ("import sys, leam.protect, leam.protect.methods, leam.protect.runs, leam.protect.summary; "
            "print(sorted(m for m in ('torch', 'leam.models') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_name_registered_twice_or_pixels_of_an_unknown_method_are_refused():
    before = dict(_REGISTRY)

    class Again(Method):
        spec = MethodSpec("black", role="baseline", optimised=False, label="x", colour="#000", note="x")

    class Orphan(Method):
        spec = MethodSpec("orphan", role="baseline", optimised=False, pixels_from="nowhere", label="x",
                          colour="#000", note="x")

    with pytest.raises(ValueError, match="'black' is already registered"):
        register_method(Again)
    with pytest.raises(ValueError, match="'nowhere', which is not registered"):
        register_method(Orphan)
    with pytest.raises(ValueError, match="expected a role"):
        MethodSpec("x", role="protection", optimised=False, label="x", colour="#000", note="x")
    assert _REGISTRY == before


def test_a_new_method_is_one_class_and_one_registration(face_setup, facenet_model):
    """A "white" baseline (the leam pixels set to white) registered here is made by ``protect_photo`` beside
    the built-in black one, on the same pixels."""
    from leam.protect.core import ProtectConfig, protect_photo
    from leam.protect.mask import leam_aggregates

    class WhitePixels(Method):
        spec = MethodSpec("white", role="baseline", optimised=False, pixels_from="leam", label="LEAM pixels, white",
                          colour="#ffffff", note="the leam pixels set to white")

        def protect(self, scene, masks, budgets, done):
            out = []
            for b in budgets:
                pixels = scene.photo.photo.copy()
                pixels[masks["leam", b]] = 255
                out.append(Protected("white", b, masks["leam", b], pixels, float("nan"), 255.0))
            return out

    photo, refs, _, _ = face_setup
    name = facenet_model.spec.name
    maps = {name: leam_aggregates(facenet_model, [photo.aligned[name]], refs[name].mean(0)[None])[0]}
    register_method(WhitePixels)
    try:
        assert list_methods("baseline")[-1] == "white"
        out = {p.method: p for p in protect_photo(photo, [facenet_model], refs, maps, [1.0], ["white", "black"],
                                                 ProtectConfig(steps=1))}
    finally:
        del _REGISTRY["white"]
    assert list(out) == ["black", "white"]  # the non-optimised methods in registration order
    white, black = out["white"], out["black"]
    assert (white.mask == black.mask).all() and white.mask.sum() > 0
    assert (white.pixels[white.mask] == 255).all() and (black.pixels[black.mask] == 0).all()
    assert (white.pixels[~white.mask] == photo.photo[~white.mask]).all()
    with pytest.raises(ValueError, match="unknown method"):
        protect_photo(photo, [facenet_model], refs, maps, [1.0], ["white"])
    assert np.isnan(white.objective)
