"""Which pictures an explorer run draws: the site's manifest (``SITE/explore.json``) lists, per job (identity and
model), what its pictures were drawn from and their files; a later run draws a job's pictures again only when
that changed:

- its photos' chips and maps, and its consensus map: when the identity unit's done marker changed
  (``RunStore.marker_digest``: the unit was redone), or a file is missing;
- its difference from the population: also when the model's population changed (``population_key``: any
  identity's maps changed, so every prior moved);
- the population's pictures of a model: when its population changed.

Pages are written every run (they are small, and their numbers are computed afresh). While pictures are drawn,
the manifest is saved every ``CHECKPOINT_SECONDS`` (``Checkpoints``): an interrupted run's successor draws only
the jobs it had not finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from leam._io import write_file
from leam._paths import marked_files
from leam.explore import maps
from leam.explore.jobs import Job
from leam.explore.render import WHAT, job_files

MANIFEST = "explore.json"
VERSION = 1  # of the pictures' layout and drawing: a change draws everything again
CHECKPOINT_SECONDS = 30.0


@dataclass
class Plan:
    """What to draw and what to remove, and the manifest to write once drawn."""

    draw: dict[str, set[str]] = field(default_factory=dict)  # job key -> groups of ``WHAT`` to draw
    population: list[str] = field(default_factory=list)  # models whose population pictures to draw
    stale: list[str] = field(default_factory=list)  # files of the last run no job draws any more
    manifest: dict = field(default_factory=dict)

    def files(self) -> list[str]:
        """The picture files this run writes, relative to the site."""
        jobs = self.manifest.get("jobs", {})
        return [f for key, groups in self.draw.items() for g in groups for f in jobs[key]["files"][g]]


def population_key(total: maps.Sums) -> str:
    """What identifies a model's population: the SHA-256 of its photo count and map sum (exact sums: the same
    maps give the same key whatever order they were added in)."""
    return hashlib.sha256(str(total.count).encode() + total.maps.tobytes()).hexdigest()


def load(site: Path) -> dict:
    """The manifest of the last run in ``site``; an empty one when there is none, or it is unreadable or of
    another version (everything is drawn again)."""
    try:
        manifest = json.loads((site / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    ok = isinstance(manifest, dict) and manifest.get("version") == VERSION and isinstance(manifest.get("jobs"), dict)
    return manifest if ok else {}


def save(site: Path, manifest: dict) -> None:
    write_file(site / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())


def plan(site: Path, old: dict, jobs: list[Job], digests: dict[str, str], layers: dict[str, list[str]],
         populations: dict[str, str], priors: set[str], specific: set[str] = frozenset()) -> Plan:
    """What to draw for ``jobs`` (``digests``: their units' marker digests by job key; ``populations``: each
    model's ``population_key``; ``priors``: keys of the jobs that have a prior; ``specific``: of the jobs whose
    specific map the run's population unit holds), given the ``old`` manifest."""
    was = old.get("jobs", {})
    out = Plan(manifest={"version": VERSION, "jobs": {}, "population": dict(populations)})
    for job in jobs:
        files = job_files(job, len(layers[job.model]), job.key in priors, job.key in specific)
        entry = {"digest": digests[job.key], "population": populations[job.model], "files": files}
        out.manifest["jobs"][job.key] = entry
        before = was.get(job.key, {})
        if before.get("digest") != entry["digest"] or before.get("files") != files:
            out.draw[job.key] = set(WHAT)
            continue
        groups = {g for g in WHAT if not all(os.path.isfile(site / f) for f in files[g])}
        if before.get("population") != entry["population"]:
            groups |= {"difference", "specific"}  # the prior moved, and the specific map found against it
        if groups:
            out.draw[job.key] = groups
    out.population = [m for m, key in populations.items() if old.get("population", {}).get(m) != key]
    now = {f for entry in out.manifest["jobs"].values() for group in entry["files"].values() for f in group}
    listed = {f for entry in was.values() if isinstance(entry, dict)
              for group in (entry.get("files") or {}).values() for f in group if isinstance(f, str)}
    out.stale = sorted(listed - now)
    return out


def remove(site: Path, files: list[str]) -> None:
    """Remove the last run's pictures ``files`` (relative to the site) that no job draws any more: only files
    under ``site/img/`` that the marker of their folder lists as written by leam."""
    root = (site / "img").resolve()
    for name in files:
        path = (site / name).resolve()
        if root in path.parents and path.name in marked_files(path.parent):
            path.unlink(missing_ok=True)


def partial(old: dict, todo: Plan, drawn: set[str]) -> dict:
    """The manifest of a run stopped after drawing the jobs ``drawn``: this run's entries for those and for the
    jobs that had nothing to draw; the ``old`` manifest's entry (or none) for the others, so that they are drawn
    again."""
    was = old.get("jobs", {})
    jobs = {}
    for key, entry in todo.manifest["jobs"].items():
        if key not in todo.draw or key in drawn:
            jobs[key] = entry
        elif key in was:
            jobs[key] = was[key]
    return {**todo.manifest, "jobs": jobs}


class Checkpoints:
    """Saves the ``partial`` manifest of ``site`` at most every ``seconds`` as jobs are drawn."""

    def __init__(self, site: Path, old: dict, todo: Plan, seconds: float | None = None) -> None:
        self.site, self.old, self.todo = site, old, todo
        self.seconds = CHECKPOINT_SECONDS if seconds is None else seconds
        self.drawn: set[str] = set()
        self.last = time.monotonic()

    def done(self, key: str) -> None:
        """Job ``key``'s pictures are drawn."""
        if key not in self.todo.draw:
            return
        self.drawn.add(key)
        if time.monotonic() - self.last >= self.seconds:
            save(self.site, partial(self.old, self.todo, self.drawn))
            self.last = time.monotonic()
