"""The faithfulness phase of a study (``leam study --faithfulness``): do a map's top pixels matter to the
model, more than rival maps' and trivial baselines', and is the map this person's?

For the first ``faithfulness_photos`` explained photos of a seeded sample of ``faithfulness_identities``
identities per model, every *ranking* of the chip's pixels is scored by deletion and insertion curves
(``leam.metrics.faithfulness.curves``) under each fill. A ranking is named by three columns:

- ``method``: ``leam``, ``gradcam``, ``gradxact`` (gradient × activation, no ReLU), ``saliency`` (input
  gradient), ``occlusion`` (black-box patch occlusion); baselines ``random``, ``random_face``, ``centre_prior``,
  ``population_prior`` (the mean default map of all *other* identities); person-specificity ``consensus`` (the
  mean default map of the person's *other* photos), ``other_person`` (a photo of another identity) and
  ``specific`` (``leam.metrics.specific``: the consensus less the population prior, clipped at 0), with
  ``specific_other``: deletion of the photo's ``specific`` ranking from another person's photo (their cosine to
  their own reference), stored under this photo's name to be paired with it; and
  ``default``: the rows of the map ``explain`` and ``study`` show by default, once more under that name;
- ``map``: a layer's own map, ``mean``, ``max`` or ``early`` (the mean of the first three layers:
  ``leam.maps.aggregate``), ``input`` (saliency), ``patch`` (occlusion), ``aggregate`` (the study's stored
  maps), or "";
- ``objective``: ``loss`` or ``similarity`` for gradient maps (whose gradient LEAM weights), else "".

Two units: ``population`` (per model: the sum of all explained photos' default maps, the pool of photos
another person's map is drawn from, and each person's consensus and specific map: ``population_unit``) and
``faithfulness`` (per model and sampled identity).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from leam.maps import AGGREGATIONS
from leam.maps.attribution import Attribution
from leam.maps.occlusion_map import occlusion_sensitivity
from leam.metrics.faithfulness import centre_prior, curves, pixel_order, random_order
from leam.metrics.occlusion import Embed
from leam.metrics.similarity import bhattacharyya
from leam.metrics.specific import consensus_map, normalised, prior_map, specific_map
from leam.models import FaceModel
from leam.parse import UNLABELLED
from leam.study.config import StudyConfig
from leam.study.units import _per_photo, failure, failure_reason

CAM_METHODS = ("leam", "gradcam", "gradxact")
AGGREGATE_MAPS = AGGREGATIONS  # mean, max, early (``leam.maps.aggregate``)
RIVAL_MAPS = ("mean", "early")  # the maps of Grad-CAM and gradient × activation scored
BASELINES = ("random", "random_face", "centre_prior", "population_prior")
PERSON = ("consensus", "other_person")
PATCH_FRACTION, STRIDE_FRACTION = 8, 16  # the black-box map's patch: 1/8 of the chip's side, stride 1/16
KEY = "\x1f"  # joins (method, map, objective) into a ranking's key


def min_photos(config: StudyConfig) -> int:
    """Photos an identity needs for a sampled photo with a consensus map of at least one other photo."""
    return 3 if config.reference == "baseline" else 2


def sample_identities(config: StudyConfig, dataset: dict) -> list[str]:
    """The identities whose photos are scored: a seeded sample of ``faithfulness_identities`` among those
    with ``min_photos`` photos, in the data's order (the same for every model)."""
    eligible = [i for i, photos in dataset.items() if len(photos) >= min_photos(config)]
    if len(eligible) <= config.faithfulness_identities:
        return eligible
    digest = hashlib.sha1(b"faithfulness").digest()
    rng = np.random.default_rng([config.seed, int.from_bytes(digest[:8], "little")])
    keep = set(rng.choice(len(eligible), config.faithfulness_identities, replace=False).tolist())
    return [i for k, i in enumerate(eligible) if k in keep]


def default_ranking(config: StudyConfig) -> tuple[str, str, str]:
    """(method, map, objective) of the map ``explain`` and ``study`` show by default."""
    return ("leam", config.aggregation, config.direction)


