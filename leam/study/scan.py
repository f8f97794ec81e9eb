"""A run's Parquet tables read out of core: whole groups of rows at a time, never a whole table.

The statistics of ``leam report`` group a table by a few keys (model, layer, threshold, ...) and compute
per group; the full-LFW region table alone has tens of millions of rows. ``TableScan.chunks`` streams a
table as pandas frames that each hold whole groups, groups in the order they first appear in the file and
each group's rows in file order — exactly the rows, in exactly the order, that ``DataFrame.groupby(keys,
sort=False)`` hands a function on the whole table. So a per-group statistic applied chunk by chunk gives
the same numbers to the last digit, while memory is bounded by the chunk size (or the largest group), not
by the table.

DuckDB does the ordering: an embedded engine that reads Parquet by column and row group, sorts out of
core (spilling to a temporary folder past its memory limit) and streams the result as Arrow batches.
Columns a statistic does not need are never read.

>>> scan = TableScan(run / "tables" / "regions.parquet")          # doctest: +SKIP
>>> for chunk in scan.chunks(["model", "layer"], ["model", "layer", "value"]):  # doctest: +SKIP
...     print(chunk.groupby(["model", "layer"], sort=False)["value"].mean())
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from leam.errors import LeamError

CHUNK_ROWS = 25_000  # rows per chunk (a single larger group comes whole)
MEMORY_LIMIT = "128MB"  # DuckDB's own memory; past it, sorts spill to a temporary folder
BATCH_ROWS = 65_536
_FIRST = "__leam_first"  # the row number where a row's group first appears
_ROW = "__leam_row"


def _literal(path: Path) -> str:
    return str(path).replace("'", "''")


class TableScan:
    """One Parquet table of a run, read by DuckDB in chunks of whole groups or as filtered frames."""

    def __init__(self, path: str | Path, chunk_rows: int = CHUNK_ROWS, memory_limit: str = MEMORY_LIMIT) -> None:
        self.path = Path(path)
        self.chunk_rows = chunk_rows
        self.memory_limit = memory_limit
        schema = pq.read_schema(self.path)
        self.columns: list[str] = list(schema.names)
        # DuckDB matches names ignoring case (``attr_Group`` and ``attr_group`` would be one column): queries
        # name the file's columns by position (``c0``, ``c1``, ...) and results get the file's names back
        self._sql = {name: f"c{i}" for i, name in enumerate(self.columns)}
        self.rows: int = pq.read_metadata(self.path).num_rows

    def __len__(self) -> int:
        return self.rows

    @property
    def empty(self) -> bool:
        return self.rows == 0

    def _connect(self, spill: str):
        import duckdb

        con = duckdb.connect(config={"memory_limit": self.memory_limit, "threads": 1, "temp_directory": spill,
                                     "preserve_insertion_order": False})  # every query orders its rows
        aliases = ", ".join(self._sql.values())
        con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{_literal(self.path)}', file_row_number = true) "
                    f"AS f({aliases})")
        return con

    def _q(self, column: str) -> str:
        """The SQL name of the file's ``column`` in the view ``t``."""
        return self._sql[self._known(column)]

    def _where(self, where: Mapping[str, object] | None) -> tuple[str, dict]:
        """``{column: value or list of values}`` → a SQL condition and its parameters (values are never
        spliced into the text). A value None matches NULL (and NaN of a float column)."""
        if not where:
            return "TRUE", {}
        parts, params = [], {}
        for i, (column, value) in enumerate(where.items()):
            name = self._q(column)
            if isinstance(value, (list, tuple, set, frozenset)):
                params[f"w{i}"] = list(value)
                parts.append(f"{name} IN (SELECT unnest($w{i}))")
            elif value is None:
                parts.append(f"({name} IS NULL OR isnan(TRY_CAST({name} AS DOUBLE)))")
            else:
                params[f"w{i}"] = value
                parts.append(f"{name} = $w{i}")
        return " AND ".join(parts), params

    def _known(self, column: str) -> str:
        if column not in self.columns:
            raise KeyError(f"{self.path.name} has no column {column!r}; it has {self.columns}")
        return column

    def frame(self, columns: Sequence[str] | None = None, where: Mapping[str, object] | None = None) -> pd.DataFrame:
        """The rows matching ``where`` (all rows without it), ``columns`` only, in file order: for the
        small tables and the small slices of large ones."""
        columns = list(columns or self.columns)
        if self.empty:
            return pq.read_table(self.path, columns=columns).to_pandas()
        condition, params = self._where(where)
        select = ", ".join(self._q(c) for c in columns)
        with tempfile.TemporaryDirectory(prefix="leam-scan-") as spill:
            con = self._connect(spill)
            try:
                table = con.sql(f"SELECT {select} FROM t WHERE {condition} ORDER BY file_row_number",
                                params=params).to_arrow_table()
            except Exception as exc:
                _refuse_write_failure(exc, spill)
                raise
            finally:
                con.close()
        return _pandas(table, self.path, columns)

    def chunks(self, keys: Sequence[str], columns: Sequence[str] | None = None,
               where: Mapping[str, object] | None = None, outer: Sequence[str] = (),
               sort: bool = False) -> Iterator[pd.DataFrame]:
        """Frames of whole ``keys`` groups (``columns`` only; the keys always), groups in order of first
        appearance, rows of a group in file order; each frame holds about ``chunk_rows`` rows (more when one
        group is larger). With ``outer`` (the first keys), groups are ordered by the first appearance of their
        ``outer`` keys first (as ``groupby(outer)`` and then ``groupby(keys)`` within each would meet them);
        with ``sort``, groups are in the order of their keys' values (as ``sort_values(keys)``: text by code
        point, missing values last). Nothing when no row matches."""
        keys = [self._known(k) for k in keys]
        columns = list(dict.fromkeys([*keys, *(self._known(c) for c in (columns or self.columns))]))
        if self.empty or not keys:
            if not self.empty:
                yield self.frame(columns, where)
            return
        condition, params = self._where(where)
        q = self._q
        cols = ", ".join(q(c) for c in columns)
        key_cols = ", ".join(q(k) for k in keys)
        outer = list(outer)
        if keys[:len(outer)] != outer:
            raise ValueError(f"outer keys {outer} are not the first of {keys}")

        def on(name: str, names: list[str]) -> str:
            return " AND ".join(f"r.{q(k)} IS NOT DISTINCT FROM {name}.{q(k)}" for k in names)

        sql = (f"WITH r AS (SELECT {cols}, file_row_number AS {_ROW} FROM t WHERE {condition}), "
               f"g AS (SELECT {key_cols}, min({_ROW}) AS {_FIRST} FROM r GROUP BY ALL)")
        order, join = f"g.{_FIRST}, r.{_ROW}", f"JOIN g ON {on('g', keys)}"
        if sort:  # ties (NaN and NULL alike) keep file order, as a stable sort does
            order = ", ".join([*(f"r.{q(k)} ASC NULLS LAST" for k in keys), f"r.{_ROW}"])
        elif outer:
            sql += (f", o AS (SELECT {', '.join(q(k) for k in outer)}, min({_ROW}) AS {_FIRST}_o "
                    "FROM r GROUP BY ALL)")
            order, join = f"o.{_FIRST}_o, {order}", f"{join} JOIN o ON {on('o', outer)}"
        sql += (f" SELECT {', '.join(f'r.{q(c)}' for c in columns)}, g.{_FIRST} FROM r {join} "
                f"ORDER BY {order}")
        with tempfile.TemporaryDirectory(prefix="leam-scan-") as spill:
            # The ordered rows go to a Parquet file first: DuckDB sorts within its memory limit (spilling to
            # the folder), where streaming its result to Python would hold much of it in memory.
            ordered = Path(spill) / "ordered.parquet"
            con = self._connect(spill)
            try:
                con.execute(f"COPY ({sql}) TO '{_literal(ordered)}' (FORMAT parquet, ROW_GROUP_SIZE {BATCH_ROWS})",
                            params)
            except Exception as exc:
                _refuse_write_failure(exc, spill)
                raise
            finally:
                con.close()
            batches = pq.ParquetFile(ordered).iter_batches(min(BATCH_ROWS, self.chunk_rows))
            yield from _whole_groups(batches, self.chunk_rows, lambda t: _pandas(t, self.path, columns))


