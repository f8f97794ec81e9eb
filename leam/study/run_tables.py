"""A run's consolidated tables as readers see them (``RunTables``), and how consolidation writes them
(``concatenate_parquet``): Parquet files read lazily or out of core, written a few units at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from leam._io import parquet_bytes
from leam.errors import LeamError
from leam.study.scan import Scan, TableScan, as_scan


class RunTables(Mapping):
    """A run's consolidated tables by name, read lazily: ``tables[name]`` reads the whole table as a frame
    (each time: nothing is cached), ``scan(name)`` reads it out of core (``leam.study.scan``), ``rows(name)``
    counts its rows from the file's footer. Checked against ``checksums.json`` when the store made it."""

    def __init__(self, paths: dict[str, Path], rebuild: str) -> None:
        self.paths = paths
        self._rebuild = rebuild

    def __getitem__(self, name: str) -> pd.DataFrame:
        path = self.paths[name]
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise LeamError(f"{path} is damaged ({one_line(exc)}); {self._rebuild}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.paths  # not Mapping's: that reads the whole table to find out

    def __iter__(self) -> Iterator[str]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def scan(self, name: str) -> TableScan:
        """The table ``name`` out of core; ``KeyError`` when the run has no such table."""
        path = self.paths[name]
        try:
            return TableScan(path)
        except (OSError, ValueError) as exc:
            raise LeamError(f"{path} is damaged ({one_line(exc)}); {self._rebuild}") from None

    def rows(self, name: str) -> int:
        """How many rows the table has (0 when the run has no such table)."""
        return len(self.scan(name)) if name in self.paths else 0


def scan_of(tables: Mapping[str, pd.DataFrame], name: str) -> Scan:
    """The table ``name`` out of core when ``tables`` is a run's ``RunTables``; a frame by that name (tests,
    small runs in memory) behind the same interface."""
    return tables.scan(name) if isinstance(tables, RunTables) else as_scan(tables[name])


def concatenate_parquet(parts: list[Path], out: Path, unreadable: Callable[[Path, BaseException], Exception],
                        row_group_rows: int = 262_144) -> None:
    """The rows of the Parquet files ``parts``, in order, into one Parquet file ``out``, holding about
    ``row_group_rows`` rows at a time. Columns are unified as ``pandas.concat`` would (a column all empty in
    one part takes the others' type; a column missing from a part is empty there); parts without rows add
    nothing; no parts, or none with rows, give an empty table. A part that cannot be read raises
    ``unreadable(path, exception)``."""
    schemas = []
    for p in parts:
        try:
            if pq.read_metadata(p).num_rows:
                schemas.append(pq.read_schema(p))
        except (OSError, ValueError) as exc:
            raise unreadable(p, exc) from None
    if not schemas:
        parquet = parquet_bytes(pd.DataFrame())
        out.write_bytes(parquet)
        return
    schema = pa.unify_schemas([s.remove_metadata() for s in schemas], promote_options="permissive")
    pending: list[pa.Table] = []
    held = 0
    with pq.ParquetWriter(out, schema) as writer:
        for p in parts:
            try:
                table = pq.read_table(p)
            except (OSError, ValueError) as exc:
                raise unreadable(p, exc) from None
            if not table.num_rows:
                continue
            for field in schema:  # a column missing from this part: empty here
                if field.name not in table.column_names:
                    table = table.append_column(field, pa.nulls(table.num_rows, field.type))
            pending.append(table.select(schema.names).cast(schema))
            held += table.num_rows
            if held >= row_group_rows:
                writer.write_table(pa.concat_tables(pending), row_group_size=held)
                pending, held = [], 0
        if pending:
            writer.write_table(pa.concat_tables(pending), row_group_size=held)


def one_line(exc: BaseException) -> str:
    """An exception as one line: its type and message (libraries' messages may span lines)."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"