def population_unit(images: pd.DataFrame, load_map: Callable[[str, int], np.ndarray]) -> dict[str, np.ndarray]:
    """The sum and count of the default maps (``aggregate``) of all explained photos of a model, with the pool
    of photos (their unit, identity and index) another person's map is drawn from; and what sets each person
    apart (``leam.metrics.specific``), as float16 maps of the aligned frame:

    - ``prior``: the population prior, the normalised mean of every explained photo's map;
    - ``people``: the identities with at least one explained photo, in the rows' order, with ``people_photos``
      (how many), and for the ``k``-th of them ``consensus/<k>`` (the normalised mean of their maps) and,
      when anyone else has maps, ``specific/<k>`` (their consensus less the prior of everyone *else*).

    Memory: the identities' sums are kept in float32 until the total is known, one (H, W) per identity.

    ``images``: the model's image rows with a ``unit`` column; ``load_map(unit, index)``: a stored map."""
    explained = images[images["role"] == "explained"].reset_index(drop=True)
    total = None
    own: dict[str, tuple[np.ndarray, int]] = {}  # identity -> (sum of its maps, photos)
    for r in explained.itertuples():
        m = load_map(r.unit, r.array_index).astype(np.float64)
        total = m if total is None else total + m
        was, n = own.get(r.identity, (0.0, 0))
        own[r.identity] = ((was + m).astype(np.float32), n + 1)
    count = len(explained)
    out = {
        "sum": np.zeros((0, 0)) if total is None else total,
        "count": np.array(count),
        "units": explained["unit"].to_numpy(dtype=str),
        "identities": explained["identity"].to_numpy(dtype=str),
        "indices": explained["array_index"].to_numpy(dtype=np.int64),
        "people": np.array(list(own), dtype=str),
        "people_photos": np.array([n for _, n in own.values()], dtype=np.int64),
    }
    if total is not None:
        out["prior"] = normalised(total / count).astype(np.float16)
    for k, (mine, n) in enumerate(own.values()):
        consensus = normalised(mine / n)
        out[f"consensus/{k}"] = consensus.astype(np.float16)
        if count > n:
            out[f"specific/{k}"] = specific_map(consensus, prior_map(total, count, mine, n)).astype(np.float16)
    return out


def _split(key: str) -> tuple[str, str, str]:
    method, name, objective = key.split(KEY)
    return method, name, objective


def _key(method: str, name: str = "", objective: str = "") -> str:
    return KEY.join((method, name, objective))


def own_maps(config: StudyConfig, model: FaceModel, layers: list[str], chips: np.ndarray,
             refs: np.ndarray) -> list[dict[str, np.ndarray]]:
    """Per photo, {ranking key: (H, W) map} of the gradient methods, both objectives, in one batch each."""
    x = model.chips_to_tensor(chips)
    ref = torch.as_tensor(refs, dtype=torch.float32)
    out: list[dict[str, np.ndarray]] = [{} for _ in chips]
    for objective in ("loss", "similarity"):
        engine = Attribution(model.net, layers, direction=objective, methods=CAM_METHODS,
                             saliency=objective == config.direction)
        result = engine(x, ref, allow_self_reference=True)
        for method in CAM_METHODS:
            maps = result.maps[method]
            names = AGGREGATE_MAPS if method == "leam" else RIVAL_MAPS
            combined = {name: result.aggregate(method, name) for name in names}
            if method != "leam" and objective != config.direction:
                continue  # rivals: the study's objective only
            for j in range(len(chips)):
                for name in names:
                    out[j][_key(method, name, objective)] = combined[name][j].cpu().numpy()
                if method == "leam" and objective == config.direction:
                    for n in layers:
                        out[j][_key(method, n, objective)] = maps[n][j].cpu().numpy()
        if result.saliency is not None:
            for j in range(len(chips)):
                out[j][_key("saliency", "input", objective)] = result.saliency[j].cpu().numpy()
    return out


