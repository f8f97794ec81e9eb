"""The explorer's unit of work, a ``Job``: one identity under one model, and where its pictures go."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from leam.study.store import unit_dir_name


@dataclass(frozen=True)
class Job:
    """One identity under one model: its identity unit and the photos stored in it (``array_index``)."""

    identity: str
    model: str
    explained: tuple[int, ...]  # photos with maps
    references: tuple[int, ...] = ()  # photos stored with their chip only (the baseline reference)

    @property
    def unit(self) -> str:
        """The identity unit's folder name, as the study names it (``unit_name(Unit("identity", ...))``)."""
        return unit_dir_name("identity", self.model, self.identity)

    @property
    def key(self) -> str:
        """The job's folder of pictures under ``SITE/img/``: ``<person>/<model>``."""
        return f"{file_stem(self.identity)}/{file_stem(self.model)}"


def population_unit(model: str) -> str:
    """The folder name of a model's population unit (``leam study --faithfulness``), as the study names it."""
    return unit_dir_name("population", model, "")


def file_stem(name: str) -> str:
    """A file-system-safe, stable and unique name for an identity or a model of any spelling (a readable part
    and a hash of the name: the same name gives the same file on every run, whoever else is in the run)."""
    return unit_dir_name(name)


def jobs(images: pd.DataFrame, models: list[str]) -> list[Job]:
    """One ``Job`` per identity and model with at least one explained photo, models in ``models``' order."""
    out = []
    if images.empty:
        return out
    rank = {m: k for k, m in enumerate(models)}
    for (identity, model), g in images.groupby(["identity", "model"], sort=False):
        explained = g[g["role"] == "explained"]["array_index"].astype(int)
        if len(explained):
            refs = g[g["role"] == "reference"]["array_index"].astype(int)
            out.append(Job(str(identity), str(model), tuple(explained), tuple(refs)))
    return sorted(out, key=lambda j: rank.get(j.model, len(rank)))
