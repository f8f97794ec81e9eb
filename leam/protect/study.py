"""``run_protect_eval``: protection measured over a folder ``<identity>/<images>``, resumable.

For every identity (one unit of work), the first ``photos`` photos by name are protected, each
against the person's other photos, by every ensemble (``ensembles``: "loo" — each given model left
out in turn, so every model is once unseen; "all" — all the given models; "both"), every method and
every budget. Each protected photo is encoded as its original's format would be (``encode_like``),
written, decoded and evaluated afresh with *every* given model: ``seen`` says whether the model was
in the ensemble. The unprotected photo is evaluated the same way (method "none"), and so is the
unprotected photo written like a protected one (method "resaved": what re-encoding alone does).

The run folder is a study's (``leam.protect.runs``: ``RunStore`` with protect-eval's tables): a unit
is done when its ``done.json`` is whole, its files have the sizes and SHA-256 it lists, and the photos
it read (``inputs``: names and SHA-256) are the data's now; any other unit is (re)done on resume.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from leam import __version__
from leam._paths import check_run_folder
from leam.data.dataset import load_dataset
from leam.data.images import load_image
from leam.errors import LeamError
from leam.face import DETECTORS, detector_template, warp_to_photo
from leam.face.detect import FACE_CHOICES
from leam.models import FaceModel, model_spec
from leam.models.choice import ModelChoice, changed_files, choice_from_record, load_model_choice
from leam.protect.core import ProtectConfig, protect_photo
from leam.protect.evaluate import evaluate_photo, visible_change
from leam.protect.mask import consensus_map, leam_aggregates
from leam.protect.methods import list_methods, method_spec
from leam.protect.person import embed_all, ensemble_name, load_photo, references_for
from leam.protect.runs import RUN_FILES, ProtectStore, consolidate, read_manifest, read_run, unit_name
from leam.protect.save import save_like, source_format
from leam.study.inputs import identity_inputs

__all__ = ["ENSEMBLES", "EvalConfig", "RUN_FILES", "protect_identity", "read_run", "run_protect_eval",
           "select_identities"]

ENSEMBLES = ("loo", "all", "both")


@dataclass(frozen=True)
class EvalConfig:
    data: str
    models: tuple[str, ...]
    budgets: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0)
    methods: tuple[str, ...] = ("leam", "random", "black", "dense")
    ensembles: str = "loo"
    identities: int | None = None  # how many identities (sorted by name), after ``offset``
    offset: int = 0
    photos: int = 1  # protected per identity (the first by name); all of them serve as references
    face: str = "largest"
    detector: str = "dlib"  # of leam.face.DETECTORS; runs written before the choice were dlib's (the default)
    protect: ProtectConfig = field(default_factory=ProtectConfig)
    model_files: dict[str, dict] = field(default_factory=dict)  # {name: leam.models.choice.file_record(...)}

    def __post_init__(self) -> None:
        if self.ensembles not in ENSEMBLES:
            raise LeamError(f"expected ensembles in {ENSEMBLES}, got {self.ensembles!r}")
        if self.face not in FACE_CHOICES:
            raise LeamError(f"expected face in {FACE_CHOICES}, got {self.face!r}")
        if self.detector not in DETECTORS:
            raise LeamError(f"--detector: expected one of {', '.join(DETECTORS)}, got {self.detector!r}")
        bad = [m for m in self.methods if m not in list_methods()]
        if bad or not self.methods:
            raise LeamError(f"unknown method(s) {bad}; expected some of {', '.join(list_methods())}")
        if not self.budgets or any(not 0 < b <= 100 for b in self.budgets):
            raise LeamError(f"budgets are percentages of the face box in (0, 100], got {list(self.budgets)}")
        if not self.models or len(set(self.models)) != len(self.models):
            raise LeamError(f"expected one or more distinct models, got {list(self.models)}")
        if self.photos < 1 or self.offset < 0 or (self.identities is not None and self.identities < 1):
            raise LeamError("--photos and --identities must be at least 1, --offset at least 0")
        object.__setattr__(self, "budgets", tuple(float(b) for b in self.budgets))
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "methods", tuple(self.methods))

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    def ensemble_list(self) -> list[tuple[str, ...]]:
        loo = [tuple(m for m in self.models if m != out) for out in self.models] if len(self.models) > 1 else []
        full = [self.models]
        return {"loo": loo or full, "all": full, "both": loo + full}[self.ensembles]


def select_identities(config: EvalConfig) -> dict[str, list]:
    """{identity: photos}: ``identities`` of them (sorted by name) after the first ``offset``. An identity
    with fewer than two usable photos is kept and recorded as a failure by its unit."""
    dataset = load_dataset(config.data)
    names = list(dataset)[config.offset:]
    if config.identities is not None:
        names = names[: config.identities]
    if not names:
        raise LeamError(f"{config.data}: no identity after offset {config.offset}")
    return {n: dataset[n] for n in names}


def protect_identity(config: EvalConfig, models: dict[str, FaceModel], identity: str, photos: list,
                  scratch: Path) -> tuple[dict[str, pd.DataFrame], dict[str, np.ndarray]]:
    """Every result of one identity: rows of ``results`` and ``failures``, and example crops."""
    all_models = [models[n] for n in config.models]
    usable, failures = [], []
    for p in photos:
        try:
            source_format(p.path)
            usable.append((p, load_photo(p.path, all_models, config.face, config.detector)))
        except LeamError as exc:
            failures.append({"identity": identity, "image": p.name, "reason": str(exc)})
    if len(usable) < 2:
        failures.append({"identity": identity, "image": "", "reason": f"{len(usable)} usable photo(s); 2 needed"})
        return {"results": pd.DataFrame(), "failures": pd.DataFrame(failures)}, {}
    people = [u for _, u in usable]
    emb = embed_all(all_models, people)
    refs = [references_for(i, emb) for i in range(len(people))]
    needs_all = any(method_spec(m).needs_consensus for m in config.methods)
    mapped = range(len(people)) if needs_all else range(min(config.photos, len(people)))
    maps = {i: {} for i in mapped}
    for m in all_models:
        name = m.spec.name
        agg = leam_aggregates(m, [people[i].aligned[name] for i in mapped],
                              np.stack([refs[i][name].mean(0) for i in mapped]))
        for j, i in enumerate(mapped):
            maps[i][name] = agg[j]
    rows, examples = [], {}
    for i in range(min(config.photos, len(people))):
        person, photo_name = people[i], usable[i][0].name
        base = {"identity": identity, "image": photo_name}
        for r in evaluate_photo(person.photo, person.face.box, all_models, refs[i], config.detector):
            rows.append({**base, "ensemble": "", "held_out": "", "method": "none", "budget": 0.0, "seen": False, **r})
        # the control: the unprotected pixels written the same way (what re-encoding alone changes)
        saved = load_image(save_like(person.path, person.photo, scratch / f"resaved{person.path.suffix}",
                                     config.protect.jpeg_quality))
        info = {**base, "ensemble": "", "held_out": "", "method": "resaved", "budget": 0.0, "mask_pixels": 0,
                **visible_change(person.photo, saved, person.face.box)}
        rows += [{**info, "seen": False, **r}
                 for r in evaluate_photo(saved, person.face.box, all_models, refs[i], config.detector)]
        for k, ens in enumerate(config.ensemble_list()):
            consensus = None
            if needs_all:
                c = consensus_map([{n: maps[j][n] for n in ens} for j in maps],
                                  [{n: people[j].aligned[n].warp for n in ens} for j in maps], ens[0])
                consensus = warp_to_photo(c, person.aligned[ens[0]].warp, person.photo.shape[:2])
            start = time.perf_counter()
            done = protect_photo(person, [models[n] for n in ens], refs[i], maps[i], config.budgets,
                                 config.methods, config.protect, consensus)
            seconds = (time.perf_counter() - start) / max(1, len(done))
            held = [n for n in config.models if n not in ens]
            for p in done:
                out = save_like(person.path, p.pixels, scratch / f"protected{person.path.suffix}",
                                config.protect.jpeg_quality)
                saved = load_image(out)
                change = visible_change(person.photo, saved, person.face.box)
                info = {**base, "ensemble": ensemble_name(ens), "held_out": "+".join(held), "method": p.method,
                        "budget": p.budget, "mask_pixels": int(p.mask.sum()), "epsilon": p.epsilon,
                        "objective": p.objective, "seconds": seconds, **change}
                for r in evaluate_photo(saved, person.face.box, all_models, refs[i], config.detector,
                                        f"{person.path} ({p.method}, {p.budget:g} %)"):
                    rows.append({**info, "seen": r["model"] in ens, **r})
                if i == 0 and k == 0:
                    examples[f"{p.method}/{p.budget:g}"] = _crop(saved, person.face.box)
                    examples[f"{p.method}/{p.budget:g}/mask"] = _crop(p.mask, person.face.box)
        if i == 0:
            examples["original"] = _crop(person.photo, person.face.box)
    return {"results": pd.DataFrame(rows), "failures": pd.DataFrame(failures)}, examples


def _crop(a: np.ndarray, box: Sequence[int], pad: float = 0.35) -> np.ndarray:
    left, top, right, bottom = box
    m = int(pad * max(right - left, bottom - top))
    h, w = a.shape[:2]
    return np.ascontiguousarray(a[max(0, top - m): min(h, bottom + m), max(0, left - m): min(w, right + m)])


def run_protect_eval(config: EvalConfig, out: str | Path,
                     progress: Callable[[int, int], None] | None = None) -> dict[str, pd.DataFrame]:
    """Run (or resume) the evaluation into ``out``; returns the consolidated tables (results, failures,
    summary). ``progress(done, total)`` is called with the identities done, before the first and after each."""
    store = ProtectStore(out)
    for name in config.models:  # a bad model name or data folder fails before the run folder is made
        if name not in config.model_files:
            model_spec(name)
    identities = select_identities(config)
    with store.before_lock():  # another evaluation starting on ``out`` is named as the lock names it
        check_run_folder(out, config.data, RUN_FILES)
        read_manifest(store)  # another kind of run is refused before anything is written
    with store.lock():
        manifest = read_manifest(store)
        wanted = config.to_dict()
        if manifest is not None and (changed := changed_files(manifest.get("config", {}).get("model_files", {}),
                                                              wanted["model_files"])):
            raise LeamError(f"{out}: {changed}")
        if manifest is not None and _settings(manifest.get("config", {})) != _settings(wanted):
            raise LeamError(f"{out} holds a run with a different configuration; use another --out folder "
                            "(or the same options to resume it; only --identities and --offset may change)")
        models = {n: _load(n, config.model_files.get(n)) for n in config.models}
        for name, m in models.items():  # a model the detector cannot align: refused before anything is written
            try:
                detector_template(m.spec.template, config.detector)
            except LeamError as exc:
                raise LeamError(f"--models {name}: {exc}") from None
        store.write_manifest({"kind": "protect-eval", "config": wanted, "leam_version": __version__,
                              "identities": list(identities),
                              "models": {n: {"threshold": m.spec.threshold, "metric": m.spec.threshold_metric}
                                         for n, m in models.items()}})
        store.clean_temporaries()
        inputs = {n: identity_inputs(photos) for n, photos in identities.items()}
        pending = [n for n in identities if not _up_to_date(store, n, inputs[n])]
        report = progress or (lambda done, total: None)
        report(len(identities) - len(pending), len(identities))
        with tempfile.TemporaryDirectory(prefix="leam-protect-") as scratch:
            for k, name in enumerate(pending, 1):
                wall, cpu = time.perf_counter(), time.process_time()
                tables, examples = protect_identity(config, models, name, identities[name], Path(scratch))
                store.write_unit(unit_name(name), tables, examples, info={
                    "unit": name, "inputs": inputs[name], "seconds": round(time.perf_counter() - wall, 3),
                    "cpu_seconds": round(time.process_time() - cpu, 3)})
                report(len(identities) - len(pending) + k, len(identities))
        return consolidate(store, list(identities))


def _load(name: str, record: dict | None) -> FaceModel:
    """The registered model ``name``, or the model file ``record`` keeps (refused if it changed since)."""
    return load_model_choice(choice_from_record(name, record) if record else ModelChoice(name), record)


def _up_to_date(store: ProtectStore, identity: str, inputs: dict) -> bool:
    """Whether the identity's unit is done, intact, and was done with these photos (names and SHA-256)."""
    marker = store.marker(unit_name(identity))
    return marker is not None and marker.get("inputs") == inputs


def _settings(config: dict) -> dict:
    """What decides a unit's results: everything but which identities are selected (a unit is one identity,
    so a run can be extended to more identities, or narrowed, and its done units kept)."""
    config = {"detector": "dlib", **config}  # runs written before the detector choice were dlib's
    return {k: v for k, v in config.items() if k not in ("identities", "offset") and (v or k != "model_files")}
