"""What each unit of a study reads, recorded in its ``done.json`` so that a resume redoes exactly the units
whose inputs changed since they were done (and never mixes rows of old and new data):

- an identity unit: its photos (paths relative to DATA), the SHA-256 of each photo's bytes and the photo's
  attributes from ``manifest.csv`` (hashing is cheap: all of LFW's 8,010 photos in 0.13 s, lfw-demo's 120
  in 2 ms, with the files cached);
- a transfer unit: the done markers (``RunStore.marker_digest``) of its identity's units under every model;
- a pairs unit: the done markers of its model's identity units, every identity;
- a population unit: the same, and what it stores (``POPULATION_ARRAYS``: a unit of an older leam, without the
  people's specific maps, is redone);
- the data unit: the entries of the data folder left out, with the reason.

A unit redone gets a new marker, so the transfer and pairs units that read it are redone too. Units done
before leam recorded inputs are taken as they are (and the transfer and pairs units over them, while
every unit they read is such an old one).
"""

from __future__ import annotations

import json
import os
import stat
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from leam.data.dataset import Photo
from leam.study.checksums import sha256_file
from leam.study.config import PHASE_SETTINGS, StudyConfig
from leam.study.store import LEGACY, RunStore, unit_dir_name
from leam.study.units import Unit

POPULATION_ARRAYS = ("sum", "pool", "prior", "consensus", "specific")  # what a population unit stores


def unit_name(unit: Unit) -> str:
    return unit_dir_name(*unit.key)


def plain(obj):
    """``obj`` as JSON gives it back (tuples as lists, keys as text): what a done marker records."""
    return json.loads(json.dumps(obj, default=str))


def photo_digest(path: Path) -> str:
    """SHA-256 of a photo's bytes; for what is no readable regular file (a pipe, a broken link, a folder
    without permission), why, so that a unit is redone when that changes. Never opens a non-regular file."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        return sha256_file(path)
    except OSError as exc:
        return f"unreadable ({exc.strerror or type(exc).__name__})"


def identity_inputs(photos: Iterable[Photo]) -> dict:
    """An identity unit's inputs: ``{"photos": [[name, sha256, attributes], ...]}`` in the photos' order."""
    return plain({"photos": [[p.name, photo_digest(p.path), p.attrs] for p in photos]})


def reads(config: StudyConfig, unit: Unit, identities: Iterable[str] = ()) -> list[str]:
    """The units a transfer, pairs, population or faithfulness unit reads (``identities``: the data's, for
    pairs and population)."""
    if unit.kind == "transfer":
        return [unit_name(Unit("identity", m, unit.identity)) for m in config.models]
    if unit.kind in ("pairs", "population"):
        return [unit_name(Unit("identity", unit.model, i)) for i in identities]
    if unit.kind == "faithfulness":  # the population unit reads every identity unit of the model
        return [unit_name(Unit("identity", unit.model, unit.identity)), unit_name(Unit("population", unit.model))]
    return []


def unit_inputs(store: RunStore, config: StudyConfig, unit: Unit, identities: Iterable[str] = (),
                redo: frozenset[str] | set[str] = frozenset()) -> dict:
    """What a unit other than an identity unit reads: the done markers of its upstream units, and for a
    faithfulness unit also the phase's settings (changing them redoes that phase only)."""
    inputs = upstream_inputs(store, reads(config, unit, identities), redo)
    if unit.kind == "population":  # a unit done before it stored these is redone (and the curves that read it)
        inputs["arrays"] = list(POPULATION_ARRAYS)
    if unit.kind == "faithfulness":
        inputs["settings"] = plain({k: getattr(config, k) for k in PHASE_SETTINGS})
    return inputs


def upstream_inputs(store: RunStore, units: Iterable[str], redo: frozenset[str] | set[str] = frozenset()) -> dict:
    """A transfer or pairs unit's inputs: the done-marker digest of each unit it reads (None for a unit
    not done, or in ``redo``)."""
    return {"units": {u: None if u in redo else store.marker_digest(u) for u in units}}


PHRASES = {  # what changed: (said of one, said of several)
    "photos added": ("1 photo added", "{n} photos added"),
    "photos removed": ("1 photo removed", "{n} photos removed"),
    "photos replaced": ("1 photo replaced (other bytes)", "{n} photos replaced (other bytes)"),
    "attributes changed": ("1 photo's attributes changed", "{n} photos' attributes changed"),
    "identities added": ("1 identity added", "{n} identities added"),
    "identities removed": ("1 identity removed", "{n} identities removed"),
    "entries left out": ("other entries of the data folder left out",) * 2,
}


