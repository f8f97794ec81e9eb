"""``leam``: the budget's pixels with the highest LEAM map (the mean of the ensemble's aggregate maps drawn
onto the photo, ``leam.protect.mask.photo_map``), their content optimised within the L∞ bound ε."""

from __future__ import annotations

import numpy as np

from leam.protect.methods._registry import Method, MethodSpec, register_method


@register_method
class LeamPixels(Method):
    spec = MethodSpec(
        "leam", role="mask", optimised=True, label="LEAM pixels, optimised", colour="#c0392b",
        note="the budget's pixels with the highest LEAM map (mean of the ensemble's aggregate maps drawn onto the "
             "photo), their content optimised")

    def pixels(self, scene, count: int, rng: np.random.Generator) -> np.ndarray:
        from leam.protect.mask import top_pixels

        return top_pixels(scene.values, scene.region, count)
