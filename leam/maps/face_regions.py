"""Face regions of an explanation: the face parsed in the model's aligned frame, and which regions the
maps pick out (the computing half of ``leam parse`` and ``leam regions``; the files are written by
``leam.report.explanation``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leam.face import AlignedFace
from leam.maps.explain import Explanation
from leam.metrics.regions import DEFAULT_THRESHOLDS, region_table, share_pivot
from leam.parse import FaceParser, LabelMap


@dataclass
class RegionResult:
    labels: LabelMap
    table: pd.DataFrame  # long: layer, class, measure, threshold, value

    def pivot(self, layer: str = "aggregate") -> pd.DataFrame:
        return share_pivot(self.table, layer)


def explanation_regions(
    ex: Explanation, labels: LabelMap, thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> RegionResult:
    """Region statistics of every layer map and of the aggregate of ``ex``."""
    maps = {**ex.maps, "aggregate": ex.aggregate}
    return RegionResult(labels, region_table(maps, labels, thresholds))


def parse_face(parser: FaceParser, photo: np.ndarray, face: AlignedFace) -> LabelMap:
    """``parser``'s label map of ``face`` (cut from ``photo``), checked to be in the face's aligned frame."""
    labels = parser.parse(photo, face)
    if labels.labels.shape != face.chip.shape[:2]:
        raise ValueError(f"parser {parser.name} returned {labels.labels.shape}, expected {face.chip.shape[:2]}")
    return labels
