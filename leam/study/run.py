"""Run a study: plan its units, do the ones not done yet (resuming after any interruption), and
consolidate the tables. The plain function behind ``leam study``."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from leam import __version__
from leam._paths import RUN_MANIFEST, check_run_folder
from leam.errors import LayerError, LeamError, ModelError
from leam.maps.hooks import resolve_layers
from leam.models import create_model, default_weights_path, model_spec
from leam.parse import create_parser, list_parsers
from leam.study.config import StudyConfig, differences
from leam.study.dataset import load_dataset, skipped_entries
from leam.study.engines import check_engine, ray_units, resolve_device, start_ray, unit_threads
from leam.study.inputs import StudyInputs, identity_inputs, plain, reads, unit_name, upstream_inputs
from leam.study.store import BACKUP, RunStore, unit_dir_name
from leam.study.units import (
    Unit,
    failure,
    identity_unit,
    model_layers,
    occlusion_layers,
    pairs_unit,
    transfer_unit,
    unit_rng,
)

_CACHE: dict = {}
DATA_UNIT = unit_dir_name("data")  # the failures of the data folder itself (e.g. a symbolic link loop)


def plan(config: StudyConfig, identities: Iterable[str]) -> list[list[Unit]]:
    """The study's units in three phases: identities × models, then transfer, then pairs."""
    identities = list(identities)
    phases = [[Unit("identity", m, i) for m in config.models for i in identities]]
    if config.transfer and len(config.models) > 1:
        phases.append([Unit("transfer", m, i) for m in config.models for i in identities])
    phases.append([Unit("pairs", m) for m in config.models])
    return phases


def _model(name: str, device: str = "cpu"):
    key = ("model", name, device)
    if key not in _CACHE:
        _CACHE[key] = create_model(name)
        _CACHE[key].net.to(device)
    return _CACHE[key]


def _parser(name: str):
    key = ("parser", name)
    if key not in _CACHE:
        _CACHE[key] = create_parser(name)
    return _CACHE[key]


def execute(root: str, config_dict: dict, unit: Unit, device: str = "cpu") -> Unit:
    """Do one unit and write its files (runs in a worker process or in the caller), on one thread
    (``unit_threads``): its numbers do not depend on the engine, the workers or the caller's threads."""
    with unit_threads():
        return _execute(root, config_dict, unit, device)


def _execute(root: str, config_dict: dict, unit: Unit, device: str) -> Unit:
    config = StudyConfig.from_dict(config_dict)
    store = RunStore(root)
    rng = unit_rng(config, unit)
    wall, cpu = time.perf_counter(), time.process_time()

    def info(inputs: dict) -> dict:  # recorded in the unit's done.json: what it read (a resume compares), its time
        return {"unit": list(unit.key), "inputs": inputs, "seconds": round(time.perf_counter() - wall, 3),
                "cpu_seconds": round(time.process_time() - cpu, 3)}

    if unit.kind == "identity":
        photos = load_dataset_cached(config.data, _session(store))[unit.identity]
        inputs = identity_inputs(photos)  # before the photos are read: a photo changed meanwhile is redone later
        tables, arrays = identity_unit(config, _model(unit.model, device), _parser(config.parser), photos, rng)
        store.write_unit(unit_name(unit), tables, arrays, info=info(inputs))
    elif unit.kind == "transfer":
        inputs = upstream_inputs(store, reads(config, unit))
        sources = {}
        for m in config.models:
            u = unit_name(Unit("identity", m, unit.identity))
            images = store.unit_table(u, "images")
            if images is not None and len(images):
                sources[m] = (images, store.unit_arrays(u))
        own = store.unit_table(unit_name(Unit("identity", unit.model, unit.identity)), "occlusion")
        model = _model(unit.model, device)
        tables = transfer_unit(config, model, unit.identity, sources, own) if unit.model in sources else {}
        store.write_unit(unit_name(unit), tables, info=info(inputs))
    else:
        identities = load_dataset_cached(config.data, _session(store))
        inputs = upstream_inputs(store, reads(config, unit, identities))
        frames = []
        for identity in identities:
            u = unit_name(Unit("identity", unit.model, identity))
            images = store.unit_table(u, "images")
            if images is not None and len(images):
                frames.append(images.assign(unit=u))
        images = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["role"])
        opened: dict[str, np.lib.npyio.NpzFile] = {}

        def load_map(u: str, index: int, layer: str) -> np.ndarray:
            if u not in opened:
                opened[u] = store.unit_arrays(u)
            return opened[u][f"{index}/{layer}"]

        layers = model_layers(config, _model(unit.model, device))
        store.write_unit(unit_name(unit), pairs_unit(config, unit.model, layers, images, load_map, rng),
                         info=info(inputs))
    return unit


def load_dataset_cached(data: str, session: str | None = None) -> dict:
    """The data folder's photos, read once per session (``session``: its id in ``run.json``) in each
    process, so that the units of a session all see the data as it was when the session began; without
    ``session``, read afresh."""
    key = ("data", data)
    cached = _CACHE.get(key)
    if session is None or cached is None or cached[0] != session:
        cached = _CACHE[key] = (session, load_dataset(data))
    return cached[1]


def _session(store: RunStore) -> str | None:
    """The id of the run's current session (the last in ``run.json``)."""
    sessions = (store.read_manifest() or {}).get("sessions") or [{}]
    return sessions[-1].get("id") if isinstance(sessions[-1], dict) else None


