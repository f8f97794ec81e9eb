"""Run a study: plan its units, do the ones not done yet (resuming after any interruption), and
consolidate the tables. The plain function behind ``leam study``."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path

import pandas as pd

from leam import __version__
from leam._paths import RUN_MANIFEST, check_run_folder
from leam.data.dataset import skipped_entries
from leam.errors import LayerError, LeamError, ModelError
from leam.face import detector_template
from leam.maps import DEFAULT_AGGREGATION, DEFAULT_DIRECTION
from leam.maps.hooks import resolve_layers
from leam.models import default_weights_path, model_spec
from leam.models.choice import changed_files
from leam.models.inference import fastest_forwards, installed_forwards
from leam.parse import list_parsers
from leam.study.config import PHASE_SETTINGS, StudyConfig, differences
from leam.study.engines import check_engine, ray_units, resolve_device, start_ray
from leam.study.inputs import StudyInputs, plain, unit_name
from leam.study.run_tables import RunTables
from leam.study.store import BACKUP, RunStore, unit_dir_name
from leam.study.units import Unit, failure, model_layers, occlusion_layers
from leam.study.worker import CACHE, UNIT_KINDS, execute, init_worker, plan

DATA_UNIT = unit_dir_name("data")  # the failures of the data folder itself (e.g. a symbolic link loop)
Progress = Callable[[str, int, int], None]  # (the phase's label, units done, units in the phase)


def run_study(
    config: StudyConfig,
    out: str | Path,
    workers: int = 1,
    progress: Progress | None = None,
    on_unit: Callable[[Unit], None] | None = None,
    engine: str = "local",
    address: str | None = None,
    device: str = "cpu",
    notify: Callable[[str], None] | None = None,
) -> RunTables:
    """Run (or resume) the study into ``out``; returns the consolidated tables (``RunTables``: each read when
    asked for). ``engine``, ``address`` and ``device``: where units run (``leam.study.engines``); the run
    folder is the same for all.
    ``progress(label, done, total)`` is called as each phase starts and as each of its units is done;
    ``notify(line)`` gets what a person should read (how the data changed since the last session).
    Neither draws or prints anything here: ``leam study`` does.

    Everything is checked before anything is written (``check_study``, the data folder, the engine, and
    that ``out`` holds no other run), so a mistake costs one line and leaves no run behind."""
    check_engine(engine, address)
    device = resolve_device(device)
    check_study(config)
    wanted = json.loads(json.dumps(config.to_dict()))  # as stored: tuples become lists
    store = RunStore(out)
    with store.before_lock():  # another study starting on ``out`` is named as the lock names it
        check_run_folder(out, config.data, (RUN_MANIFEST, BACKUP))  # not among the photos, nor over others' files
        check_resume(out, store.read_manifest(), wanted)
    CACHE.dataset(config.data)
    if engine == "ray":
        start_ray(address)
    with store.lock():
        manifest = store.read_manifest()
        check_resume(out, manifest, wanted)
        dataset = CACHE.dataset(config.data)
        if manifest is None:
            manifest = {
                "config": wanted,
                "leam_version": __version__,
                "models": {m: _spec_dict(m, config) for m in config.models},
                "identities": len(dataset),
                "photos": sum(len(v) for v in dataset.values()),
            }
            store.write_manifest(manifest)
        if manifest["config"] != wanted:  # only the faithfulness phase's settings differ (``check_resume``)
            manifest["config"] = wanted
        store.clean_temporaries()
        session = {"id": uuid.uuid4().hex, "started": _now(), "finished": None, "workers": workers,
                   "engine": engine, "device": device}
        CACHE.keep_dataset(config.data, session["id"], dataset)  # what this session's units read here
        phases = plan(config, dataset)
        inputs = StudyInputs(store, config, dataset)
        removed = store.remove_units_except({DATA_UNIT, *(unit_name(u) for phase in phases for u in phase),
                                             *_phase_units_kept(store, config)})
        changes = inputs.changes(removed)
        changes.counts["entries left out"] += _update_data_unit(store, config)
        pending = inputs.pending(phases)  # not done, damaged, done with other inputs, or reading one of those
        session.update(units_pending=len(pending), data_changes=changes.record())
        manifest.update(identities=len(dataset), photos=sum(len(v) for v in dataset.values()))
        manifest.setdefault("sessions", []).append(session)  # each invocation: when, where and how much
        store.write_manifest(manifest)
        if notify and (line := changes.line(len(pending))):
            notify(line)
        started, fallbacks = time.perf_counter(), set()
        for phase in phases:
            pending = [u for u in phase if not inputs.is_current(u)]  # after the phases before it are done
            if not pending:
                continue
            label, done = UNIT_KINDS[phase[0].kind].label, len(phase) - len(pending)
            if progress:
                progress(label, done, len(phase))
            for unit in _run_units(str(out), wanted, pending, workers, engine, address, device):
                done += 1
                if progress:
                    progress(label, done, len(phase))
                if on_unit:
                    on_unit(unit)
                if notify:
                    _say_fallbacks(store, unit, fallbacks, notify)
        units = [DATA_UNIT] + [unit_name(u) for phase in phases for u in phase]
        tables = store.consolidate(units, notify)
        manifest["finished"] = True
        manifest["counts"] = {k: tables.rows(k) for k in tables}
        session.update(finished=_now(), seconds=round(time.perf_counter() - started, 3))
        store.write_manifest(manifest)
        return tables


def _say_fallbacks(store: RunStore, unit: Unit, said: set[str], notify: Callable[[str], None]) -> None:
    """One line per model whose gradient-free forwards fell back to PyTorch (``leam.models.inference``), the
    first time a unit's done marker records it."""
    for model, reason in ((store.marker(unit_name(unit)) or {}).get("forwards_fallback") or {}).items():
        if model not in said:
            said.add(model)
            notify(f"{model}: ONNX Runtime not used for its gradient-free forwards, PyTorch computes them ({reason})")


