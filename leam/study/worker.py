"""Doing one unit of a study, in whichever process runs it: the study's own process, a worker of its
process pool (``leam.study.run``) or a Ray task (``leam.study.engines``). Each kind of unit is one small
function, found through ``UNIT_KINDS``; the models, parsers and data a process has loaded are kept for
its next units (``WorkerCache``).

A unit reads what it needs from the run folder and the data, writes its parts atomically and marks itself
done last (``RunStore.write_unit``), so the run folder is the same whichever process did the work.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from leam.data.dataset import load_dataset
from leam.models import FaceModel
from leam.models.choice import ModelChoice, choice_from_record, load_model_choice
from leam.models.external import SlowModelWarning
from leam.models.inference import ForwardsFallback, gradient_free_embed
from leam.parse import FaceParser, create_parser
from leam.study import faithfulness
from leam.study.config import StudyConfig
from leam.study.inputs import identity_inputs, unit_inputs, unit_name
from leam.study.store import RunStore
from leam.study.units import Unit, identity_unit, model_layers, pairs_unit, transfer_unit, unit_rng

UNIT_THREADS = 1


@contextmanager
def unit_threads() -> Iterator[None]:
    """Within the block torch and the BLAS/OpenMP pools run ``UNIT_THREADS`` threads; afterwards as before.

    Floats depend on how many threads a kernel splits its work into (one thread and two differ in the last
    digits of maps and embeddings), so every unit computes on one thread: its numbers are the same whatever
    the engine, the workers or the caller's threads."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(UNIT_THREADS)
    try:
        with threadpool_limits(UNIT_THREADS):
            yield
    finally:
        torch.set_num_threads(before)


class WorkerCache:
    """What one process has loaded for its units: models (per device), parsers, and the data folder's
    photos as they were when the run's current session began."""

    def __init__(self) -> None:
        self._models: dict[tuple, FaceModel] = {}  # (name, device, a file's path, preset and SHA-256)
        self._embedders: dict[tuple, object] = {}  # (engine, the model's key)
        self._parsers: dict[str, FaceParser] = {}
        self._data: dict[str, tuple[str | None, dict]] = {}

    def model(self, name: str, device: str = "cpu", record: dict | None = None) -> FaceModel:
        """The registered model ``name``, or with ``record`` (``leam.models.choice.file_record``) the model
        file it records, refused if its SHA-256 is no longer the recorded one."""
        key = (name, device, *((record["path"], record.get("preset"), record["sha256"]) if record else ()))
        if key not in self._models:
            choice = choice_from_record(name, record) if record else ModelChoice(name)
            model = load_model_choice(choice, record)
            model.net.to(device)
            self._models[key] = model
        return self._models[key]

    def embedder(self, name: str, device: str = "cpu", record: dict | None = None, engine: str = "torch"):
        """The gradient-free ``embed`` of the model ``model(name, device, record)`` computed by ``engine``
        (``leam.models.inference``; ONNX Runtime on ``UNIT_THREADS`` threads), kept with the model."""
        model = self.model(name, device, record)
        key = (engine, id(model))
        if key not in self._embedders:
            self._embedders[key] = gradient_free_embed(model, engine, threads=UNIT_THREADS)
        return self._embedders[key]

    def parser(self, name: str) -> FaceParser:
        if name not in self._parsers:
            self._parsers[name] = create_parser(name)
        return self._parsers[name]

    def dataset(self, data: str, session: str | None = None) -> dict:
        """The data folder's photos, read once per session (``session``: its id in ``run.json``), so that
        the units of a session all see the data as it was when the session began; without ``session``,
        read afresh."""
        cached = self._data.get(data)
        if session is None or cached is None or cached[0] != session:
            cached = self._data[data] = (session, load_dataset(data))
        return cached[1]

    def keep_dataset(self, data: str, session: str, dataset: dict) -> None:
        """``dataset`` is what the units of ``session`` read in this process."""
        self._data[data] = (session, dataset)


CACHE = WorkerCache()  # one per process


