"""Out-of-core reading (``leam.study.scan``), streamed consolidation and the report's summaries computed
chunk by chunk: each against the plain pandas computation on the whole table, on real runs and on
adversarial tables (missing keys, hostile text, groups larger than a chunk, empty tables)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leam._io import parquet_bytes
from leam.errors import LeamError
from leam.report.tables import Spilled, summarise_study
from leam.study import faithfulness_stats, stats
from leam.study.run_tables import concatenate_parquet
from leam.study.scan import FrameScan, TableScan, per_chunk
from leam.study.store import RunStore

EVIL = ["Zoë", "O'Brien", 'a "quoted" name', "東京", "x); DROP TABLE t; --", ""]


def adversarial(rng: np.random.Generator, rows: int = 3000) -> pd.DataFrame:
    """Keys with missing values (None text, NaN floats), hostile text, unequal group sizes, shuffled rows."""
    return pd.DataFrame({
        "model": rng.choice(["m2", "m1", None], rows, p=[0.6, 0.3, 0.1]),
        "name": rng.choice(EVIL, rows),
        "threshold": rng.choice([1.0, 5.0, np.nan], rows),
        "value": rng.normal(size=rows),
        "flag": rng.random(rows) < 0.5,
    })


def reference_groups(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Every group's rows, groups in order of first appearance, rows in file order: what groupby hands out."""
    return pd.concat([g for _, g in df.groupby(keys, sort=False, dropna=False)], ignore_index=True)


@pytest.fixture
def table(tmp_path: Path) -> tuple[pd.DataFrame, Path]:
    df = adversarial(np.random.default_rng(0))
    path = tmp_path / "t.parquet"
    df.to_parquet(path, index=False)
    return pd.read_parquet(path), path


@pytest.mark.parametrize("keys", [["model"], ["model", "name", "threshold"], ["threshold", "flag"]])
@pytest.mark.parametrize("chunk_rows", [1, 97, 100_000])
def test_chunks_hold_whole_groups_in_groupby_order(table, keys, chunk_rows) -> None:
    df, path = table
    chunks = list(TableScan(path, chunk_rows=chunk_rows).chunks(keys))
    got = pd.concat(chunks, ignore_index=True)
    pd.testing.assert_frame_equal(got, reference_groups(df, keys)[list(got.columns)], check_exact=True)
    seen: set = set()
    for chunk in chunks:  # no group is split across chunks; a chunk is small unless one group is larger
        groups = {tuple(str(v) for v in row) for row in chunk[keys].itertuples(index=False)}
        assert not groups & seen
        seen |= groups
        assert len(chunk) <= max(chunk_rows, chunk.groupby(keys, dropna=False).size().max()) + 4096


