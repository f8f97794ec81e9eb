"""``dense``: every pixel the models see, optimised under the L∞ bound ε_d = ‖δ_leam‖₂ / √(3n) (n such
pixels) and the L2 bound ‖δ_leam‖₂: the ``leam`` perturbation's L2 norm spread over the whole face
(pixels no model sees are left alone: changing them cannot move an embedding). ε_d is the bound at
which ±ε_d everywhere has exactly that norm; the optimiser need not use all of it, so a dense
perturbation's L2 norm is at most the leam one's (the evaluation reports both)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from leam.protect.methods._registry import Method, MethodSpec, Protected, register_method


@register_method
class DensePerturbation(Method):
    spec = MethodSpec(
        "dense", role="baseline", optimised=False, pixels_from="leam", label="all pixels, equal L2",
        colour="#2980b9",
        note="every pixel the models see, optimised under an L∞ bound and an L2 bound equal to the leam "
             "perturbation's L2 norm")

    def protect(self, scene, masks: Mapping[tuple[str, float], np.ndarray], budgets: Sequence[float],
                done: Sequence[Protected]) -> list[Protected]:
        from leam.protect.optimise import dense_epsilon

        leam = _leam_versions(scene, masks, budgets, done)
        photo, region = scene.photo.photo, scene.region
        l2 = [float(np.linalg.norm(leam[b].pixels.astype(np.float64) - photo)) for b in budgets]
        eps = [min(255.0, dense_epsilon(r, int(region.sum()))) for r in l2]
        keep = [i for i, e in enumerate(eps) if e > 0]
        out = []
        if keep:
            res = scene.optimise([region] * len(keep), [eps[i] for i in keep], [l2[i] for i in keep],
                                 scene.seed("dense"), exact_bound=False)
            for i, (pixels, obj) in zip(keep, res):
                out.append(Protected("dense", budgets[i], region, pixels, obj, eps[i]))
        for i in set(range(len(budgets))) - set(keep):
            out.append(Protected("dense", budgets[i], region, photo.copy(), math.nan, 0.0))
        return sorted(out, key=lambda p: budgets.index(p.budget))


def _leam_versions(scene, masks, budgets: Sequence[float], done: Sequence[Protected]) -> dict[float, Protected]:
    """{budget: the ``leam`` version}: those made already, the others optimised here (not returned as
    versions: the dense baseline only needs their L2 norm)."""
    leam = {p.budget: p for p in done if p.method == "leam"}
    missing = [b for b in budgets if b not in leam]
    if missing:
        eps = scene.config.epsilon
        res = scene.optimise([masks["leam", b] for b in missing], [eps] * len(missing), None,
                             scene.seed("dense-leam"))
        for b, (pixels, obj) in zip(missing, res):
            leam[b] = Protected("leam", b, masks["leam", b], pixels, obj, eps)
    return leam