@dataclass
class Changes:
    """What changed in the data since the units were done (``PHRASES``), counted once per photo or identity."""

    counts: Counter = field(default_factory=Counter)

    def add_photos(self, recorded: dict, current: dict) -> None:
        """Compare an identity unit's recorded photos with the current ones."""
        try:
            was = {name: (digest, attrs) for name, digest, attrs in recorded["photos"]}
        except (KeyError, TypeError, ValueError):  # inputs of another form: count nothing, the unit is redone
            return
        now = {name: (digest, attrs) for name, digest, attrs in current["photos"]}
        both = now.keys() & was.keys()
        self.counts.update({"photos added": len(now.keys() - was.keys()),
                            "photos removed": len(was.keys() - now.keys()),
                            "photos replaced": sum(now[n][0] != was[n][0] for n in both),
                            "attributes changed": sum(now[n][1] != was[n][1] for n in both)})

    def line(self, units: int) -> str | None:
        """``"data changed since the last session: 2 photos added, 1 photo removed; redoing 3 units"``, or
        None when nothing changed."""
        said = [(one if n == 1 else several).format(n=n) for key, (one, several) in PHRASES.items()
                if (n := self.counts[key])]
        if not said:
            return None
        return f"data changed since the last session: {', '.join(said)}; redoing {units} unit{'s' * (units != 1)}"

    def record(self) -> dict:
        """The counts as recorded in the session's entry of ``run.json``."""
        return {key.replace(" ", "_"): n for key in PHRASES if (n := self.counts[key])}


@dataclass
class StudyInputs:
    """The current inputs of a study's units, and which units are up to date with them."""

    store: RunStore
    config: StudyConfig
    dataset: dict[str, list[Photo]]
    _photos: dict[str, dict] = field(default_factory=dict)

    def photos(self, identity: str) -> dict:
        if identity not in self._photos:  # hashed once per session, for all models
            self._photos[identity] = identity_inputs(self.dataset[identity])
        return self._photos[identity]

    def of(self, unit: Unit, redo: frozenset[str] | set[str] = frozenset()) -> dict:
        if unit.kind == "identity":
            return self.photos(unit.identity)
        return unit_inputs(self.store, self.config, unit, self.dataset, redo)

    def is_current(self, unit: Unit, redo: frozenset[str] | set[str] = frozenset()) -> bool:
        """Whether the unit is done, intact, and was done with the current inputs; ``redo``: units that
        will be redone before this one runs."""
        marker = self.store.marker(unit_name(unit))
        if marker is None:
            return False
        inputs = self.of(unit, redo)
        if "inputs" not in marker:  # done before leam recorded inputs
            return all(str(d).startswith(LEGACY) for d in inputs.get("units", {}).values())
        return marker["inputs"] == inputs

    def pending(self, phases: list[list[Unit]]) -> list[Unit]:
        """The units to do this session, in order: those not up to date, and those that read one of them."""
        redo: set[str] = set()
        out = []
        for phase in phases:
            for u in phase:
                if not self.is_current(u, redo):
                    out.append(u)
                    redo.add(unit_name(u))
        return out

    def changes(self, removed: list[dict]) -> Changes:
        """What changed in the data since the units were done: per identity, its first model's unit with
        other recorded photos; identities missing from the first model's pairs unit; ``removed``: the
        markers of the unit folders of identities no longer in the data."""
        changes = Changes()
        first = self.config.models[0]
        for identity in self.dataset:
            marker = self.store.marker(unit_name(Unit("identity", first, identity)))
            if marker is not None and "inputs" in marker and marker["inputs"] != self.photos(identity):
                changes.add_photos(marker["inputs"], self.photos(identity))
        pairs = self.store.marker(unit_name(Unit("pairs", first)))
        if pairs is not None and isinstance(pairs.get("inputs"), dict):
            known = set(pairs["inputs"].get("units", {}))
            changes.counts["identities added"] += sum(
                unit_name(Unit("identity", first, i)) not in known for i in self.dataset)
        keys = [m.get("unit") for m in removed]
        changes.counts["identities removed"] += len({k[2] for k in keys if isinstance(k, list) and len(k) == 3
                                                     and k[0] == "identity"})
        return changes
