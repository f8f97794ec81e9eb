"""The study report's examples: a few identities with, per model, the aligned face, its aggregate map and its
face regions, read from the run's stored maps."""

from __future__ import annotations

import numpy as np
import pandas as pd

from leam.report import plots
from leam.report.page import esc, img, note
from leam.study.store import RunStore, unit_dir_name

EXAMPLES = 6  # identities shown with their maps


def examples_body(store: RunStore, tables: dict[str, pd.DataFrame], manifest: dict) -> str:
    """The examples section's HTML: up to ``EXAMPLES`` identities, per model their face, map and regions."""
    models = list(manifest.get("config", {}).get("models", []))
    images = tables["images"]
    explained = images[images["role"] == "explained"]
    counts = explained.groupby("identity", sort=False)["model"].nunique()
    chosen = list(counts[counts == counts.max()].index[:EXAMPLES]) if len(counts) else []
    examples = []
    for identity in chosen:
        rows = explained[explained["identity"] == identity]
        image = rows["image"].iloc[0]
        ex: dict = {"identity": identity, "image": image}
        for model in models:
            row = rows[(rows["model"] == model) & (rows["image"] == image)]
            if len(row) and (maps := _example_maps(store, model, identity, int(row["array_index"].iloc[0]))):
                ex[model] = maps
        if any(model in ex for model in models):
            examples.append(ex)
    if not examples:
        return note("No maps to show: no explained photos, or the run's parts/ folder (where the maps are kept) "
                    "is missing.")
    listing = "".join(f"<li>{esc(e['identity'])}: <code>{esc(e['image'])}</code></li>" for e in examples)
    body = [note("Per row, one photo of an identity; per model its aligned face, the aggregate LEAM map over it "
                 "(colour scale jet: blue low, red high) and the face parser's regions over it."),
            img(plots.png_bytes(plots.examples_figure(examples, models)), "example identities"),
            f"<ol>{listing}</ol>"]
    return "\n".join(body)


def _example_maps(store: RunStore, model: str, identity: str, index: int) -> dict | None:
    from leam.face.labels import CLASSES, UNLABELLED, UNLABELLED_NAME, LabelMap

    arrays = store.unit_arrays(unit_dir_name("identity", model, identity))
    if arrays is None:
        return None
    with arrays:
        chip = arrays[f"{index}/chip"]
        values = arrays[f"{index}/aggregate"].astype(np.float64)
        labels = arrays[f"{index}/labels"]
    present = [CLASSES[v] if v != UNLABELLED else UNLABELLED_NAME for v in np.unique(labels)]
    label_map = LabelMap(labels, tuple(c for c in present if c != UNLABELLED_NAME), "stored")
    return {"chip": chip, "aggregate": values, "labels_rgb": label_map.to_rgb(), "classes": present}
