"""Face regions of an explanation: parse the face, tabulate which regions the maps pick out, draw it.

The plain functions behind ``leam parse`` and ``leam regions`` (and the demo's region pages).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from leam.explain import Explanation
from leam.face import AlignedFace
from leam.metrics.regions import DEFAULT_THRESHOLDS, region_shares, region_table, share_pivot
from leam.outputs import atomic_write_bytes, write_png
from leam.parse import FaceParser, LabelMap
from leam.render import label_overlay, regions_figure

PARSE_FILES = ("labels.png", "labels_rgb.png", "parse_overlay.png", "legend.json")  # of ``write_parse``
REGIONS_FILES = ("regions.csv", "regions.png")  # of ``write_regions``


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


def write_parse(labels: LabelMap, face: AlignedFace, out: str | Path) -> dict[str, str]:
    """``labels.png`` (palette PNG: value = class index, 255 = unlabelled), ``labels_rgb.png``,
    ``parse_overlay.png`` and ``legend.json``; returns {kind: file}."""
    out = Path(out)
    from leam.parse import CLASSES, PALETTE, UNLABELLED, UNLABELLED_NAME

    img = Image.fromarray(labels.labels, mode="L").convert("P")
    palette = np.zeros((256, 3), dtype=np.uint8)
    for i, name in enumerate(CLASSES):
        palette[i] = PALETTE[name]
    palette[UNLABELLED] = PALETTE[UNLABELLED_NAME]
    img.putpalette(palette.ravel().tolist())
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(out / "labels.png", buf.getvalue())
    write_png(out / "labels_rgb.png", labels.to_rgb())
    write_png(out / "parse_overlay.png", label_overlay(face.chip, labels.to_rgb()))
    legend = {
        "parser": labels.parser,
        "classes": {name: {"value": CLASSES.index(name), "rgb": PALETTE[name]} for name in labels.classes},
        UNLABELLED_NAME: {"value": UNLABELLED, "rgb": PALETTE[UNLABELLED_NAME]},
    }
    atomic_write_bytes(out / "legend.json", _json(legend))
    return {"labels": "labels.png", "labels_rgb": "labels_rgb.png", "overlay": "parse_overlay.png",
            "legend": "legend.json"}


def write_regions(ex: Explanation, result: RegionResult, out: str | Path, layer: str = "aggregate") -> dict[str, str]:
    """``regions.csv`` (the long table) and ``regions.png`` (the figure for ``layer``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "regions.csv", result.table.to_csv(index=False).encode())
    values = ex.aggregate if layer == "aggregate" else ex.maps[layer]
    thresholds = sorted(result.table.loc[result.table["measure"] == "share", "threshold"].unique())
    shares = region_shares(values, result.labels, thresholds)
    title = f"{Path(ex.aligned.source).name} · {ex.model} · {layer} · parser {result.labels.parser}"
    regions_figure(ex.aligned.chip, result.labels.to_rgb(), list(result.labels.categories), values, shares,
                   title, out / "regions.png")
    return {"regions_table": "regions.csv", "regions_figure": "regions.png"}


def parse_face(parser: FaceParser, photo: np.ndarray, face: AlignedFace) -> LabelMap:
    labels = parser.parse(photo, face)
    if labels.labels.shape != face.chip.shape[:2]:
        raise ValueError(f"parser {parser.name} returned {labels.labels.shape}, expected {face.chip.shape[:2]}")
    return labels


def _json(obj: object) -> bytes:
    import json

    return json.dumps(obj, indent=2).encode()
