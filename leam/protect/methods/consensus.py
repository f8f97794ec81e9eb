"""``consensus``: the budget's pixels with the highest value of the person's consensus map
(``leam.protect.mask.consensus_map``, drawn onto the photo), their content optimised like ``leam``'s."""

from __future__ import annotations

import numpy as np

from leam.protect.methods._registry import Method, MethodSpec, register_method


@register_method
class ConsensusPixels(Method):
    spec = MethodSpec(
        "consensus", role="mask", optimised=True, needs_consensus=True, label="consensus pixels, optimised",
        colour="#8e44ad",
        note="the same pixels chosen from the person's consensus map (every photo's and model's map carried into "
             "one aligned frame and averaged)")

    def pixels(self, scene, count: int, rng: np.random.Generator) -> np.ndarray:
        from leam.protect.mask import top_pixels

        return top_pixels(scene.consensus, scene.region, count)