def _init_worker(parent: int) -> None:
    """A worker ignores SIGINT (a Ctrl-C reaches the whole process group: the study's process stops the
    workers itself, and a worker interrupted on its own would print a traceback and go on); it starts with
    SIGINT blocked (``_sigint_blocked``), so one sent while it starts is dropped here."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    threading.Thread(target=_exit_without, args=(parent,), daemon=True).start()


def _exit_without(parent: int) -> None:
    """End this worker once the study's process is gone (killed): an orphan would go on writing into the
    run folder without holding its lock, beside the process that resumes the run, and never exit."""
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(1)


def run_study(
    config: StudyConfig,
    out: str | Path,
    workers: int = 1,
    progress: bool = True,
    on_unit: Callable[[Unit], None] | None = None,
    engine: str = "local",
    address: str | None = None,
    device: str = "cpu",
) -> dict[str, pd.DataFrame]:
    """Run (or resume) the study into ``out``; returns the consolidated tables. ``engine``, ``address``
    and ``device``: where units run (``leam.study.engines``); the run folder is the same for all.

    Everything is checked before anything is written (``check_study``, the data folder, the engine, and
    that ``out`` holds no other run), so a mistake costs one line and leaves no run behind."""
    check_engine(engine, address)
    device = resolve_device(device)
    check_study(config)
    check_run_folder(out, config.data, (RUN_MANIFEST, BACKUP))  # not among the photos, nor over others' files
    wanted = json.loads(json.dumps(config.to_dict()))  # as stored: tuples become lists
    store = RunStore(out)
    check_resume(out, store.read_manifest(), wanted)
    load_dataset_cached(config.data)
    if engine == "ray":
        start_ray(address)
    with store.lock():
        manifest = store.read_manifest()
        check_resume(out, manifest, wanted)
        dataset = load_dataset_cached(config.data)
        if manifest is None:
            manifest = {
                "config": wanted,
                "leam_version": __version__,
                "models": {m: _spec_dict(m) for m in config.models},
                "identities": len(dataset),
                "photos": sum(len(v) for v in dataset.values()),
            }
            store.write_manifest(manifest)
        store.clean_temporaries()
        session = {"id": uuid.uuid4().hex, "started": _now(), "finished": None, "workers": workers,
                   "engine": engine, "device": device}
        _CACHE[("data", config.data)] = (session["id"], dataset)  # what this session's units read here
        phases = plan(config, dataset)
        inputs = StudyInputs(store, config, dataset)
        removed = store.remove_units_except({DATA_UNIT, *(unit_name(u) for phase in phases for u in phase)})
        changes = inputs.changes(removed)
        changes.counts["entries left out"] += _update_data_unit(store, config)
        pending = inputs.pending(phases)  # not done, damaged, done with other inputs, or reading one of those
        session.update(units_pending=len(pending), data_changes=changes.record())
        manifest.update(identities=len(dataset), photos=sum(len(v) for v in dataset.values()))
        manifest.setdefault("sessions", []).append(session)  # each invocation: when, where and how much
        store.write_manifest(manifest)
        if progress and (line := changes.line(len(pending))):
            tqdm.write(line, file=sys.stderr)
        started = time.perf_counter()
        for phase in phases:
            pending = [u for u in phase if not inputs.is_current(u)]  # after the phases before it are done
            if not pending:
                continue
            label = {"identity": "identities × models", "transfer": "transfer", "pairs": "map pairs"}[phase[0].kind]
            bar = tqdm(total=len(phase), initial=len(phase) - len(pending), desc=label, unit="unit",
                       disable=not progress, dynamic_ncols=True)
            with bar:
                for unit in _run_units(str(out), wanted, pending, workers, engine, address, device):
                    bar.update()
                    if on_unit:
                        on_unit(unit)
        units = [DATA_UNIT] + [unit_name(u) for phase in phases for u in phase]
        tables = store.consolidate(units)
        manifest["finished"] = True
        manifest["counts"] = {k: len(v) for k, v in tables.items()}
        session.update(finished=_now(), seconds=round(time.perf_counter() - started, 3))
        store.write_manifest(manifest)
        return tables


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
    for name in config.models:
        model_spec(name)  # an unknown name: ModelError listing the registered ones
        if default_weights_path(name) is None:
            raise ModelError(f"--models {name}: its weights are not installed, and a study uses installed weights "
                             "only; study the models `leam models` shows with their weights found")
        model = _model(name)
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
        _parser(config.parser)
    except LeamError as exc:  # e.g. one that needs a weight file: a study takes none
        raise LeamError(f"--parser {config.parser}: {exc}") from None


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
    if stored != wanted:
        raise LeamError(f"{out} holds a run with a different configuration ({'; '.join(differences(stored, wanted))}); "
                        "use the same options to resume it, or another --out folder")


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
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
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
    processes started in it begin with SIGINT blocked (``_init_worker``)."""
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


def _spec_dict(name: str) -> dict:
    s = model_spec(name)
    return {"description": s.description, "input_size": s.input_size, "embedding_size": s.embedding_size,
            "normalization": s.normalization, "template": s.template.name, "threshold": s.threshold,
            "threshold_metric": s.threshold_metric, "default_layers": list(s.default_layers)}
