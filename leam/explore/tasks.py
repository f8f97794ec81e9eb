"""The explorer's work on each identity unit, and the processes that do it.

The tasks are module-level functions of this small module so that a spawned worker imports little (NumPy,
the run's store, the maps' arithmetic and the drawing), not the pages or the report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from leam.errors import LeamError
from leam.explore import maps, render
from leam.explore.jobs import Job, population_unit
from leam.study.store import RunStore


class Workers:
    """``count`` spawned processes (none for 1: the tasks run here) to run tasks on, ended on leaving the
    ``with`` block, queued tasks cancelled."""

    def __init__(self, count: int) -> None:
        self.pool = ProcessPoolExecutor(count, mp_context=get_context("spawn")) if count > 1 else None

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def run(self, fn: Callable, tasks: list[tuple]) -> Iterator[tuple[int, object]]:
        """(k, ``fn(*tasks[k])``) for every task, as each finishes."""
        if self.pool is None:
            for k, task in enumerate(tasks):
                yield k, fn(*task)
            return
        futures: dict[Future, int] = {self.pool.submit(fn, *task): k for k, task in enumerate(tasks)}
        try:
            for f in as_completed(futures):
                yield futures[f], f.result()
        finally:
            for f in futures:
                f.cancel()


def arrays(run_dir: str, job: Job):
    """The job's identity unit's arrays, checked against its done marker."""
    found = RunStore(run_dir).unit_arrays(job.unit)
    if found is None:
        raise LeamError(f"{run_dir}: the unit {job.unit} has no maps.npz; run `leam study` on the run again")
    return found


def unit_sums(run_dir: str, job: Job) -> maps.Sums:
    """The first pass: the sums of the job's maps and chips."""
    with arrays(run_dir, job) as found:
        return maps.sums(found, job.explained)


def person(run_dir: str, site: Path, job: Job, layers: list[str], total: maps.Sums,
           what: set[str], specific: int | None = None) -> tuple[maps.Person, int]:
    """The second pass: the person's numbers under the job's model, and its pictures ``what`` (groups of
    ``render.WHAT``) drawn; returns (numbers, files written). ``specific``: the person's place among the
    ``people`` of the model's population unit, whose specific map is drawn (None: none)."""
    with arrays(run_dir, job) as found:
        own, consensus, prior = maps.consensus_and_prior(found, job.explained, total)
        numbers = maps.person(found, job.explained, consensus, prior)
        mine = specific_map(run_dir, job.model, specific) if "specific" in what and specific is not None else None
        files = render.draw_job(site, found, job, layers, own, consensus, prior, what, mine) if what else 0
    return numbers, files


def specific_map(run_dir: str, model: str, k: int):
    """The ``k``-th person's specific map (float16, (H, W)) in the population unit of ``model``."""
    with RunStore(run_dir).unit_arrays(population_unit(model)) as found:
        return found[f"specific/{k}"]