def test_chunks_outer_order_sort_order_filters_and_columns(table) -> None:
    df, path = table
    scan = TableScan(path, chunk_rows=50)
    got = pd.concat(scan.chunks(["model", "name"], ["value"], outer=["model"]), ignore_index=True)
    want = pd.concat([reference_groups(g, ["model", "name"]) for _, g in df.groupby("model", sort=False, dropna=False)],
                     ignore_index=True)
    pd.testing.assert_frame_equal(got, want[["model", "name", "value"]], check_exact=True)
    got = pd.concat(scan.chunks(["model", "threshold"], sort=True), ignore_index=True)
    want = df.sort_values(["model", "threshold"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want[list(got.columns)])
    evil = scan.frame(["name", "value"], where={"name": ["O'Brien", "x); DROP TABLE t; --"], "threshold": 5.0})
    want = df[df["name"].isin(["O'Brien", "x); DROP TABLE t; --"]) & (df["threshold"] == 5.0)][["name", "value"]]
    pd.testing.assert_frame_equal(evil, want.reset_index(drop=True))
    missing = scan.frame(["model"], where={"threshold": None})
    assert len(missing) == df["threshold"].isna().sum()
    with pytest.raises(KeyError, match="no column"):
        list(scan.chunks(["nope"]))


def test_empty_table_gives_no_chunks_and_statistics_of_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "e.parquet"
    pd.DataFrame({"model": pd.Series([], dtype=str), "layer": pd.Series([], dtype=str),
                  "threshold": pd.Series([], dtype=float), "kind": pd.Series([], dtype=str),
                  "bc": pd.Series([], dtype=float)}).to_parquet(path, index=False)
    scan = TableScan(path)
    assert scan.empty and list(scan.chunks(["model"])) == []
    got = per_chunk(scan, ["model", "layer", "threshold"], stats.similarity_summary)
    assert got.empty and list(got.columns) == list(stats.similarity_summary(pd.DataFrame()).columns)


def test_per_chunk_statistics_equal_the_whole_table(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    rows = 5000
    pairs = pd.DataFrame({"model": rng.choice(["b", "a"], rows), "layer": rng.choice(["l1", "aggregate"], rows),
                          "threshold": rng.choice([np.nan, 1.0], rows), "kind": rng.choice(["same", "different"], rows),
                          "bc": rng.random(rows), "emd": rng.random(rows) * 3})
    path = tmp_path / "pairs.parquet"
    pairs.to_parquet(path, index=False)
    keys = ["model", "layer", "threshold"]
    got = per_chunk(TableScan(path, chunk_rows=300), keys, stats.similarity_summary)
    pd.testing.assert_frame_equal(got, stats.similarity_summary(pairs), check_exact=True)
    via_frame = per_chunk(FrameScan(pairs), keys, stats.similarity_summary)
    pd.testing.assert_frame_equal(via_frame, stats.similarity_summary(pairs), check_exact=True)


def test_streamed_consolidation_equals_pandas_concat(tmp_path: Path) -> None:
    """Parts whose columns differ in type where one part has no values, a part without a column, a part
    without rows: the consolidated file reads as ``pd.concat`` of the parts."""
    frames = [
        pd.DataFrame({"identity": ["a", "b"], "attr_gender": [None, None], "value": [1, 2]}),
        pd.DataFrame({"identity": ["c"], "attr_gender": ["F"], "value": [3]}),
        pd.DataFrame({"identity": pd.Series([], dtype=str), "attr_gender": pd.Series([], dtype=str),
                      "value": pd.Series([], dtype="int64")}),
        pd.DataFrame({"identity": ["Zoë"], "value": [4.5]}),
    ]
    parts = []
    for i, f in enumerate(frames):
        parts.append(tmp_path / f"{i}.parquet")
        f.to_parquet(parts[-1], index=False)
    out = tmp_path / "all.parquet"
    concatenate_parquet(parts, out, lambda path, exc: AssertionError(path), row_group_rows=2)
    # what consolidation wrote before it streamed: the concatenated frame as Parquet
    want = pd.read_parquet(io.BytesIO(parquet_bytes(pd.concat([f for f in frames if len(f)], ignore_index=True))))
    got = pd.read_parquet(out)
    pd.testing.assert_frame_equal(got, want)
    assert got["value"].dtype == np.float64 and got["attr_gender"].isna().sum() == 3
    concatenate_parquet([parts[2]], out, lambda path, exc: AssertionError(path))
    assert pd.read_parquet(out).empty


def _frames(tables) -> dict[str, pd.DataFrame]:
    return {name: tables[name] for name in tables}


def assert_same_summaries(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for name in want:
        a = pd.read_parquet(got[name].path) if isinstance(got[name], Spilled) else got[name]
        b = pd.read_parquet(want[name].path) if isinstance(want[name], Spilled) else want[name]
        # pandas' grouped means (faithfulness curves) differ in the last bit with the frame's layout
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_exact=False,
                                      rtol=1e-12, atol=1e-15, obj=name)


def test_summaries_out_of_core_equal_the_whole_frames(small_run: Path, tmp_path: Path) -> None:
    """The report's summaries of a real run, read out of core with tiny chunks, equal those of the whole
    tables by the plain ``stats`` functions."""
    tables = RunStore(small_run).tables()
    whole = _frames(tables)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    import leam.study.scan as scan_module

    original = scan_module.CHUNK_ROWS
    scan_module.CHUNK_ROWS = 7
    try:
        got = summarise_study(tables, tmp_path / "a")
    finally:
        scan_module.CHUNK_ROWS = original
    want = summarise_study(whole, tmp_path / "b")
    assert_same_summaries(got, want)
    # and the frames path is the plain statistics on whole tables
    pd.testing.assert_frame_equal(want["similarity"], stats.similarity_summary(whole["pairs"]))
    pd.testing.assert_frame_equal(want["occlusion"], stats.occlusion_summary(whole["occlusion"]))
    pd.testing.assert_frame_equal(want["transfer"], stats.transfer_summary(
        whole["transfer"], stats.random_baselines(whole["occlusion"])))
    pd.testing.assert_frame_equal(want["regions"], stats.region_summary(whole["regions"]))
    pd.testing.assert_frame_equal(pd.read_parquet(want["regions_identity"].path),
                                  stats.identity_variability(whole["regions"]), check_dtype=False)
    assert any(name.startswith("groups_gender_") for name in got)


def test_faithfulness_summaries_chunked_equal_whole(tmp_path: Path) -> None:
    """A synthetic faithfulness table (two models, photos, rankings, fills, curves) summarised a few photos at
    a time equals the summaries of the whole frame."""
    rng = np.random.default_rng(8)
    rows = []
    fractions = (0.0, 0.01, 0.05, 0.2, 0.5)
    for model in ("zeta", "alpha"):  # not in alphabetical order: per_photo sorts, curves keep first appearance
        for person in ("Zoë", "Bob", "Ann"):
            for k in range(2):
                for method, map_name, objective in (("default", "mean", "loss"), ("leam", "mean", "loss"),
                                                    ("random", "", ""), ("population_prior", "", ""),
                                                    ("other_person", "mean", "loss"), ("consensus", "mean", "loss")):
                    for fill in ("black", "blur"):
                        for direction in ("deletion", "insertion"):
                            cos = np.sort(rng.random(len(fractions)))[::-1]
                            for f, c in zip(fractions, cos):
                                rows.append({"model": model, "identity": person, "image": f"{person}/{k}.jpg",
                                             "method": method, "map": map_name, "objective": objective,
                                             "fill": fill, "direction": direction, "fraction": f, "cosine": c,
                                             "match": bool(c > 0.4)})
    table = pd.DataFrame(rows).sample(frac=1.0, random_state=1).reset_index(drop=True)
    path = tmp_path / "faithfulness.parquet"
    table.to_parquet(path, index=False)
    got = faithfulness_stats.summarise(TableScan(path, chunk_rows=100), None)
    want = faithfulness_stats.summarise(table, None)
    assert_same_summaries(got, want)
    whole_photos = faithfulness_stats.per_photo(table)
    pd.testing.assert_frame_equal(got["faithfulness_photos"], whole_photos)
    assert math.isfinite(got["faithfulness_rankings"]["auc"].iloc[0])


def test_asking_whether_a_run_has_a_table_reads_none(tmp_path: Path) -> None:
    """``name in tables`` looks at the run's files only: a damaged table is found there, and only reading it
    fails (Mapping's own ``in`` read the whole table: 4 GB for LFW's regions)."""
    from leam.study.run_tables import RunTables

    good, bad = tmp_path / "good.parquet", tmp_path / "bad.parquet"
    pd.DataFrame({"a": [1, 2]}).to_parquet(good)
    bad.write_bytes(b"not parquet")
    tables = RunTables({"good": good, "bad": bad}, "run `leam study` again")
    assert "bad" in tables and "good" in tables and "missing" not in tables
    assert set(tables) == {"good", "bad"} and len(tables) == 2
    with pytest.raises(LeamError, match="damaged"):
        tables["bad"]
    assert tables.get("missing") is None and list(tables["good"]["a"]) == [1, 2]