def _refuse_write_failure(exc: Exception, spill: str) -> None:
    """Raise DuckDB's failure to write its temporary files (disk full, a file-size limit) as one ``LeamError``
    line; return for any other error."""
    import duckdb

    if isinstance(exc, duckdb.IOException):
        said = re.search(r'"exception_message":"((?:[^"\\]|\\.)*)"', str(exc))
        why = said.group(1).replace('\\"', '"') if said else str(exc).splitlines()[0]
        raise LeamError(f"cannot write temporary files in {Path(spill).parent} ({why}); make room there (or set "
                        "TMPDIR to a folder with room) and run the command again") from None


def _whole_groups(reader: Iterable[pa.RecordBatch], rows: int, convert: Callable[[pa.Table], pd.DataFrame]
                  ) -> Iterator[pd.DataFrame]:
    """Cut a stream of batches ordered by ``_FIRST`` into tables of about ``rows`` rows that end at a
    group's end."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in reader:
        if not batch.num_rows:
            continue
        pending.append(batch)
        held += batch.num_rows
        if held < rows:
            continue
        table = pa.Table.from_batches(pending)
        first = table.column(_FIRST)
        last = first[-1].as_py()
        cut = int(pc.index(first, last).as_py())  # the open group's first row: groups are contiguous
        if cut == 0:  # one group so far: keep reading
            continue
        yield convert(table.slice(0, cut).drop_columns([_FIRST]))
        rest = table.slice(cut)
        pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield convert(pa.Table.from_batches(pending).drop_columns([_FIRST]))


def _pandas(table: pa.Table, path: Path, names: Sequence[str]) -> pd.DataFrame:
    """An Arrow table from DuckDB as ``pandas.read_parquet`` gives the file's columns ``names`` (DuckDB's
    Arrow strings are large strings; the file's own names and types are restored)."""
    table = table.rename_columns(list(names))
    schema = pq.read_schema(path)
    fields = [schema.field(name) for name in table.column_names]
    return table.cast(pa.schema(fields)).to_pandas()


