"""``leam protect-eval`` on the study's ``RunStore``: interrupted after a unit and resumed, it gives the
tables of an uninterrupted run; a damaged part or a changed photo has its unit (and only it) redone."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from leam.protect.core import ProtectConfig
from leam.protect.runs import ProtectStore, read_run, unit_name
from leam.protect.study import EvalConfig, run_protect_eval

pytest.importorskip("pyarrow")


@pytest.fixture(scope="module")
def data(demo_person, tmp_path_factory) -> Path:
    """Two people with three photos each (links to lfw-demo) and one with a single photo (a failure unit)."""
    root = tmp_path_factory.mktemp("protect-data")
    people = sorted(p for p in demo_person[0].parent.parent.iterdir() if p.is_dir())
    for person, photos in (("a", demo_person[:3]), ("b", sorted(people[1].glob("*.jpg"))[:3]),
                           ("solo", demo_person[3:4])):
        (root / person).mkdir()
        for p in photos:
            (root / person / p.name).symlink_to(p)
    return root


@pytest.fixture(scope="module")
def config(data) -> EvalConfig:
    return EvalConfig(data=str(data), models=("facenet",), budgets=(1.0,), methods=("leam", "black"),
                      protect=ProtectConfig(steps=1))


@pytest.fixture(scope="module")
def uninterrupted(config, facenet_model, tmp_path_factory) -> dict[str, pd.DataFrame]:
    return run_protect_eval(config, tmp_path_factory.mktemp("full") / "run")


class Interrupt(Exception):
    pass


def _stop_after_one_unit(done: int, total: int) -> None:
    if done == 1:
        raise Interrupt


def _same(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame]) -> None:
    assert set(got) == set(want) == {"results", "failures", "summary"}
    for name in want:  # a unit's time differs from run to run; nothing else may
        pd.testing.assert_frame_equal(got[name].drop(columns=["seconds"], errors="ignore"),
                                      want[name].drop(columns=["seconds"], errors="ignore"))


def _markers(run: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in (run / "parts").glob("*/done.json")}


def test_interrupted_after_a_unit_and_resumed_gives_the_same_tables(config, uninterrupted, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(Interrupt):
        run_protect_eval(config, run, progress=_stop_after_one_unit)
    store = ProtectStore(run)
    assert [store.is_done(unit_name(n)) for n in ("a", "b", "solo")] == [True, False, False]
    assert not (run / "tables").exists()
    first = _markers(run)
    calls = []
    tables = run_protect_eval(config, run, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]  # the done unit is counted, not redone
    assert _markers(run)[unit_name("a")] == first[unit_name("a")]
    _same(tables, uninterrupted)
    manifest, read, examples = read_run(run)  # what the report reads: the same, checked against checksums
    assert manifest["kind"] == "protect-eval" and manifest["done"] == ["a", "b", "solo"]
    _same(read, uninterrupted)
    assert set(examples) == {"a", "b"}


def test_a_damaged_part_or_a_changed_photo_has_its_unit_redone(config, uninterrupted, tmp_path, demo_person):
    run = tmp_path / "run"
    run_protect_eval(config, run)
    before = _markers(run)
    part = run / "parts" / unit_name("b") / "results.parquet"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: same size, another SHA-256
    part.write_bytes(bytes(data))
    (Path(config.data) / "solo" / demo_person[3].name).unlink()
    (Path(config.data) / "solo" / demo_person[3].name).symlink_to(demo_person[4])  # same name, other photo
    try:
        tables = run_protect_eval(config, run)
    finally:
        (Path(config.data) / "solo" / demo_person[3].name).unlink()
        (Path(config.data) / "solo" / demo_person[3].name).symlink_to(demo_person[3])
    after = _markers(run)
    assert [after[unit_name(n)] == before[unit_name(n)] for n in ("a", "b", "solo")] == [True, False, False]
    _same(tables, uninterrupted)


def test_a_study_run_in_out_is_refused_in_one_line_before_anything_is_written(data, tmp_path, capsys):
    from leam.cli.main import main

    out = tmp_path / "study-run"
    out.mkdir()
    (out / "run.json").write_text('{"config": {"data": "x"}, "leam_version": "0"}')
    assert main(["protect-eval", str(data), "--models", "facenet", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err == f"leam: error: {out} holds a `leam study` run, not a protect-eval run; use another --out folder\n"
    assert sorted(p.name for p in out.iterdir()) == ["run.json"]  # not even a lock file
