"""The report's tables: every summary of a run's tables, written as CSV (full precision) and
Markdown (rounded, for reading) into one folder."""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from leam._io import write_file, writing
from leam.study import faithfulness_stats, stats
from leam.study.run_tables import scan_of
from leam.study.scan import Scan, TableScan, per_chunk
from leam.study.store import unit_dir_name

MARKDOWN_ROWS = 5000  # larger tables (e.g. per identity over all of LFW) are written as CSV only
PLAIN_NAME = re.compile(r"[a-z0-9_]{1,100}")  # a table name kept as its file name


PAIR_KEYS = ["model", "layer", "threshold"]
OCCLUSION_KEYS = ["model", "layer", "percent"]
TRANSFER_KEYS = ["source_model", "target_model", "percent"]
REGION_KEYS = ["model", "layer", "class", "measure", "threshold"]


@dataclass(frozen=True)
class Spilled:
    """A summary too large to hold in memory (one row per identity and region measure): a Parquet file."""

    path: Path
    rows: int

    def __len__(self) -> int:
        return self.rows


def summarise_study(tables: Mapping[str, pd.DataFrame], spill: Path) -> dict[str, pd.DataFrame | Spilled]:
    """{name: summary} of a run's consolidated tables (``RunStore.tables()``, or frames by name); a table the
    run lacks (e.g. transfer with one model) gives no summary.

    Large tables are read out of core a chunk of whole groups at a time (``leam.study.scan``), so memory
    is bounded by the groups, not by the rows; the numbers are those of the ``leam.study.stats`` functions
    on whole frames. The per-identity region summary is written to ``spill`` (a folder) as Parquet."""
    scans = {name: scan_of(tables, name) for name in tables}

    def has(name: str) -> bool:
        return name in scans and not scans[name].empty

    def frame(name: str) -> pd.DataFrame:
        return scans[name].frame() if name in scans else pd.DataFrame()

    images = frame("images")
    out: dict[str, pd.DataFrame | Spilled] = {"identities": identity_counts(images, frame("failures"))}
    out.update(glance_summaries(scans))
    if has("transfer"):
        baselines = None
        if has("occlusion"):
            occ = scans["occlusion"]
            where = {"layer": "aggregate"} if "layer" in occ.columns else {}
            baselines = per_chunk(occ, stats.BASELINE_KEYS, stats.random_baselines,
                                  where={**where, "kind": ["random", "random_face"]})
        out["transfer"] = per_chunk(scans["transfer"], TRANSFER_KEYS,
                                    lambda t: stats.transfer_summary(t, baselines))
    if has("regions"):
        regions = scans["regions"]
        out["regions"] = per_chunk(regions, REGION_KEYS, stats.region_summary, columns=[*REGION_KEYS, "value"])
        per_identity = spill_chunks(spill / "regions_identity.parquet", (
            stats.identity_variability(chunk)
            for chunk in regions.chunks(["model", "identity"], [*REGION_KEYS, "identity", "value"], outer=["model"])))
        out["regions_identity"] = per_identity
        out["regions_variability"] = per_chunk(TableScan(per_identity.path), REGION_KEYS, stats.variability_summary)
    if has("faithfulness"):
        out.update(faithfulness_stats.summarise(scans["faithfulness"], frame("specificity")))
    out["failures"] = stats.failure_counts(frame("failures"))
    for name in stats.attribute_names(images):
        for statistic, split in stats.group_splits({**scans, "images": images}, name).items():
            out[f"groups_{name}_{statistic.replace(' ', '_')}"] = split
    return out


def glance_summaries(scans: Mapping[str, Scan]) -> dict[str, pd.DataFrame]:
    """The summaries the report's "At a glance" table reads, when the run has them: map similarity of pairs
    ("similarity") and occlusion drops ("occlusion")."""
    out = {}
    if "pairs" in scans and not scans["pairs"].empty:
        out["similarity"] = per_chunk(scans["pairs"], PAIR_KEYS, stats.similarity_summary)
    if "occlusion" in scans and not scans["occlusion"].empty:
        out["occlusion"] = per_chunk(scans["occlusion"], OCCLUSION_KEYS, stats.occlusion_summary)
    return out