class FrameScan:
    """A table already in memory behind ``TableScan``'s interface (small runs, tests, protect-eval)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame
        self.columns: list[str] = list(frame.columns)
        self.rows = len(frame)

    def __len__(self) -> int:
        return self.rows

    @property
    def empty(self) -> bool:
        return self.rows == 0

    def _select(self, columns: Sequence[str] | None, where: Mapping[str, object] | None) -> pd.DataFrame:
        df = self._frame
        for column, value in (where or {}).items():
            if isinstance(value, (list, tuple, set, frozenset)):
                df = df[df[column].isin(list(value))]
            elif value is None:
                df = df[df[column].isna()]
            else:
                df = df[df[column] == value]
        return df[list(columns or self.columns)].reset_index(drop=True)

    def frame(self, columns: Sequence[str] | None = None, where: Mapping[str, object] | None = None) -> pd.DataFrame:
        return self._select(columns, where)

    def chunks(self, keys: Sequence[str], columns: Sequence[str] | None = None,
               where: Mapping[str, object] | None = None, outer: Sequence[str] = (),
               sort: bool = False) -> Iterator[pd.DataFrame]:
        df = self._select(list(dict.fromkeys([*keys, *(columns or self.columns)])), where)
        if len(df):
            yield df


Scan = TableScan | FrameScan


def as_scan(table: pd.DataFrame | Scan) -> Scan:
    """A frame as a ``FrameScan``; a scan as it is."""
    return FrameScan(table) if isinstance(table, pd.DataFrame) else table


def empty_frame(scan: Scan, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """No rows, the table's columns (``columns`` only) with their types."""
    if isinstance(scan, FrameScan):
        return scan.frame(columns).iloc[0:0]
    schema = pq.read_schema(scan.path)
    names = list(columns or scan.columns)
    return pa.schema([schema.field(n) for n in names]).empty_table().to_pandas()


def per_chunk(scan: Scan, keys: Sequence[str], statistic: Callable[[pd.DataFrame], pd.DataFrame],
              columns: Sequence[str] | None = None, where: Mapping[str, object] | None = None,
              outer: Sequence[str] = (), sort: bool = False) -> pd.DataFrame:
    """``statistic`` (a function of a frame that groups by ``keys`` or finer) applied chunk by chunk and
    the results concatenated: the same frame as ``statistic`` on the whole table, at a chunk's memory."""
    parts = [statistic(chunk) for chunk in scan.chunks(keys, columns, where, outer, sort)]
    if not parts:
        return statistic(empty_frame(scan, list(dict.fromkeys([*keys, *(columns or scan.columns)]))))
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
