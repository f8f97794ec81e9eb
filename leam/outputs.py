"""Write an explanation to a folder: arrays, overlays, the photo overlay, a grid, a summary."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from leam import __version__
from leam.explain import Explanation
from leam.image import load_image
from leam.render import grid_figure, overlay, photo_overlay


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    (out / "layers").mkdir(parents=True, exist_ok=True)
    chip = ex.aligned.chip
    files: dict[str, str] = {"maps": "maps.npz", "chip": "chip.png"}

    arrays = {f"{k}": v.astype(np.float32) for k, v in ex.maps.items()}
    arrays["aggregate"] = ex.aggregate.astype(np.float32)
    arrays.update({f"raw/{k}": v.astype(np.float32) for k, v in ex.raw.items()})
    with tempfile.NamedTemporaryFile(dir=out, suffix=".npz", delete=False) as tmp:
        np.savez_compressed(tmp, **arrays)
    os.replace(tmp.name, out / "maps.npz")

    Image.fromarray(chip).save(out / "chip.png")
    for name, m in ex.maps.items():
        rel = f"layers/{re.sub(r'[^A-Za-z0-9._-]', '_', name)}.png"  # ONNX layer names hold '/'"
        Image.fromarray(overlay(chip, m)).save(out / rel)
        files[f"overlay:{name}"] = rel
    Image.fromarray(overlay(chip, ex.aggregate)).save(out / "aggregate.png")
    files["overlay:aggregate"] = "aggregate.png"
    if photo is None:
        photo = load_image(ex.aligned.source)
    Image.fromarray(photo_overlay(photo, ex.aggregate, ex.aligned.warp)).save(out / "photo_aggregate.png")
    files["photo_overlay:aggregate"] = "photo_aggregate.png"
    title = f"{Path(ex.aligned.source).name} · {ex.model} · cos {ex.cosine:.3f} · direction {ex.direction}"
    grid_figure(chip, ex.maps, ex.aggregate, title, out / "grid.png")
    files["grid"] = "grid.png"
    summary = summary_dict(ex, files)
    atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=2).encode())
    return summary
