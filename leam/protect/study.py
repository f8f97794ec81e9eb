"""``run_protect_eval``: protection measured over a folder ``<identity>/<images>``, resumable.

For every identity (one unit of work), the first ``photos`` photos by name are protected, each
against the person's other photos, by every ensemble (``ensembles``: "loo" — each given model left
out in turn, so every model is once unseen; "all" — all the given models; "both"), every method and
every budget. Each protected photo is encoded as its original's format would be (``encode_like``),
written, decoded and evaluated afresh with *every* given model: ``seen`` says whether the model was
in the ensemble. The unprotected photo is evaluated the same way (method "none"), and so is the
unprotected photo written like a protected one (method "resaved": what re-encoding alone does).

Run folder::

    RUN/run.json                         the configuration
    RUN/parts/<identity>/results.parquet one row per photo x ensemble x method x budget x model
    RUN/parts/<identity>/failures.parquet photos without a usable face, identities with < 2 photos
    RUN/parts/<identity>/examples.npz    crops of one photo before and after, for the report
    RUN/parts/<identity>/done.json       written last
    RUN/tables/results.parquet|.csv, summary.csv, failures.csv
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from leam import __version__
from leam._paths import check_run_folder
from leam.errors import LeamError
from leam.face import warp_to_photo
from leam.face.detect import FACE_CHOICES
from leam.image import load_image
from leam.models import FaceModel, create_model, model_spec
from leam.protect.core import METHODS, ProtectConfig, protect_photo
from leam.protect.evaluate import evaluate_photo, visible_change
from leam.protect.mask import consensus_map, leam_aggregates
from leam.protect.person import ensemble_name, load_photo, references_for
from leam.protect.save import save_like, source_format
from leam.protect.summary import summarise
from leam.study.dataset import load_dataset
from leam.study.store import RunStore, atomic_write, parquet_bytes, unit_dir_name

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
    protect: ProtectConfig = field(default_factory=ProtectConfig)

    def __post_init__(self) -> None:
        if self.ensembles not in ENSEMBLES:
            raise LeamError(f"expected ensembles in {ENSEMBLES}, got {self.ensembles!r}")
        if self.face not in FACE_CHOICES:
            raise LeamError(f"expected face in {FACE_CHOICES}, got {self.face!r}")
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise LeamError(f"unknown method(s) {bad}; expected some of {', '.join(METHODS)}")
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


def identity_unit(config: EvalConfig, models: dict[str, FaceModel], identity: str, photos: list,
                  scratch: Path) -> tuple[dict[str, pd.DataFrame], dict[str, np.ndarray]]:
    """Every result of one identity: rows of ``results`` and ``failures``, and example crops."""
    all_models = [models[n] for n in config.models]
    usable, failures = [], []
    for p in photos:
        try:
            source_format(p.path)
            usable.append((p, load_photo(p.path, all_models, config.face)))
        except LeamError as exc:
            failures.append({"identity": identity, "image": p.name, "reason": str(exc)})
    if len(usable) < 2:
        failures.append({"identity": identity, "image": "", "reason": f"{len(usable)} usable photo(s); 2 needed"})
        return {"results": pd.DataFrame(), "failures": pd.DataFrame(failures)}, {}
    people = [u for _, u in usable]
    emb = {m.spec.name: m.embed(np.stack([u.aligned[m.spec.name].chip for u in people])) for m in all_models}
    refs = [references_for(i, emb) for i in range(len(people))]
    needs_all = "consensus" in config.methods
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
        for r in evaluate_photo(person.photo, person.face.box, all_models, refs[i]):
            rows.append({**base, "ensemble": "", "held_out": "", "method": "none", "budget": 0.0, "seen": False, **r})
        # the control: the unprotected pixels written the same way (what re-encoding alone changes)
        saved = load_image(save_like(person.path, person.photo, scratch / f"resaved{person.path.suffix}",
                                     config.protect.jpeg_quality))
        info = {**base, "ensemble": "", "held_out": "", "method": "resaved", "budget": 0.0, "mask_pixels": 0,
                **visible_change(person.photo, saved, person.face.box)}
        rows += [{**info, "seen": False, **r} for r in evaluate_photo(saved, person.face.box, all_models, refs[i])]
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
                for r in evaluate_photo(saved, person.face.box, all_models, refs[i]):
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


RUN_FILES = ("run.json", "run.json.bak", "report.html",
             *(f"tables/{t}.csv" for t in ("results", "failures", "summary")), "tables/results.parquet")


def run_protect_eval(config: EvalConfig, out: str | Path, progress: bool = True) -> dict[str, pd.DataFrame]:
    """Run (or resume) the evaluation into ``out``; returns the consolidated tables."""
    store = RunStore(out)
    root = Path(out)
    for name in config.models:  # a bad model name or data folder fails before the run folder is made
        model_spec(name)
    select_identities(config)
    check_run_folder(out, config.data, RUN_FILES)
    with store.lock():
        manifest = store.read_manifest()
        wanted = config.to_dict()
        if manifest is not None and _settings(manifest.get("config", {})) != _settings(wanted):
            raise LeamError(f"{out} holds a run with a different configuration; use another --out folder "
                            "(or the same options to resume it; only --identities and --offset may change)")
        identities = select_identities(config)
        models = {n: create_model(n) for n in config.models}
        store.write_manifest({"kind": "protect-eval", "config": wanted, "leam_version": __version__,
                              "identities": list(identities),
                              "models": {n: {"threshold": m.spec.threshold, "metric": m.spec.threshold_metric}
                                         for n, m in models.items()}})
        store.clean_temporaries()
        units = {name: unit_dir_name(name) for name in identities}
        pending = [n for n in identities if not (root / "parts" / units[n] / "done.json").is_file()]
        bar = tqdm(total=len(identities), initial=len(identities) - len(pending), desc="identities", unit="identity",
                   disable=not progress, dynamic_ncols=True)
        with bar, tempfile.TemporaryDirectory(prefix="leam-protect-") as scratch:
            for name in pending:
                bar.set_postfix_str(name[:30])
                tables, examples = identity_unit(config, models, name, identities[name], Path(scratch))
                _write_unit(root / "parts" / units[name], tables, examples)
                bar.update()
        return consolidate(root, [units[n] for n in identities])


def _settings(config: dict) -> dict:
    """What decides a unit's results: everything but which identities are selected (a unit is one identity,
    so a run can be extended to more identities, or narrowed, and its done units kept)."""
    return {k: v for k, v in config.items() if k not in ("identities", "offset")}


def _write_unit(folder: Path, tables: dict[str, pd.DataFrame], examples: dict[str, np.ndarray]) -> None:
    import io

    (folder / "done.json").unlink(missing_ok=True)
    for name, df in tables.items():
        atomic_write(folder / f"{name}.parquet", parquet_bytes(df))
    buf = io.BytesIO()
    np.savez_compressed(buf, **examples)
    atomic_write(folder / "examples.npz", buf.getvalue())
    atomic_write(folder / "done.json", b"{}")


def consolidate(root: Path, units: list[str]) -> dict[str, pd.DataFrame]:
    """All done units' rows (in the planned order) into ``tables/``: Parquet and CSV, with the summary."""
    out = {}
    for name in ("results", "failures"):
        frames = [pd.read_parquet(p) for u in units if (root / "parts" / u / "done.json").is_file()
                  and (p := root / "parts" / u / f"{name}.parquet").is_file()]
        frames = [f for f in frames if len(f)]
        out[name] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    out["summary"] = summarise(out["results"])
    for name, df in out.items():
        atomic_write(root / "tables" / f"{name}.csv", df.to_csv(index=False).encode())
        if name == "results":
            atomic_write(root / "tables" / f"{name}.parquet", parquet_bytes(df))
    return out


def read_run(out: str | Path) -> tuple[dict, dict[str, pd.DataFrame], dict[str, np.lib.npyio.NpzFile]]:
    """(manifest, tables, {identity: examples}) of a run folder, for the report."""
    root = Path(out)
    manifest = RunStore(root).read_manifest()
    if manifest is None or manifest.get("kind") != "protect-eval":
        raise LeamError(f"{out}: no run.json of `leam protect-eval`")
    units = {n: unit_dir_name(n) for n in manifest["identities"]}
    tables = consolidate(root, list(units.values()))
    done = [n for n, u in units.items() if (root / "parts" / u / "done.json").is_file()]
    manifest = {**manifest, "done": done}
    examples = {}
    for n in done:
        path = root / "parts" / units[n] / "examples.npz"
        if path.is_file() and "original" in (z := np.load(path)).files:
            examples[n] = z
    return manifest, tables, examples