def faithfulness_unit(
    config: StudyConfig,
    model: FaceModel,
    identity: str,
    images: pd.DataFrame,
    arrays,
    population,
    load_arrays: Callable[[str], object],
    rng: np.random.Generator,
    embed: Embed | None = None,
) -> dict[str, pd.DataFrame]:
    """Deletion and insertion curves of every ranking for the sampled photos of one identity, and the
    Bhattacharyya coefficients of the person-specificity reading.

    ``images``/``arrays``: the identity unit's table and arrays; ``population``: the population unit's arrays;
    ``load_arrays(unit)``: another identity unit's arrays (for ``other_person``); ``embed``: what computes
    the gradient-free forwards (``leam.models.inference``; default ``model.embed``)."""
    name, spec = model.spec.name, model.spec
    embed = embed or model.embed
    explained = images[images["role"] == "explained"].sort_values("array_index")
    if explained.empty:
        return {}
    layers = [str(n) for n in (config.layers.get(name) or spec.default_layers)]
    chosen = explained.head(config.faithfulness_photos)
    index = chosen["array_index"].tolist()
    chips = np.stack([arrays[f"{i}/chip"] for i in index])
    refs = np.stack([arrays[f"{i}/ref"] for i in index]).astype(np.float32)
    failures: list[dict] = []

    def fail(j: int, exc: BaseException) -> None:  # one photo's problem (e.g. a NaN curve point) stops only it
        failures.append(failure(name, identity, str(chosen.iloc[j]["image"]), "faithfulness", failure_reason(exc)))

    own = _per_photo(lambda js: own_maps(config, model, layers, chips[js], refs[js]), list(range(len(index))), fail)
    stored = {i: arrays[f"{i}/aggregate"].astype(np.float64) for i in explained["array_index"]}
    total, count = population["sum"], int(population["count"])
    mine = sum(stored.values())
    prior = prior_map(total, count, mine, len(stored)) if count > len(stored) else None
    pool = [k for k, who in enumerate(population["identities"]) if who != identity]
    default = _key(*default_ranking(config))
    shape = spec.input_size

    def photo_rows(j: int, i: int) -> tuple[list[dict], list[dict]]:
        """The curve rows and BC rows of photo ``j`` (array index ``i``)."""
        face_rows, bc_rows = [], []
        chip, ref, emb = chips[j], refs[j], arrays[f"{i}/embedding"]
        face = arrays[f"{i}/labels"] != UNLABELLED
        maps = dict(own[j])
        side = min(shape)
        maps[_key("occlusion", "patch")] = occlusion_sensitivity(
            embed, chip, ref, max(1, side // PATCH_FRACTION), max(1, side // STRIDE_FRACTION), base=emb)
        maps[_key("centre_prior")] = centre_prior(shape)
        others = [stored[k] for k in stored if k != i]
        person = {"consensus": consensus_map(others) if others else None}
        other_photo = None  # (chip, reference, embedding) of another person's photo
        if pool:
            k = pool[int(rng.integers(len(pool)))]
            other, o = load_arrays(str(population["units"][k])), int(population["indices"][k])
            person["other_person"] = other[f"{o}/aggregate"].astype(np.float64)
            other_photo = tuple(other[f"{o}/{part}"] for part in ("chip", "ref", "embedding"))
        person["population_prior"] = prior
        if person["consensus"] is not None and prior is not None:
            person["specific"] = specific_map(person["consensus"], prior)
        for method, values in person.items():
            if values is not None:
                maps[_key(method, "aggregate")] = values
        orders = {key: pixel_order(values, rng) for key, values in maps.items()}  # ties: at random
        orders[_key("random")] = random_order(shape, rng)
        orders[_key("random_face")] = random_order(shape, rng, within=face if face.any() else None)
        rows = curves(embed, chip, ref, orders, config.fills, spec.threshold, spec.threshold_metric,
                      spec.mean_colour, base=emb)
        if "specific" in person and other_photo is not None:  # the same pixels deleted from another person
            o_chip, o_ref, o_emb = other_photo
            rows += curves(embed, o_chip, o_ref.astype(np.float32), {_key("specific_other", "aggregate"):
                           orders[_key("specific", "aggregate")]}, config.fills, spec.threshold,
                           spec.threshold_metric, spec.mean_colour, directions=("deletion",), base=o_emb)
        image = str(chosen.iloc[j]["image"])
        for row in rows:
            key = row.pop("method")
            method, map_name, objective = _split(key)
            face_rows.append({"model": name, "identity": identity, "image": image, "method": method,
                              "map": map_name, "objective": objective, **row})
            if key == default:
                face_rows.append({**face_rows[-1], "method": "default"})
        for method, values in person.items():
            if values is None:
                continue
            for p in config.pair_thresholds:
                try:
                    bc = bhattacharyya(maps[default], values, p)
                except ValueError:  # an all-zero map
                    bc = np.nan
                bc_rows.append({"model": name, "identity": identity, "image": image, "versus": method,
                                "threshold": np.nan if p is None else float(p), "bc": bc})
        return face_rows, bc_rows

    face_rows, bc_rows = [], []
    for j, i in enumerate(index):
        if j not in own:
            continue
        try:
            rows, bcs = photo_rows(j, i)
        except Exception as exc:  # noqa: BLE001 - whatever raised, this photo's failure row
            fail(j, exc)
            continue
        face_rows += rows
        bc_rows += bcs
    tables = {"faithfulness": pd.DataFrame(face_rows), "specificity": pd.DataFrame(bc_rows)}
    return {**tables, "failures": pd.DataFrame(failures)} if failures else tables