def _phase_units_kept(store: RunStore, config: StudyConfig) -> set[str]:
    """The faithfulness phase's unit folders, kept (not planned, not in the tables) in a session without
    ``--faithfulness``: a later session with it finds them done."""
    parts = Path(store.root) / "parts"
    if config.faithfulness or not parts.is_dir():
        return set()
    return {d.name for d in parts.iterdir() if d.name.startswith(("faithfulness__", "population__"))}


def _update_data_unit(store: RunStore, config: StudyConfig) -> bool:
    """(Re)write the data unit, the entries of the data folder left out and why (per model, as failures),
    unless it holds them already; whether they changed since it was written."""
    skipped = plain(skipped_entries(config.data))
    marker = store.marker(DATA_UNIT)
    if marker is not None and marker.get("inputs", skipped) == skipped:  # one done before leam recorded inputs: kept
        return False
    rows = [failure(m, entry, "", "data", reason) for m in config.models for entry, reason in skipped.items()]
    store.write_unit(DATA_UNIT, {"failures": pd.DataFrame(rows)}, info={"unit": ["data"], "inputs": skipped})
    return marker is not None


def check_study(config: StudyConfig) -> None:
    """Refuse, before anything is written, a study that would fail in its units: the settings
    (``StudyConfig.check``), models that are unknown, lack installed weights or do not load (each is
    loaded once, and kept for the units of this process), layers a model does not have, occlusion layers
    outside the model's layers, an EMD grid finer than a model's chip, and a parser that cannot be made."""
    config.check()
    if config.forwards not in installed_forwards():
        raise LeamError(f"--forwards {config.forwards}: {config.forwards} is not installed here (pip install "
                        f"{config.forwards}); a run begun with it resumes only with it, a new one may use --forwards "
                        "torch")
    for name in config.models:
        record = config.model_files.get(name)
        if record is None:
            model_spec(name)  # an unknown name: ModelError listing the registered ones
        if record is None and default_weights_path(name) is None:
            raise ModelError(f"--models {name}: its weights are not installed, and a study uses installed weights "
                             "only; study the models `leam models` shows with their weights found")
        model = CACHE.model(name, record=record)
        try:
            detector_template(model.spec.template, config.detector)
        except LeamError as exc:
            raise LeamError(f"--models {name}: {exc}") from None
        if name in config.layers:
            try:
                resolve_layers(model.net, config.layers[name])
            except LayerError as exc:
                unknown = str(exc).split(";")[0]
                raise LayerError(f"--layers {name}={','.join(config.layers[name])}: {unknown}; `leam layers "
                                 f"--model {name}` lists the layers it can explain") from None
        occlusion_layers(config, model_layers(config, model))
        if config.emd_grid > min(model.spec.input_size):
            raise LeamError(f"emd_grid: expected at most {min(model.spec.input_size)} (the side of {name}'s chip), "
                            f"got {config.emd_grid}")
    if config.parser not in list_parsers():
        raise LeamError(f"--parser: unknown parser {config.parser!r}; registered parsers: "
                        f"{', '.join(list_parsers())}")
    try:
        CACHE.parser(config.parser)
    except LeamError as exc:  # e.g. one that needs a weight file: a study takes none
        raise LeamError(f"--parser {config.parser}: {exc}") from None