@dataclass
class UnitJob:
    """What a unit's function gets: the settings, the run folder, the unit and where to compute."""

    config: StudyConfig
    store: RunStore
    unit: Unit
    device: str = "cpu"
    embedders: dict = field(default_factory=dict)  # model name -> the embed handed out (``embed``)

    def model(self, name: str | None = None) -> FaceModel:
        name = name or self.unit.model
        return CACHE.model(name, self.device, self.config.model_files.get(name))

    def embed(self, name: str | None = None):
        """The model's gradient-free ``embed`` by the study's engine (``StudyConfig.forwards``)."""
        name = name or self.unit.model
        embed = CACHE.embedder(name, self.device, self.config.model_files.get(name), self.config.forwards)
        self.embedders[name] = embed
        return embed

    def forwards_used(self) -> dict[str, dict[str, str]]:
        """What the unit's done marker records of its gradient-free forwards: ``{"forwards": {model: engine}}``
        (torch after a fallback) and ``{"forwards_fallback": {model: why}}`` for the models that fell back."""
        used = {n: e.engine for n, e in self.embedders.items() if e.engine is not None}
        fallbacks = {n: e.reason for n, e in self.embedders.items() if e.reason}
        return {**({"forwards": used} if used else {}), **({"forwards_fallback": fallbacks} if fallbacks else {})}

    def dataset(self) -> dict:
        return CACHE.dataset(self.config.data, session_id(self.store))


@dataclass
class UnitResult:
    """A unit's parts: what it read (recorded in its done marker, compared by a resume), tables, arrays."""

    inputs: dict
    tables: dict[str, pd.DataFrame]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def run_identity(job: UnitJob) -> UnitResult:
    """Align, embed and explain an identity's photos under a model, with regions and occlusion."""
    photos = job.dataset()[job.unit.identity]
    inputs = identity_inputs(photos)  # before the photos are read: a photo changed meanwhile is redone later
    tables, arrays = identity_unit(job.config, job.model(), CACHE.parser(job.config.parser), photos,
                                   unit_rng(job.config, job.unit), job.embed())
    return UnitResult(inputs, tables, arrays)


def run_transfer(job: UnitJob) -> UnitResult:
    """Occlude a model's chips of an identity with the other models' maps of the same photos."""
    config, store, unit = job.config, job.store, job.unit
    inputs = unit_inputs(store, config, unit)
    sources = {}
    for m in config.models:
        u = unit_name(Unit("identity", m, unit.identity))
        images = store.unit_table(u, "images")
        if images is not None and len(images):
            sources[m] = (images, store.unit_arrays(u))
    own = store.unit_table(unit_name(Unit("identity", unit.model, unit.identity)), "occlusion")
    model = job.model()
    tables = transfer_unit(config, model, unit.identity, sources, own, job.embed()) if unit.model in sources else {}
    return UnitResult(inputs, tables)


def run_pairs(job: UnitJob) -> UnitResult:
    """Compare the maps of sampled pairs of a model's explained photos, across all identities."""
    config, store, unit = job.config, job.store, job.unit
    identities = job.dataset()
    inputs = unit_inputs(store, config, unit, identities)
    images = _model_images(store, unit.model, identities)
    opened: dict[str, np.lib.npyio.NpzFile] = {}

    def load_map(u: str, index: int, layer: str) -> np.ndarray:
        if u not in opened:
            opened[u] = store.unit_arrays(u)
        return opened[u][f"{index}/{layer}"]

    layers = model_layers(config, job.model())
    return UnitResult(inputs, pairs_unit(config, unit.model, layers, images, load_map, unit_rng(config, unit)))


def _model_images(store: RunStore, model: str, identities: Iterable[str]) -> pd.DataFrame:
    """The image rows of a model's identity units, with a ``unit`` column naming each row's unit."""
    frames = []
    for identity in identities:
        u = unit_name(Unit("identity", model, identity))
        images = store.unit_table(u, "images")
        if images is not None and len(images):
            frames.append(images.assign(unit=u))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["role"])


def run_population(job: UnitJob) -> UnitResult:
    """Sum a model's default maps over all its explained photos (the faithfulness phase's population prior)."""
    config, store, unit = job.config, job.store, job.unit
    identities = job.dataset()
    inputs = unit_inputs(store, config, unit, identities)
    opened: dict[str, np.lib.npyio.NpzFile] = {}

    def load_map(u: str, index: int) -> np.ndarray:
        if u not in opened:
            opened[u] = store.unit_arrays(u)
        return opened[u][f"{index}/aggregate"]

    arrays = faithfulness.population_unit(_model_images(store, unit.model, identities), load_map)
    return UnitResult(inputs, {}, arrays)


