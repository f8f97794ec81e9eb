"""The run folder of ``leam protect-eval``: the study's ``RunStore`` with protect-eval's tables.

Layout (as a study's, ``leam.study.store``)::

    RUN/run.json, run.json.bak            the configuration (``kind: protect-eval``), sealed, and its copy
    RUN/parts/<identity>/results.parquet  one row per photo x ensemble x method x budget x model
    RUN/parts/<identity>/failures.parquet photos without a usable face, identities with < 2 photos
    RUN/parts/<identity>/examples.npz     crops of one photo before and after, for the report
    RUN/parts/<identity>/done.json        written last: the unit's files with sizes and SHA-256, its inputs
    RUN/tables/results.parquet, failures.parquet, checksums.json   the done units' rows (``consolidate``)
    RUN/tables/results.csv, failures.csv, summary.csv              the same as CSV, and the summary
    RUN/report.html

Reading a run loads no model (the report reads it).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from leam.errors import LeamError
from leam.protect.summary import summarise_protection
from leam.study.run_tables import RunTables
from leam.study.store import BACKUP, CHECKSUMS, RunStore, unit_dir_name

KIND = "protect-eval"
TABLES = ("results", "failures")
RUN_FILES = ("run.json", BACKUP, "report.html", *(f"tables/{t}.csv" for t in (*TABLES, "summary")),
             *(f"tables/{t}.parquet" for t in TABLES), f"tables/{CHECKSUMS}")


class ProtectStore(RunStore):
    """A ``leam protect-eval`` run folder: one unit per identity (``unit_name``)."""

    command = "leam protect-eval"
    table_names = TABLES
    arrays_name = "examples.npz"

    def derived_files(self, tables: RunTables) -> dict[str, bytes]:
        """The tables and the summary as CSV, written within the consolidation."""
        return {f"{name}.csv": df.to_csv(index=False).encode() for name, df in _with_summary(tables).items()}


def unit_name(identity: str) -> str:
    return unit_dir_name(identity)


def consolidate(store: ProtectStore, identities: list[str]) -> dict[str, pd.DataFrame]:
    """The done identities' rows (in the planned order) into ``tables/``: Parquet (``RunStore.consolidate``)
    and CSV, with the summary (``ProtectStore.derived_files``)."""
    return _with_summary(store.consolidate([unit_name(n) for n in identities]))


def _with_summary(tables: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    out = {name: tables.get(name, pd.DataFrame()) for name in TABLES}
    out["summary"] = summarise_protection(out["results"])
    return out


def read_manifest(store: ProtectStore) -> dict | None:
    """``run.json`` of a protect-eval run; None when there is none; another kind of run is refused."""
    manifest = store.read_manifest()
    if manifest is not None and manifest.get("kind") != KIND:
        raise LeamError(f"{store.root} holds a `leam {manifest.get('kind', 'study')}` run, not a protect-eval run; "
                        "use another --out folder")
    return manifest


def read_run(out: str | Path) -> tuple[dict, dict[str, pd.DataFrame], dict[str, np.lib.npyio.NpzFile]]:
    """(manifest with ``done``: the done identities, tables (results, failures, summary), {identity: examples})
    of a run folder, for the report; every part is checked against its done marker, the tables against
    ``tables/checksums.json``, all read under the tables' lock (``RunStore.reading``)."""
    store = ProtectStore(out)
    manifest = read_manifest(store)
    if manifest is None:
        raise LeamError(f"{out}: no run.json of `leam protect-eval`")
    with store.reading():
        done = [n for n in manifest["identities"] if store.is_done(unit_name(n))]
        examples = {}
        for n in done:
            z = store.unit_arrays(unit_name(n))
            if z is not None and "original" in z.files:
                examples[n] = z
        return {**manifest, "done": done}, _with_summary(store.tables()), examples
