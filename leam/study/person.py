"""What sets one person apart, for a folder of their photos against a study's population (``leam person``).

Each photo's default map is found against the mean embedding of the person's *other* photos (the study's
``mean`` reference, leave-one-out); the person's consensus is their normalised mean, the prior comes from a
study run of the same model, layers, direction, aggregation and alignment (its population unit's ``prior``, or
else the mean of its stored explained maps), and the specific map is the consensus less the prior, clipped at
0 (``leam.metrics.specific``). Region shares of each map's top pixels are read on the person's own photos'
label maps and averaged over them, as the explorer reads a consensus.

The plain functions here return data; ``leam.cli.person`` writes the files and prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from leam._io import text_name
from leam.data.folders import is_photo_name
from leam.data.images import load_image
from leam.errors import LeamError
from leam.face import AlignedFace, align_photo
from leam.maps.explain import embed_faces, explain_face
from leam.maps.face_regions import parse_face
from leam.metrics.regions import region_shares
from leam.metrics.specific import consensus_map, normalised, specific_map
from leam.models import FaceModel
from leam.parse import FaceParser
from leam.study.config import StudyConfig
from leam.study.store import RunStore, unit_dir_name

MAPS = ("consensus", "prior", "specific")


@dataclass(frozen=True)
class RunPrior:
    """A study run's population prior of one model (H, W) in [0, 1], where it came from, and the run's verdict
    on the specific map of the model (``faithfulness_stats.specific_verdicts``; None without one)."""

    values: np.ndarray
    source: str
    verdict: str | None
    validated: bool


@dataclass(frozen=True)
class PersonMaps:
    """One person's maps under one model, all (H, W) of the aligned frame: ``maps`` per photo (the default map
    against the others' mean), the ``consensus``, the run's ``prior`` and the ``specific`` map, with the mean
    aligned face and the region shares (``map``, ``threshold``, ``region``, ``share``)."""

    photos: list[str]
    skipped: list[tuple[str, str]]  # (photo, why) of the photos without a usable face
    maps: list[np.ndarray]
    consensus: np.ndarray
    prior: RunPrior
    specific: np.ndarray
    mean_face: np.ndarray
    shares: pd.DataFrame


def folder_photos(folder: str | Path) -> list[Path]:
    """The photos directly in ``folder`` (by their names' extensions), sorted; refused in one line when it is no
    folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LeamError(f"{text_name(str(folder))}: not a folder; expected a folder of one person's photos")
    return sorted(p for p in folder.iterdir() if is_photo_name(p))


def run_model(run_dir: str | Path, model: str | None) -> tuple[dict, str]:
    """(the run's ``run.json``, the model to use: ``model``, or the run's only model, or ``leam``'s default
    among several); refused in one line when the run has no such model."""
    from leam.models import DEFAULT_MODEL

    manifest = RunStore(run_dir).read_manifest()
    if manifest is None or "config" not in manifest:
        raise LeamError(f"{run_dir}: no run.json; --prior expects the folder of a `leam study` run")
    models = [str(m) for m in manifest["config"].get("models", [])]
    if model is None:
        if len(models) != 1 and DEFAULT_MODEL not in models:
            raise LeamError(f"{run_dir}: the run has maps of several models ({', '.join(models)}); choose one "
                            "with --model")
        model = models[0] if len(models) == 1 else DEFAULT_MODEL
    if model not in models:
        raise LeamError(f"{run_dir}: the run has no maps of {model} (its models: {', '.join(models) or 'none'}); "
                        "give --model one of them, or a run of that model")
    return manifest, model


def check_run_matches(run_dir: str | Path, manifest: dict, model: FaceModel, layers: Sequence[str],
                      direction: str, aggregation: str, detector: str) -> None:
    """Refuse (one line) a run whose maps of ``model`` were made otherwise than this command makes them: other
    layers, direction, aggregation, or alignment (template, detector)."""
    config = StudyConfig.from_dict(manifest["config"])
    name = model.spec.name
    spec = manifest.get("models", {}).get(name, {})
    theirs = list(config.layers.get(name) or spec.get("default_layers") or model.spec.default_layers)
    said = []
    if theirs != list(layers):
        said.append(f"layers {' '.join(theirs)}, not {' '.join(layers)} (--layers)")
    if config.direction != direction:
        said.append(f"--direction {config.direction}, not {direction}")
    if config.aggregation != aggregation:
        said.append(f"--aggregate {config.aggregation}, not {aggregation}")
    template = spec.get("template", model.spec.template.name)
    if template != model.spec.template.name or config.detector != detector:
        said.append(f"faces aligned to {template} by {config.detector}, not to {model.spec.template.name} by "
                    f"{detector} (--detector)")
    if said:
        raise LeamError(f"{run_dir}: its maps of {name} were made with {'; '.join(said)}: its prior is not "
                        "comparable; give the run's settings, or a run made with these")


def run_prior(run_dir: str | Path, model: str) -> RunPrior:
    """The population prior of ``model`` in the run: its population unit's ``prior`` when the run has one
    (``leam study --faithfulness``), else the normalised mean of the run's stored explained maps; with the run's
    verdict on the specific map. Refused in one line when the run has no maps of the model."""
    from leam.study import faithfulness_stats
    from leam.study.run_tables import scan_of

    store = RunStore(run_dir)
    population = unit_dir_name("population", model, "")
    found = store.unit_arrays(population) if store.is_done(population) else None
    with store.reading():
        tables = store.tables()
        if found is not None and "prior" in found.files:
            values, source = found["prior"].astype(np.float64), f"the population unit of {run_dir}"
        else:
            values, n = _mean_stored_map(store, tables, model)
            source = f"the mean of {n} stored maps of {run_dir}"
        validation = faithfulness_stats.specific_validation_of(
            scan_of(tables, "faithfulness") if "faithfulness" in tables else None)
    verdict = faithfulness_stats.specific_verdicts(validation).get(model)
    rows = validation[validation["model"] == model] if len(validation) else validation
    validated = bool(len(rows)) and any(g["holds"].all() for _, g in rows.groupby("fill"))
    return RunPrior(values, source, verdict, validated)


def _mean_stored_map(store: RunStore, tables, model: str) -> tuple[np.ndarray, int]:
    images = tables["images"] if "images" in tables else pd.DataFrame(columns=["model", "role"])
    explained = images[(images["model"] == model) & (images["role"] == "explained")]
    total, n = None, 0
    for identity, rows in explained.groupby("identity", sort=False):
        arrays = store.unit_arrays(unit_dir_name("identity", model, str(identity)))
        if arrays is None:
            continue
        with arrays:
            for i in rows["array_index"]:
                m = arrays[f"{int(i)}/aggregate"].astype(np.float64)
                total, n = (m if total is None else total + m), n + 1
    if total is None:
        raise LeamError(f"{store.root}: the run has no stored maps of {model} (no explained photo, or its tables "
                        "are missing: run `leam study` on it to the end)")
    return normalised(total / n), n


def explain_person(model: FaceModel, photos: Sequence[str | Path], prior: RunPrior, parser: FaceParser,
                   layers: Sequence[str], direction: str, aggregation: str, thresholds: Sequence[float],
                   face_rule: str = "only", detector: str = "dlib") -> PersonMaps:
    """The ``PersonMaps`` of ``photos`` (one person's) under ``model`` against ``prior``; a photo without a usable
    face is skipped (and named), fewer than two usable photos are refused in one line."""
    usable: list[tuple[str, np.ndarray, AlignedFace]] = []
    skipped = []
    for path in photos:
        name = text_name(str(path))
        try:
            img = load_image(path)
            usable.append((name, img, align_photo(img, model.spec.template, name, face_rule, detector)))
        except LeamError as exc:
            skipped.append((name, str(exc)))
    if len(usable) < 2:
        why = f" ({'; '.join(w for _, w in skipped[:3])})" if skipped else ""
        raise LeamError(f"{len(usable)} of {len(photos)} photos with a usable face{why}; at least 2 are needed, "
                        "each explained against the mean of the others")
    faces = [f for _, _, f in usable]
    emb = embed_faces(model, faces)
    maps = [explain_face(model, f, np.delete(emb, i, axis=0).mean(0), layers, direction, aggregation).aggregate
            for i, f in enumerate(faces)]
    consensus = consensus_map(maps)
    if prior.values.shape != consensus.shape:
        raise LeamError(f"the run's prior is {prior.values.shape}, the maps {consensus.shape}: not of one frame")
    specific = specific_map(consensus, prior.values)
    labels = [parse_face(parser, img, f) for _, img, f in usable]
    rows = []
    for name, values in zip(MAPS, (consensus, prior.values, specific)):
        per_photo = [region_shares(values, lab, thresholds) for lab in labels]
        for p in thresholds:
            for region in per_photo[0][float(p)]:
                share = float(np.mean([s[float(p)].get(region, 0.0) for s in per_photo]))
                rows.append({"map": name, "threshold": float(p), "region": region, "share": share})
    mean_face = np.mean([f.chip.astype(np.float64) for f in faces], axis=0)
    return PersonMaps([n for n, _, _ in usable], skipped, maps, consensus, prior, specific, mean_face,
                      pd.DataFrame(rows))
