"""The report's tables: every summary of a run's tables, written as CSV (full precision) and
Markdown (rounded, for reading) into one folder."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from leam.study import faithfulness_stats, stats

MARKDOWN_ROWS = 5000  # larger tables (e.g. per identity over all of LFW) are written as CSV only


def summarise_study(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """{name: summary} of a run's consolidated tables (``RunStore.tables()``); a table the run lacks
    (e.g. transfer with one model) gives no summary."""

    def table(name: str) -> pd.DataFrame:
        return tables.get(name, pd.DataFrame())

    out: dict[str, pd.DataFrame] = {"identities": identity_counts(table("images"), table("failures"))}
    if not table("pairs").empty:
        out["similarity"] = stats.similarity_summary(table("pairs"))
    if not table("occlusion").empty:
        out["occlusion"] = stats.occlusion_summary(table("occlusion"))
    if not table("transfer").empty:
        out["transfer"] = stats.transfer_summary(table("transfer"), table("occlusion"))
    if not table("regions").empty:
        out["regions"] = stats.region_summary(table("regions"))
        per_identity = stats.identity_variability(table("regions"))
        out["regions_identity"] = per_identity
        out["regions_variability"] = stats.variability_summary(per_identity)
    out.update(faithfulness_stats.summarise(table("faithfulness"), table("specificity")))
    out["failures"] = stats.failure_counts(table("failures"))
    images = table("images")
    for name in stats.attribute_names(images):
        for statistic, split in stats.group_splits(tables, name).items():
            out[f"groups_{name}_{statistic.replace(' ', '_')}"] = split
    return out


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
    """The CSV and Markdown files of the table ``name`` in ``folder`` (its name made file-system safe)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "table"
    return folder / f"{stem}.csv", folder / f"{stem}.md"


def write_tables(summaries: dict[str, pd.DataFrame], folder: str | Path) -> dict[str, tuple[Path, Path]]:
    """Write ``<name>.csv`` and ``<name>.md`` for every summary (names made file-system safe; the Markdown
    of a table over ``MARKDOWN_ROWS`` rows only points to the CSV); {name: (csv path, md path)}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, df in summaries.items():
        csv, md = table_files(name, folder)
        df.to_csv(csv, index=False)
        text = markdown_table(df) if len(df) <= MARKDOWN_ROWS else f"{len(df)} rows: too many to read; see {csv.name}."
        md.write_text(f"# {name}\n\n{text}\n", encoding="utf-8")
        paths[name] = (csv, md)
    return paths


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
