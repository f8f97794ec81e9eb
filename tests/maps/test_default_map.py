"""The map ``explain`` (and ``regions``, ``study``, ``demo``) shows by default is the one
``leam.maps.DEFAULT_AGGREGATION`` / ``DEFAULT_DIRECTION`` name, and the reference study's map (the mean of the
default layers, ``loss``) stays one option away: each recomputed here from the per-layer maps with plain NumPy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from leam.maps import AGGREGATIONS, DEFAULT_AGGREGATION, DEFAULT_DIRECTION, DIRECTIONS
from leam.maps.aggregate import EARLY_LAYERS
from leam.maps.explain import explain_file


def _photos(lfw_dir: Path) -> tuple[Path, Path]:
    person = next(p for p in sorted(lfw_dir.iterdir()) if p.is_dir() and len(list(p.iterdir())) >= 2)
    a, b = sorted(person.iterdir())[:2]
    return a, b


def _by_hand(maps: dict[str, np.ndarray], layers: list[str], aggregation: str) -> np.ndarray:
    stack = np.stack([maps[name] for name in layers])
    if aggregation == "early":
        return stack[:EARLY_LAYERS].mean(0)
    return stack.max(0) if aggregation == "max" else stack.mean(0)


def test_the_default_map_is_the_declared_one_and_the_reference_map_stays_by_name(lfw_dir, dlib_resnet_model) -> None:
    assert DEFAULT_AGGREGATION in AGGREGATIONS and DEFAULT_DIRECTION in DIRECTIONS
    a, b = _photos(lfw_dir)
    default = explain_file(dlib_resnet_model, a, [b])
    assert (default.direction, default.aggregation) == (DEFAULT_DIRECTION, DEFAULT_AGGREGATION)
    np.testing.assert_allclose(default.aggregate, _by_hand(default.maps, default.layers, DEFAULT_AGGREGATION),
                               atol=1e-6)
    reference = explain_file(dlib_resnet_model, a, [b], direction="loss", aggregation="mean")
    np.testing.assert_allclose(reference.aggregate, _by_hand(reference.maps, reference.layers, "mean"), atol=1e-6)
    if (DEFAULT_DIRECTION, DEFAULT_AGGREGATION) != ("loss", "mean"):  # the two maps are two different maps
        assert np.abs(default.aggregate - reference.aggregate).max() > 0.05
