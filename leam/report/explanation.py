"""The files of an explanation: arrays, overlays, the photo overlay, a grid and a summary
(``write_explanation``), the face parse (``write_parse``) and its face regions (``write_regions``).

Writers only: the explanation, the label map and the region table are made in ``leam.maps``.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from leam import __version__
from leam._io import write_file
from leam._paths import unique_names
from leam.data.images import load_image
from leam.metrics.regions import region_shares
from leam.report.render import grid_figure, label_overlay, overlay, photo_overlay, regions_figure

if TYPE_CHECKING:  # the report never imports torch: the types of leam.maps are for reading only
    from leam.face import AlignedFace
    from leam.maps.explain import Explanation
    from leam.maps.face_regions import RegionResult
    from leam.parse import LabelMap

# the files ``write_explanation`` writes into its folder, besides one overlay per layer in layers/
EXPLANATION_FILES = ("maps.npz", "chip.png", "aggregate.png", "photo_aggregate.png", "grid.png", "summary.json")
PARSE_FILES = ("labels.png", "labels_rgb.png", "parse_overlay.png", "legend.json")  # of ``write_parse``
REGIONS_FILES = ("regions.csv", "regions.png")  # of ``write_regions``


def layer_files(layers: Sequence[str]) -> dict[str, str]:
    """{layer: ``layers/<name>.png``}: layer names made file-system safe (ONNX names hold '/'), and unique
    even where two names become one (``a/b`` and ``a_b``) or differ only in case."""
    safe = [re.sub(r"[^A-Za-z0-9._-]", "_", name) + ".png" for name in layers]
    return {name: f"layers/{file}" for name, file in zip(layers, unique_names(safe))}


def explanation_files(out: str | Path, layers: Sequence[str]) -> list[Path]:
    """Every file ``write_explanation`` writes for ``layers`` into ``out``, to check before any work."""
    out = Path(out)
    return [out / name for name in EXPLANATION_FILES] + [out / rel for rel in layer_files(layers).values()]


def write_png(path: Path, pixels: np.ndarray) -> None:
    """``pixels`` as a PNG file, written whole or not at all."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    write_file(path, buf.getvalue())


def explanation_summary(ex: Explanation, files: dict[str, str]) -> dict:
    """Everything ``summary.json`` holds: the photo, the references, the model, the scores, the face and
    its warp, and the files written."""
    face = ex.aligned
    return {
        "leam_version": __version__,
        "image": face.source,
        "references": ex.references,
        "model": ex.model,
        "layers": ex.layers,
        "direction": ex.direction,
        "aggregation": ex.aggregation,
        "cosine_similarity": ex.cosine,
        "euclidean_distance": ex.distance,
        "image_size": {"height": face.photo_shape[0], "width": face.photo_shape[1]},
        "face_box": dict(zip(("left", "top", "right", "bottom"), face.face.box)),
        "landmarks": face.face.landmarks.tolist(),
        "warp_photo_to_chip": face.warp.to_dict(),
        "files": files,
    }


def write_explanation(ex: Explanation, out: str | Path, photo: np.ndarray | None = None) -> dict:
    """Write ``ex`` into ``out``; returns the summary (also saved as ``summary.json``, written last)."""
    out = Path(out)
    chip = ex.aligned.chip
    files: dict[str, str] = {"maps": "maps.npz", "chip": "chip.png"}

    arrays = {f"{k}": v.astype(np.float32) for k, v in ex.maps.items()}
    arrays["aggregate"] = ex.aggregate.astype(np.float32)
    arrays.update({f"raw/{k}": v.astype(np.float32) for k, v in ex.raw.items()})
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_file(out / "maps.npz", buf.getvalue())

    write_png(out / "chip.png", chip)
    for name, rel in layer_files(list(ex.maps)).items():
        write_png(out / rel, overlay(chip, ex.maps[name]))
        files[f"overlay:{name}"] = rel
    write_png(out / "aggregate.png", overlay(chip, ex.aggregate))
    files["overlay:aggregate"] = "aggregate.png"
    if photo is None:
        photo = load_image(ex.aligned.source)
    write_png(out / "photo_aggregate.png", photo_overlay(photo, ex.aggregate, ex.aligned.warp))
    files["photo_overlay:aggregate"] = "photo_aggregate.png"
    title = (f"{Path(ex.aligned.source).name} · {ex.model} · cos {ex.cosine:.3f} · direction {ex.direction} · "
             f"aggregate {ex.aggregation}")
    grid_figure(chip, ex.maps, ex.aggregate, title, out / "grid.png")
    files["grid"] = "grid.png"
    summary = explanation_summary(ex, files)
    write_file(out / "summary.json", json.dumps(summary, indent=2).encode())
    return summary


def write_parse(labels: LabelMap, face: AlignedFace, out: str | Path) -> dict[str, str]:
    """``labels.png`` (palette PNG: value = class index, 255 = unlabelled), ``labels_rgb.png``,
    ``parse_overlay.png`` and ``legend.json``; returns {kind: file}."""
    from leam.face.labels import CLASSES, PALETTE, UNLABELLED, UNLABELLED_NAME

    out = Path(out)
    img = Image.fromarray(labels.labels, mode="L").convert("P")
    palette = np.zeros((256, 3), dtype=np.uint8)
    for i, name in enumerate(CLASSES):
        palette[i] = PALETTE[name]
    palette[UNLABELLED] = PALETTE[UNLABELLED_NAME]
    img.putpalette(palette.ravel().tolist())
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    write_file(out / "labels.png", buf.getvalue())
    write_png(out / "labels_rgb.png", labels.to_rgb())
    write_png(out / "parse_overlay.png", label_overlay(face.chip, labels.to_rgb()))
    legend = {
        "parser": labels.parser,
        "classes": {name: {"value": CLASSES.index(name), "rgb": PALETTE[name]} for name in labels.classes},
        UNLABELLED_NAME: {"value": UNLABELLED, "rgb": PALETTE[UNLABELLED_NAME]},
    }
    write_file(out / "legend.json", json.dumps(legend, indent=2).encode())
    return {"labels": "labels.png", "labels_rgb": "labels_rgb.png", "overlay": "parse_overlay.png",
            "legend": "legend.json"}


def write_regions(ex: Explanation, result: RegionResult, out: str | Path, layer: str = "aggregate") -> dict[str, str]:
    """``regions.csv`` (the long table) and ``regions.png`` (the figure for ``layer``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_file(out / "regions.csv", result.table.to_csv(index=False).encode())
    values = ex.aggregate if layer == "aggregate" else ex.maps[layer]
    thresholds = sorted(result.table.loc[result.table["measure"] == "share", "threshold"].unique())
    shares = region_shares(values, result.labels, thresholds)
    title = f"{Path(ex.aligned.source).name} · {ex.model} · {layer} · parser {result.labels.parser}"
    regions_figure(ex.aligned.chip, result.labels.to_rgb(), list(result.labels.categories), values, shares,
                   title, out / "regions.png")
    return {"regions_table": "regions.csv", "regions_figure": "regions.png"}