def run_faithfulness(job: UnitJob) -> UnitResult:
    """Deletion and insertion curves of every ranking for an identity's sampled photos under a model."""
    config, store, unit = job.config, job.store, job.unit
    inputs = unit_inputs(store, config, unit)
    own = unit_name(Unit("identity", unit.model, unit.identity))
    images = store.unit_table(own, "images")
    population = store.unit_arrays(unit_name(Unit("population", unit.model)))
    if images is None or not len(images) or population is None:
        return UnitResult(inputs, {})
    tables = faithfulness.faithfulness_unit(config, job.model(), unit.identity, images, store.unit_arrays(own),
                                            population, store.unit_arrays, unit_rng(config, unit), job.embed())
    return UnitResult(inputs, tables)


@dataclass(frozen=True)
class UnitKind:
    """A kind of unit: its units in a study (a phase; none when the study has no such phase), the label of
    its phase (the progress a caller shows) and the function that does one."""

    label: str
    units: Callable[[StudyConfig, Mapping[str, list]], list[Unit] | None]  # (config, identity -> photos)
    run: Callable[[UnitJob], UnitResult]


UNIT_KINDS: dict[str, UnitKind] = {  # in the order their phases run: each reads what the ones before wrote
    "identity": UnitKind("identities × models", lambda c, ids: [Unit("identity", m, i) for m in c.models for i in ids],
                         run_identity),
    "transfer": UnitKind("transfer", lambda c, ids: [Unit("transfer", m, i) for m in c.models for i in ids]
                         if c.transfer and len(c.models) > 1 else None, run_transfer),
    "pairs": UnitKind("map pairs", lambda c, ids: [Unit("pairs", m) for m in c.models], run_pairs),
    "population": UnitKind("population maps", lambda c, ids: [Unit("population", m) for m in c.models]
                           if c.faithfulness else None, run_population),
    "faithfulness": UnitKind("faithfulness", lambda c, ids: [Unit("faithfulness", m, i) for m in c.models
                                                             for i in faithfulness.sample_identities(c, ids)]
                             if c.faithfulness else None, run_faithfulness),
}


def plan(config: StudyConfig, dataset: Mapping[str, list] | Iterable[str]) -> list[list[Unit]]:
    """The study's units in phases, one per kind of unit (``UNIT_KINDS``): identities × models, then
    transfer (with several models), pairs, and with ``--faithfulness`` population maps and curves.
    ``dataset``: identity -> photos (identities alone: each as if without photos)."""
    if not isinstance(dataset, Mapping):
        dataset = {i: [] for i in dataset}
    phases = [kind.units(config, dataset) for kind in UNIT_KINDS.values()]
    return [units for units in phases if units is not None]


def execute(root: str, config_dict: dict, unit: Unit, device: str = "cpu") -> Unit:
    """Do one unit and write its files (runs in a worker process or in the caller), on one thread
    (``unit_threads``): its numbers do not depend on the engine, the workers or the caller's threads. A fallback
    of the gradient-free forwards to PyTorch is recorded in the unit's done marker (``run_study`` says it once),
    not warned in every process."""
    with unit_threads(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ForwardsFallback)
        warnings.simplefilter("ignore", SlowModelWarning)  # said once, when the study checked its models
        return _execute(root, config_dict, unit, device)


def _execute(root: str, config_dict: dict, unit: Unit, device: str) -> Unit:
    wall, cpu = time.perf_counter(), time.process_time()
    job = UnitJob(StudyConfig.from_dict(config_dict), RunStore(root), unit, device)
    result = UNIT_KINDS[unit.kind].run(job)
    info = {"unit": list(unit.key), "inputs": result.inputs, "seconds": round(time.perf_counter() - wall, 3),
            "cpu_seconds": round(time.process_time() - cpu, 3),  # in the unit's done.json, with where it ran
            "host": socket.gethostname(), "pid": os.getpid()}
    info.update(job.forwards_used())
    job.store.write_unit(unit_name(unit), result.tables, result.arrays, info=info)
    return unit


def session_id(store: RunStore) -> str | None:
    """The id of the run's current session (the last in ``run.json``)."""
    sessions = (store.read_manifest() or {}).get("sessions") or [{}]
    return sessions[-1].get("id") if isinstance(sessions[-1], dict) else None


def init_worker(parent: int) -> None:
    """A pool worker ignores SIGINT (a Ctrl-C reaches the whole process group: the study's process stops the
    workers itself, and a worker interrupted on its own would print a traceback and go on); it starts with
    SIGINT blocked (``leam.study.run._sigint_blocked``), so one sent while it starts is dropped here."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    threading.Thread(target=_exit_without, args=(parent,), daemon=True).start()


def _exit_without(parent: int) -> None:
    """End this worker once the study's process is gone (killed): an orphan would go on writing into the
    run folder without holding its lock, beside the process that resumes the run, and never exit."""
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(1)
