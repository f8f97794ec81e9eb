"""The units of work of a study; each is a pure function of the config and the data, so a unit
redone after a kill gives the same rows.

- identity unit (model, identity): align, embed, LEAM maps, face regions, occlusion drops;
- transfer unit (identity, target model): other models' maps occluding this model's input;
- pairs unit (model): BC / EMD between maps of same-identity and different-identity pairs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from skimage.transform import AffineTransform, warp

from leam.data.dataset import Photo
from leam.data.images import load_image
from leam.errors import LeamError
from leam.face import align_photo
from leam.maps import LEAM
from leam.maps.leam import SELF_REFERENCE_COS
from leam.metrics.occlusion import Embed, occlusion_drops
from leam.metrics.regions import region_table
from leam.metrics.similarity import bhattacharyya, emd
from leam.models import FaceModel
from leam.parse import UNLABELLED, FaceParser
from leam.study.config import StudyConfig

BATCH = 16


@dataclass(frozen=True)
class Unit:
    kind: str  # "identity", "transfer" or "pairs"
    model: str  # the model explained (identity, pairs) or occluded (transfer)
    identity: str = ""

    @property
    def key(self) -> tuple[str, ...]:
        return (self.kind, self.model, self.identity)


def unit_rng(config: StudyConfig, unit: Unit) -> np.random.Generator:
    digest = hashlib.sha1("\x1f".join(unit.key).encode()).digest()
    return np.random.default_rng([config.seed, int.from_bytes(digest[:8], "little")])


def model_layers(config: StudyConfig, model: FaceModel) -> list[str]:
    return list(config.layers.get(model.spec.name) or model.spec.default_layers)


def occlusion_layers(config: StudyConfig, layers: list[str]) -> list[str]:
    """The maps whose top pixels are occluded: ``config.occlusion_layers`` with "all" for every layer
    and the aggregate."""
    names = [*layers, "aggregate"] if "all" in config.occlusion_layers else list(config.occlusion_layers)
    unknown = [n for n in names if n not in layers and n != "aggregate"]
    if unknown:
        raise LeamError(f"--occlusion-layers: {unknown} are not among the layers studied {layers} (give names of "
                        "those, or 'aggregate', or 'all'; --layers MODEL=... sets the layers studied)")
    return names


def failure(model: str, identity: str, image: str, stage: str, reason: str) -> dict:
    return {"model": model, "identity": identity, "image": image, "stage": stage, "reason": reason}


def failure_reason(exc: BaseException) -> str:
    """One line saying why: leam's own errors as they say it, others with their type (``MemoryError``,
    ``ValueError: ...``) so that a library's error, or a bug that hits every photo, shows for what it is."""
    text = " ".join(str(exc).split())
    if isinstance(exc, LeamError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def identity_unit(
    config: StudyConfig, model: FaceModel, parser: FaceParser, photos: list[Photo], rng: np.random.Generator,
    embed: Embed | None = None,
) -> tuple[dict[str, pd.DataFrame], dict[str, np.ndarray]]:
    """All per-image results of one identity under one model.

    Whatever goes wrong with one photo (leam's errors, a library's, running out of memory) is that photo's
    failure row, with the stage ("face", "embed", "map", "parse", "regions", "occlusion") and the reason;
    the other photos go on. A batch step that fails is redone photo by photo to find the photo.

    Each photo is embedded once (a batch of all usable chips): that embedding gives the references, the
    distance to the reference and the unoccluded score of the occlusion (and of the transfer, which reads
    it from the arrays); LEAM's own forward, which its gradients need, gives the cosine. ``embed``: what
    computes the occlusion's forwards (``leam.models.inference``; default ``model.embed``); the photos' own
    embeddings are PyTorch's whatever it is, so the references and maps do not depend on it."""
    name, identity = model.spec.name, photos[0].identity
    embed = embed or model.embed
    failures, usable = [], []

    def fail(p: Photo, stage: str, exc: BaseException | str) -> None:
        reason = exc if isinstance(exc, str) else failure_reason(exc)
        failures.append(failure(name, identity, p.name, stage, reason))

    for p in photos:
        try:
            img = load_image(p.path)
            usable.append((p, img, align_photo(img, model.spec.template, p.name, config.face, config.detector)))
        except Exception as exc:  # one photo's problem, whatever raised it
            fail(p, "face", exc)
    kept = _per_photo(lambda idx: list(model.embed(np.stack([usable[i][2].chip for i in idx]),
                                                   names=[usable[i][0].name for i in idx])),
                      list(range(len(usable))), lambda i, exc: fail(usable[i][0], "embed", exc))
    usable, emb = [usable[i] for i in kept], np.stack(list(kept.values())) if kept else None
    if len(usable) < 2:
        failures.append(failure(name, identity, "", "identity",
                                f"{len(usable)} usable photo(s); at least 2 are needed for a reference"))
        return {"failures": pd.DataFrame(failures)}, {}

    if config.reference == "baseline":
        targets = list(range(1, len(usable)))
        refs = {i: emb[0] for i in targets}
        ref_names = {i: usable[0][0].name for i in targets}
    else:
        targets = list(range(len(usable)))
        refs = {i: np.delete(emb, i, axis=0).mean(0) for i in targets}
        ref_names = {i: "mean of the others" for i in targets}

    layers = model_layers(config, model)
    occluded = occlusion_layers(config, layers)
    engine = LEAM(model.net, layers, config.direction, name=model.spec.name)
    image_rows, region_frames, occlusion_rows, arrays = [], [], [], {}
    if config.reference == "baseline":
        p0, _, f0 = usable[0]
        image_rows.append(_image_row(name, p0, f0, "reference", p0.name, 1.0, 0.0, 0))
        arrays["0/chip"] = f0.chip

    def leam_maps(idx: list[int]) -> list[tuple[float, dict[str, np.ndarray], np.ndarray]]:
        """(cosine, maps by layer, aggregate) of the photos ``idx``, in one batch."""
        x = model.chips_to_tensor(np.stack([usable[i][2].chip for i in idx]))
        ref = torch.as_tensor(np.stack([refs[i] for i in idx]), dtype=torch.float32)
        result = engine(x, ref, allow_self_reference=True, names=[usable[i][0].name for i in idx])
        agg = result.aggregate(config.aggregation).cpu().numpy()
        return [(float(result.cosine[j]), {layer: result.maps[layer][j].cpu().numpy() for layer in layers}, agg[j])
                for j in range(len(idx))]

    for start in range(0, len(targets), BATCH):
        done = _per_photo(leam_maps, targets[start : start + BATCH], lambda i, exc: fail(usable[i][0], "map", exc))
        for i, (cos, maps, agg) in done.items():
            p, img, face = usable[i]
            if cos >= SELF_REFERENCE_COS:
                fail(p, "reference", "the photo equals its reference (cosine 1): no gradient, no map")
                continue
            stage = "parse"
            try:
                labels = parser.parse(img, face)
                stage = "regions"
                table = region_table({**maps, "aggregate": agg}, labels, config.thresholds)
                stage = "occlusion"
                face_region = labels.labels != UNLABELLED
                named = {layer: agg if layer == "aggregate" else maps[layer] for layer in occluded}
                drops = occlusion_drops(embed, face.chip, refs[i], named, config.occlusion_percents,
                                        config.occlusion_seeds, face_region if face_region.any() else None, rng,
                                        base=emb[i])
            except Exception as exc:  # this photo's statistics only
                fail(p, stage, exc)
                continue
            region_frames.append(table.assign(model=name, identity=identity, image=p.name))
            for row in drops:
                for layer in [row.pop("layer")] if "layer" in row else occluded:  # baselines: one copy per map
                    occlusion_rows.append({"model": name, "identity": identity, "image": p.name, "layer": layer,
                                           **row})
            dist = float(np.linalg.norm(emb[i] - refs[i]))
            image_rows.append(_image_row(name, p, face, "explained", ref_names[i], cos, dist, i))
            arrays[f"{i}/chip"] = face.chip
            arrays[f"{i}/ref"] = refs[i].astype(np.float32)
            arrays[f"{i}/embedding"] = emb[i].astype(np.float32)  # the transfer's unoccluded chip, not embedded again
            arrays[f"{i}/labels"] = labels.labels
            arrays[f"{i}/aggregate"] = agg.astype(np.float16)
            for layer, m in maps.items():
                arrays[f"{i}/{layer}"] = m.astype(np.float16)
    tables = {
        "images": pd.DataFrame(image_rows),
        "regions": pd.concat(region_frames, ignore_index=True) if region_frames else pd.DataFrame(),
        "occlusion": pd.DataFrame(occlusion_rows),
        "failures": pd.DataFrame(failures),
    }
    return tables, arrays


def _per_photo(step, idx: list[int], fail) -> dict[int, object]:
    """{i: result} of ``step(idx)`` (one result per index, in order) for the indices ``idx`` of photos;
    when the batch raises, each photo is tried alone and ``fail(i, exc)`` records the ones that raise."""
    if not idx:
        return {}
    try:
        return dict(zip(idx, step(idx)))
    except Exception as exc:  # a photo's, or every photo's: found out one by one
        if len(idx) == 1:
            fail(idx[0], exc)
            return {}
    out = {}
    for i in idx:
        out.update(_per_photo(step, [i], fail))
    return out


def _image_row(model: str, p: Photo, face, role: str, reference: str, cos: float, dist: float, index: int) -> dict:
    """One photo's row; ``index`` keys its arrays in the unit's ``maps.npz`` (``<index>/<layer>``)."""
    return {
        "model": model, "identity": p.identity, "image": p.name, "role": role, "reference": reference,
        "cosine": cos, "distance": dist, "array_index": index, "warp": face.warp.matrix.ravel().tolist(),
        "photo_height": face.photo_shape[0], "photo_width": face.photo_shape[1],
        "box": list(face.face.box), **{f"attr_{k}": v for k, v in p.attrs.items()},
    }


def transfer_unit(
    config: StudyConfig,
    target: FaceModel,
    identity: str,
    sources: dict[str, tuple[pd.DataFrame, np.lib.npyio.NpzFile]],
    own_occlusion: pd.DataFrame | None = None,
    embed: Embed | None = None,
) -> dict[str, pd.DataFrame]:
    """Occlude ``target``'s chips with every other source model's aggregate maps, carried between the
    two models' aligned frames through the photo (chip A → photo → chip B). The diagonal (the target's
    own maps) is the target's own occlusion result, taken from ``own_occlusion``. ``embed``: what computes
    the forwards (default ``target.embed``)."""
    name = target.spec.name
    embed = embed or target.embed
    own_images, own_arrays = sources[name]
    own = own_images[own_images["role"] == "explained"].set_index("image")
    moved: dict[str, dict[str, np.ndarray]] = {}  # image -> source -> map in the target's frame
    failures: dict[str, dict] = {}  # image -> its failure (one photo's problem stops only that photo)
    for source, (images, arrays) in sources.items():
        if source == name:
            continue
        for _, r in images[images["role"] == "explained"].iterrows():
            if r["image"] not in own.index or r["image"] in failures:
                continue
            try:
                t = own.loc[r["image"]]
                to_b = _full(t["warp"]) @ np.linalg.inv(_full(r["warp"]))  # chip A → chip B
                values = arrays[f"{r['array_index']}/aggregate"].astype(np.float64)
                moved.setdefault(r["image"], {})[source] = warp(
                    values, AffineTransform(matrix=np.linalg.inv(to_b)), output_shape=target.spec.input_size,
                    order=1, mode="constant", cval=0.0, preserve_range=True)
            except Exception as exc:  # this photo's transfer only
                failures[r["image"]] = failure(name, identity, r["image"], "transfer", failure_reason(exc))
                moved.pop(r["image"], None)
    rows = []
    for image, maps in moved.items():
        t = own.loc[image]
        index = t["array_index"]
        chip, ref = own_arrays[f"{index}/chip"], own_arrays[f"{index}/ref"]
        key = f"{index}/embedding"  # the unoccluded chip's embedding (none in runs of older versions)
        base = own_arrays[key] if key in own_arrays.files else None
        try:
            drops = occlusion_drops(embed, chip, ref, maps, config.occlusion_percents, seeds=0, base=base)
        except Exception as exc:  # this photo's transfer only
            failures[image] = failure(name, identity, image, "transfer", failure_reason(exc))
            continue
        for row in drops:
            rows.append({"identity": identity, "image": image, "source_model": row["layer"],
                         "target_model": name, "percent": row["percent"], "drop": row["drop"]})
    if own_occlusion is not None and len(own_occlusion):
        diag = own_occlusion[(own_occlusion["kind"] == "map") & (own_occlusion["layer"] == "aggregate")]
        rows += [{"identity": identity, "image": r["image"], "source_model": name, "target_model": name,
                  "percent": r["percent"], "drop": r["drop"]} for _, r in diag.iterrows()]
    tables = {"transfer": pd.DataFrame(rows)}
    if failures:
        tables["failures"] = pd.DataFrame(list(failures.values()))
    return tables


def _full(matrix6: list[float]) -> np.ndarray:
    return np.vstack([np.asarray(matrix6, dtype=np.float64).reshape(2, 3), [0.0, 0.0, 1.0]])


def sample_pairs(images: pd.DataFrame, count: int, rng: np.random.Generator) -> list[tuple[int, int, str]]:
    """``count`` same-identity and ``count`` different-identity pairs of explained images (row indices),
    fewer same pairs when the data has fewer; as many different pairs as same pairs."""
    explained = images[images["role"] == "explained"].reset_index(drop=True)
    if explained.empty:
        return []
    by_id = explained.groupby("identity").indices
    same = [(a, b) for idx in by_id.values() for k, a in enumerate(idx) for b in idx[k + 1 :]]
    if len(same) > count:
        same = [same[i] for i in sorted(rng.choice(len(same), count, replace=False))]
    ids = explained["identity"].to_numpy()
    different: set[tuple[int, int]] = set()
    if len(by_id) >= 2:
        attempts = 0
        while len(different) < len(same) and attempts < 100 * max(1, len(same)):
            a, b = sorted(rng.choice(len(explained), 2, replace=False).tolist())
            attempts += 1
            if ids[a] != ids[b]:
                different.add((a, b))
    return [(a, b, "same") for a, b in same] + [(a, b, "different") for a, b in sorted(different)]


def pairs_unit(
    config: StudyConfig, model: str, layers: list[str], images: pd.DataFrame, load_map, rng: np.random.Generator
) -> dict[str, pd.DataFrame]:
    """BC (all layers) and EMD (``config.emd_layers``) for sampled pairs at each pair threshold.

    ``images`` holds the model's image rows with a ``unit`` column; ``load_map(unit, index, layer)``
    returns a map.
    """
    explained = images[images["role"] == "explained"].reset_index(drop=True)
    rows = []
    for a, b, kind in sample_pairs(images, config.pairs, rng):
        ra, rb = explained.iloc[a], explained.iloc[b]
        for layer in [*layers, "aggregate"]:
            ma = load_map(ra["unit"], ra["array_index"], layer).astype(np.float64)
            mb = load_map(rb["unit"], rb["array_index"], layer).astype(np.float64)
            for p in config.pair_thresholds:
                row = {"model": model, "layer": layer, "threshold": np.nan if p is None else float(p), "kind": kind,
                       "identity_a": ra["identity"], "image_a": ra["image"],
                       "identity_b": rb["identity"], "image_b": rb["image"]}
                try:
                    row["bc"] = bhattacharyya(ma, mb, p)
                    row["emd"] = emd(ma, mb, p, grid=config.emd_grid) if layer in config.emd_layers else np.nan
                except ValueError:  # an all-zero map: no distribution
                    row["bc"] = row["emd"] = np.nan
                rows.append(row)
    return {"pairs": pd.DataFrame(rows)}
