"""``black``: the ``leam`` pixels set to black, no optimisation (the reference study's occlusion)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from leam.protect.methods._registry import Method, MethodSpec, Protected, register_method


@register_method
class BlackPixels(Method):
    spec = MethodSpec(
        "black", role="baseline", optimised=False, pixels_from="leam", label="LEAM pixels, black",
        colour="#2c3e50", note="the leam pixels set to black (the reference study's occlusion)")

    def protect(self, scene, masks: Mapping[tuple[str, float], np.ndarray], budgets: Sequence[float],
                done: Sequence[Protected]) -> list[Protected]:
        out = []
        for b in budgets:
            pixels = scene.photo.photo.copy()
            pixels[masks["leam", b]] = 0
            out.append(Protected("black", b, masks["leam", b], pixels, math.nan, 255.0))
        return out
