"""``random``: as many pixels as the budget allows, drawn uniformly from those the models see, their
content optimised like ``leam``'s (the random-mask baseline)."""

from __future__ import annotations

import numpy as np

from leam.protect.methods._registry import Method, MethodSpec, register_method


@register_method
class RandomPixels(Method):
    spec = MethodSpec(
        "random", role="baseline", optimised=True, label="random pixels, optimised", colour="#7f8c8d",
        note="as many pixels drawn uniformly from those the models see, optimised the same way")

    def pixels(self, scene, count: int, rng: np.random.Generator) -> np.ndarray:
        from leam.protect.mask import random_pixels

        return random_pixels(scene.region, count, rng)
