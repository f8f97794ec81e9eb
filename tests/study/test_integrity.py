"""Damaged files of the same size: bytes flipped in a unit's part, its done marker, a table, the tables'
checksums or run.json. Each is redone or rebuilt by the next `leam study` (ending with the tables of the
undamaged run, value for value), or refused in one line naming the file; `leam report` never shows a
number read from a damaged file. Runs written before leam kept checksums are still read."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from leam.cli.main import main
from leam.errors import LeamError
from leam.study.run import DATA_UNIT, run_study, unit_name
from leam.study.store import BACKUP, CHECKSUMS, TABLES, RunStore
from leam.study.units import Unit
from tests.study.conftest import quick_config

pytestmark = pytest.mark.reliability
POSITIONS = (0.0, 0.02, 0.3, 0.5, 0.7, 0.98, 1.0)  # where 8 bytes are flipped, as a fraction of the file


@pytest.fixture(scope="module")
def base(three_people, tmp_path_factory) -> tuple[Path, dict[str, pd.DataFrame]]:
    """An undamaged run of three people (one model) and its tables."""
    out = tmp_path_factory.mktemp("base") / "run"
    return out, run_study(quick_config(three_people), out)


@pytest.fixture
def run(base, tmp_path) -> Path:
    """A copy of the undamaged run, to damage."""
    out = tmp_path / "run"
    shutil.copytree(base[0], out, symlinks=True)
    return out


def flip(path: Path, at: float, count: int = 8) -> None:
    """Invert ``count`` bytes from the fraction ``at`` of the file on: its size stays."""
    data = bytearray(path.read_bytes())
    start = min(int(len(data) * at), len(data) - count)
    data[start : start + count] = bytes(b ^ 0xFF for b in data[start : start + count])
    path.write_bytes(bytes(data))


def change_digit(path: Path, which: int = -1) -> None:
    """Change one digit of a JSON file (the last, by default): still valid JSON, of the same size."""
    text = path.read_text()
    spot = [m.start() for m in re.finditer(r"\d", text)][which]
    path.write_text(text[:spot] + str((int(text[spot]) + 1) % 10) + text[spot + 1 :])


def identity_unit(data: Path, k: int = 0) -> str:
    return unit_name(Unit("identity", "dlib-resnet", sorted(p.name for p in data.iterdir())[k]))


def digests(out: Path) -> dict[str, str | None]:
    store = RunStore(out)
    return {d.name: store.marker_digest(d.name) for d in (out / "parts").iterdir()}


def leam(argv: list[str]) -> tuple[int, str]:
    """``leam ARGV`` in this process: exit status and what it wrote to stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        return main([str(a) for a in argv]), err.getvalue()


def assert_same_tables(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame]) -> None:
    for name in TABLES:
        pd.testing.assert_frame_equal(got[name], want[name], check_exact=True, obj=name)


QUICK_CLI = ["--models", "dlib-resnet", "--face", "largest", "--pairs", "6", "--occlusion-seeds", "2",
             "--occlusion-percents", "1", "5", "--thresholds", "1", "10", "100", "--workers", "1"]  # quick_config