def spill_chunks(path: Path, frames: Iterable[pd.DataFrame]) -> Spilled:
    """Write ``frames`` one after another into the Parquet file ``path`` (holding one at a time)."""
    writer, rows = None, 0
    try:
        for df in frames:
            table = pa.Table.from_pandas(df, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table.cast(writer.schema))
            rows += len(df)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        stats.identity_variability(pd.DataFrame(columns=["model"])).to_parquet(path, index=False)
    return Spilled(path, rows)


def identity_counts(images: pd.DataFrame, failures: pd.DataFrame) -> pd.DataFrame:
    """Per identity and model: photos explained, reference photos, failures."""
    columns = ["identity", "model", "explained", "references", "failures"]
    if images.empty and failures.empty:
        return pd.DataFrame(columns=columns)
    frames = []
    if not images.empty:
        frames.append(images.assign(explained=images["role"].eq("explained").astype(int),
                                    references=images["role"].eq("reference").astype(int), failures=0))
    if not failures.empty:
        frames.append(failures.assign(explained=0, references=0, failures=1))
    t = pd.concat([f[columns] for f in frames], ignore_index=True)
    return t.groupby(["identity", "model"], sort=False).sum().reset_index()


def table_files(name: str, folder: Path) -> tuple[Path, Path]:
    """The CSV and Markdown files of the table ``name`` in ``folder``: a plain name (lowercase ASCII letters,
    digits and ``_``, e.g. ``groups_gender_pairs_bc``) as it is; any other (an attribute named ``<i>g</i>``,
    ``Gender`` beside ``gender``, 250 letters) as ``unit_dir_name`` makes it, a readable part and a hash of the
    name: unique also on a case-insensitive file system, and short."""
    stem = name if PLAIN_NAME.fullmatch(name) else unit_dir_name(name)
    return folder / f"{stem}.csv", folder / f"{stem}.md"


def write_tables(summaries: Mapping[str, pd.DataFrame | Spilled], folder: str | Path) -> dict[str, tuple[Path, Path]]:
    """Write ``<name>.csv`` and ``<name>.md`` for every summary (names made file-system safe; the Markdown
    of a table over ``MARKDOWN_ROWS`` rows only points to the CSV; a ``Spilled`` summary is copied to CSV a
    row group at a time); {name: (csv path, md path)}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, df in summaries.items():
        csv, md = table_files(name, folder)
        if isinstance(df, Spilled):
            _spilled_csv(df, csv)
        else:
            write_file(csv, df.to_csv(index=False).encode())
        if len(df) <= MARKDOWN_ROWS:
            frame = pd.read_parquet(df.path) if isinstance(df, Spilled) else df
            text = markdown_table(frame)
        else:
            text = f"{len(df)} rows: too many to read; see {csv.name}."
        write_file(md, f"# {name}\n\n{text}\n".encode())
        paths[name] = (csv, md)
    return paths


def _spilled_csv(spilled: Spilled, csv: Path) -> None:
    """The CSV ``DataFrame.to_csv`` writes for the whole table, written a row group at a time (through a
    temporary file: never half-written)."""
    source = pq.ParquetFile(spilled.path)
    with writing(csv) as raw:
        f = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        if source.metadata.num_row_groups == 0:
            source.schema_arrow.empty_table().to_pandas().to_csv(f, index=False)
        for i in range(source.metadata.num_row_groups):
            source.read_row_group(i).to_pandas().to_csv(f, index=False, header=i == 0)
        f.detach()  # flushed, and left open for ``writing`` to fsync and rename


def is_p_value(column) -> bool:
    name = str(column)
    return name == "p" or name.startswith("p_") or name.endswith(" p")


def format_value(v, column=None) -> str:
    """A cell as text: NaN/None as "–", integers as such, floats with 4 decimals; p-values (``column``
    "p_…" or "… p") below 0.001 in scientific notation."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if v != 0 and abs(v) < 1e-3 and is_p_value(column):
            return f"{v:.2e}"
        return f"{v:.4f}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)


def markdown_table(df: pd.DataFrame, index: bool = False) -> str:
    """A GitHub-flavoured Markdown table (pipes and line breaks in cells escaped)."""
    if index:
        df = df.reset_index()
    if df.empty:
        return "_(no rows)_"

    def cell(v, column=None) -> str:
        return format_value(v, column).replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(cell(c) for c in df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(v, c) for c, v in zip(df.columns, row)) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])
