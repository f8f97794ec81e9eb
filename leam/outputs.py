"""Write an explanation to a folder: arrays, overlays, the photo overlay, a grid, a summary."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from leam import __version__
from leam._paths import unique_names, write_file
from leam.explain import Explanation
from leam.image import load_image
from leam.render import grid_figure, overlay, photo_overlay

# the files ``write_explanation`` writes into its folder, besides one overlay per layer in layers/
EXPLANATION_FILES = ("maps.npz", "chip.png", "aggregate.png", "photo_aggregate.png", "grid.png", "summary.json")
atomic_write_bytes = write_file  # the name the other writers of this package use


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


def summary_dict(ex: Explanation, files: dict[str, str]) -> dict:
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
    title = f"{Path(ex.aligned.source).name} · {ex.model} · cos {ex.cosine:.3f} · direction {ex.direction}"
    grid_figure(chip, ex.maps, ex.aggregate, title, out / "grid.png")
    files["grid"] = "grid.png"
    summary = summary_dict(ex, files)
    write_file(out / "summary.json", json.dumps(summary, indent=2).encode())
    return summary