def resume_redoes(three_people: Path, out: Path, base_tables, damaged: str) -> None:
    """The next run — ``leam study`` with the same options in a new process, as a user resumes — redoes the
    ``damaged`` unit and what read it (the pairs), nothing else, and ends with the undamaged run's tables."""
    before = digests(out)
    proc = subprocess.run([sys.executable, "-m", "leam.cli.main", "study", str(three_people), *QUICK_CLI,
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert_same_tables(RunStore(out).tables(), base_tables)
    after = digests(out)
    redone = {u for u in after if after[u] != before[u]}
    assert redone == {damaged, unit_name(Unit("pairs", "dlib-resnet"))}
    assert RunStore(out).read_manifest()["sessions"][-1]["units_pending"] == 2


@pytest.mark.parametrize("name", ["regions.parquet", "images.parquet", "maps.npz"])
def test_a_damaged_part_is_redone(three_people, base, run, name) -> None:
    store, unit = RunStore(run), identity_unit(three_people)
    path = store.unit_dir(unit) / name
    for at in POSITIONS:
        shutil.copyfile(base[0] / "parts" / unit / name, path)
        flip(path, at)
        assert not RunStore(run).is_done(unit), at
        with pytest.raises(LeamError, match=re.escape(f"{path} is damaged")):
            if name == "maps.npz":
                RunStore(run).unit_arrays(unit)
            else:
                RunStore(run).unit_table(unit, name.removesuffix(".parquet"))
    resume_redoes(three_people, run, base[1], unit)


def test_a_damaged_maps_file_is_named_by_the_report(three_people, run) -> None:
    path = RunStore(run).unit_dir(identity_unit(three_people)) / "maps.npz"
    flip(path, 0.5)
    rc, err = leam(["report", run, "--out", run.parent / "report" / "report.html"])
    assert rc == 1 and err.count("\n") == 1, err
    assert err.startswith(f"leam: error: {path} is damaged") and "run `leam study`" in err


@pytest.mark.parametrize("damage", ["flip", "digit"])
def test_a_damaged_done_marker_is_redone(three_people, base, run, damage) -> None:
    unit = identity_unit(three_people, 1)
    marker = RunStore(run).unit_dir(unit) / "done.json"
    flip(marker, 0.5) if damage == "flip" else change_digit(marker)  # a digit: still JSON, e.g. its time
    assert not RunStore(run).is_done(unit)
    rc, err = leam(["report", run, "--out", run.parent / "report" / "report.html"])
    assert rc == 1 and err.startswith(f"leam: error: {marker} is damaged") and err.count("\n") == 1, err
    resume_redoes(three_people, run, base[1], unit)


def test_a_damaged_table_is_refused_then_rebuilt(three_people, base, run) -> None:
    table = run / "tables" / "occlusion.parquet"
    for at in POSITIONS:
        shutil.copyfile(base[0] / "tables" / table.name, table)
        flip(table, at)
        with pytest.raises(LeamError, match=re.escape(f"{table} is damaged")):
            RunStore(run).tables()
    rc, err = leam(["report", run, "--out", run.parent / "report" / "report.html"])
    assert rc == 1 and err.count("\n") == 1, err
    assert err.startswith(f"leam: error: {table} is damaged") and "run `leam study` with the run's options" in err
    assert not (run.parent / "report" / "report.html").exists()
    before = digests(run)
    assert_same_tables(run_study(quick_config(three_people), run), base[1])
    assert digests(run) == before  # no unit redone: the tables are rebuilt from the parts
    assert leam(["report", run, "--out", run.parent / "report" / "report.html"])[0] == 0


def test_damaged_checksums_of_the_tables(three_people, base, run) -> None:
    listing = run / "tables" / CHECKSUMS
    change_digit(listing, 3)
    with pytest.raises(LeamError, match=re.escape(f"{listing} is damaged")):
        RunStore(run).tables()
    assert_same_tables(run_study(quick_config(three_people), run), base[1])


@pytest.mark.parametrize("damage", ["flip", "digit"])
def test_a_damaged_run_json_is_read_from_its_copy(three_people, base, run, damage) -> None:
    manifest = run / "run.json"
    whole = RunStore(run).read_manifest()
    flip(manifest, 0.3) if damage == "flip" else change_digit(manifest, 0)  # the digit: of a setting
    assert RunStore(run).read_manifest() == whole
    assert_same_tables(run_study(quick_config(three_people), run), base[1])
    assert json.loads(manifest.read_text())["sessions"][-1]["finished"]  # written whole again


def test_run_json_and_its_copy_damaged_are_refused(three_people, run) -> None:
    for path in (run / "run.json", run / BACKUP):
        change_digit(path, 0)
    for argv in (["study", three_people, "--out", run], ["report", run]):
        rc, err = leam(argv)
        assert rc == 1 and err.count("\n") == 1, err
        assert err.startswith(f"leam: error: {run / 'run.json'} is damaged") and "use another --out" in err


def test_a_run_without_checksums_is_still_read(three_people, base, run) -> None:
    """A run written before leam kept checksums: done markers with sizes only, no checksums of the tables or
    of run.json. Resumed, nothing is redone; a part damaged there (same size) is named, with what to do."""
    store = RunStore(run)
    for marker in (run / "parts").glob("*/done.json"):
        done = json.loads(marker.read_text())
        marker.write_text(json.dumps({k: done[k] for k in ("files", "seconds", "cpu_seconds") if k in done}))
    manifest = json.loads((run / "run.json").read_text())
    manifest.pop("checksum")
    (run / "run.json").write_text(json.dumps(manifest))
    (run / BACKUP).unlink()
    (run / "tables" / CHECKSUMS).unlink()
    before = digests(run)
    assert all(d.startswith("legacy:") for d in before.values())
    assert_same_tables(run_study(quick_config(three_people), run), base[1])
    assert digests(run) == before and store.read_manifest()["sessions"][-1]["units_pending"] == 0

    unit = identity_unit(three_people, 2)
    part = store.unit_dir(unit) / "regions.parquet"
    flip(part, 0.0)  # its first bytes: no Parquet file (damage elsewhere may pass unseen without checksums)
    assert store.is_done(unit)  # sizes only: the damage does not show there
    rc, err = leam(["study", three_people, "--models", "dlib-resnet", "--face", "largest", "--pairs", "6",
                    "--occlusion-seeds", "2", "--occlusion-percents", "1", "5", "--thresholds", "1", "10", "100",
                    "--workers", "1", "--out", run])
    assert rc == 1 and err.strip().splitlines()[-1].startswith(f"leam: error: {part} is damaged"), err
    assert f"delete its folder {part.parent}" in err
    shutil.rmtree(part.parent)
    assert_same_tables(run_study(quick_config(three_people), run), base[1])
    assert DATA_UNIT in digests(run)