def stored_settings(out: str | Path) -> dict | None:
    """The settings of the study in ``out`` as its ``run.json`` stores them; None where there is none."""
    manifest = RunStore(out).read_manifest() if Path(out).is_dir() else None
    if manifest is None or manifest.get("kind", "study") != "study" or not isinstance(manifest.get("config"), dict):
        return None
    return manifest["config"]


def default_forwards(out: str | Path) -> str:
    """What computes the gradient-free forwards when ``leam study`` is not told (``--forwards``): the
    engine of the study in ``out`` (torch for one written before the setting), else the fastest installed."""
    stored = stored_settings(out)
    return fastest_forwards() if stored is None else str(stored.get("forwards", "torch"))


def default_map(out: str | Path) -> tuple[str, str]:
    """(direction, aggregation) when ``leam study`` is not told (``--direction``, ``--aggregate``): the study's in
    ``out`` (a run resumes with the map it was made with, whatever today's default), else today's default."""
    stored = stored_settings(out) or {}
    return (str(stored.get("direction", DEFAULT_DIRECTION)), str(stored.get("aggregation", DEFAULT_AGGREGATION)))


def check_resume(out: str | Path, manifest: dict | None, wanted: dict) -> None:
    """Refuse to add to ``out`` when it holds another kind of leam run, or a study with other settings
    (naming each option that differs); ``wanted`` is the config as stored."""
    if manifest is None:
        return
    kind = manifest.get("kind", "study")
    if kind != "study":
        raise LeamError(f"{out} holds a `leam {kind}` run, not a study; use another --out folder")
    try:  # compared with defaults filled in for older runs
        stored = json.loads(json.dumps(StudyConfig.from_dict(manifest["config"]).to_dict()))
    except (TypeError, ValueError, KeyError, AttributeError):
        raise LeamError(f"{out}/run.json: not the run.json of a leam study; use another --out folder") from None
    if changed := changed_files(stored["model_files"], wanted.get("model_files", {})):
        raise LeamError(f"{out}: {changed}")
    was, now = ({k: v for k, v in c.items() if k not in PHASE_SETTINGS} for c in (stored, wanted))
    if was != now:
        raise LeamError(f"{out} holds a run with a different configuration ({'; '.join(differences(was, now))}); "
                        "use the same options to resume it (the faithfulness options may differ: they redo only "
                        "that phase), or another --out folder")


def _run_units(root: str, config_dict: dict, units: list[Unit], workers: int, engine: str = "local",
               address: str | None = None, device: str = "cpu") -> Iterable[Unit]:
    if engine == "ray":
        yield from ray_units(root, config_dict, units, workers, address, device)
        return
    if workers <= 1:
        for unit in units:
            yield execute(root, config_dict, unit, device)
        return
    yield from _pool_units(root, config_dict, units, workers, device)


def _pool_units(root: str, config_dict: dict, units: list[Unit], workers: int, device: str) -> Iterator[Unit]:
    """``units`` in ``workers`` spawned processes, each yielded once done. On anything that ends this early (a
    Ctrl-C, a unit's error, the caller closing the generator) the queued units are cancelled and the workers
    terminated at once: a unit cut short leaves no done marker and is redone on resume."""
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=init_worker,
                               initargs=(os.getpid(),))
    finished = False
    try:
        with _sigint_blocked():  # the workers start with it blocked (they spawn as the first units are submitted)
            futures = {pool.submit(execute, root, config_dict, u, device): u for u in units}
        for f in as_completed(futures):
            try:
                yield f.result()
            except BrokenProcessPool:
                raise LeamError(f"a worker process died while doing the unit {unit_name(futures[f])} (killed, e.g. by "
                                "the system when memory ran out); run the same command again to resume it (fewer "
                                "--workers need less memory)") from None
        finished = True
    finally:
        if not finished:
            _terminate_workers(pool)
        pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _sigint_blocked() -> Iterator[None]:
    """SIGINT blocked in this thread within the block (a Ctrl-C then is delivered after it), so that the
    processes started in it begin with SIGINT blocked (``leam.study.worker.init_worker``)."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _terminate_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel the pool's queued work and end its worker processes now (SIGTERM, then SIGKILL after 5 s)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # Python < 3.14: no public way
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        p.terminate()
    for p in processes:
        p.join(5)
        if p.is_alive():
            p.kill()
            p.join()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _spec_dict(name: str, config: StudyConfig) -> dict:
    """What ``run.json`` keeps of a model's spec (a file model's from the model this process loaded)."""
    s = CACHE.model(name, record=config.model_files[name]).spec if name in config.model_files else model_spec(name)
    return {"description": s.description, "input_size": s.input_size, "embedding_size": s.embedding_size,
            "normalization": s.normalization, "template": s.template.name, "threshold": s.threshold,
            "threshold_metric": s.threshold_metric, "default_layers": list(s.default_layers)}
