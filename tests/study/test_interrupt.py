"""A study under fire: SIGKILLed at 20 random points and resumed each time, it ends with exactly the
tables of an uninterrupted run; a second process on the run is refused; half-written and stray files
are repaired; a full disk (a file-size limit) stops it with one line and it resumes to the same tables;
worker processes do not outlive a killed study; Ctrl-C (once or again and again) and SIGTERM stop a
study with workers at once, with one line, and it resumes to the same tables."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leam.study.store import TABLES, RunStore
from tests.helpers.killable import run_leam, start_leam
from tests.study.conftest import linked_people

pytestmark = [pytest.mark.reliability,
              pytest.mark.skipif(sys.platform != "linux", reason="uses SIGKILL, RLIMIT_FSIZE and /proc")]
KILLS = 20
SMALL = ["--models", "dlib-resnet", "--workers", "1", "--face", "largest", "--pairs", "3", "--occlusion-seeds", "1",
         "--occlusion-percents", "5", "--thresholds", "10", "100",
         "--layers", "dlib-resnet=stage2.block1,stage4.block2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Four identities of lfw-demo, three photos each (symlinks to the shared photos)."""
    return linked_people(tmp_path_factory.mktemp("data"), 4)


def study(data: Path, out: Path) -> list[str]:
    return ["study", str(data), *SMALL, "--out", str(out)]


@dataclass(frozen=True)
class Reference:
    """The uninterrupted run: its tables, its folder, how long it took and how long until its first
    identity unit was done (s), and how many units it has."""

    tables: dict[str, pd.DataFrame]
    out: Path
    seconds: float
    first_unit_seconds: float
    units: int


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> Reference:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    log = out.parent / "log.txt"
    assert run_leam(["models"], log) == 0  # starts the fork server, so that the timing below is the run's
    proc, start = start_leam(study(data, out), log), time.monotonic()
    first = None
    while proc.is_alive():
        if first is None and done_units(out) >= 2:  # the data unit, then the first identity
            first = time.monotonic() - start
        time.sleep(0.01)
    seconds = time.monotonic() - start
    assert proc.exitcode == 0, log.read_text()
    return Reference(RunStore(out).tables(), out, seconds, first or seconds, done_units(out))


def assert_same_tables(out: Path, want: dict[str, pd.DataFrame]) -> None:
    """Row for row, value for value, and no row twice."""
    got = RunStore(out).tables()
    assert set(got) == set(TABLES)
    for name in TABLES:
        pd.testing.assert_frame_equal(got[name], want[name], check_exact=True, obj=name)
        hashable = got[name].map(lambda v: tuple(v) if isinstance(v, (list, np.ndarray)) else v)
        assert not hashable.duplicated().any(), name


def holder(out: Path) -> str:
    """The pid written in the run's lock file by the process that holds (or last held) it."""
    try:
        return (out / ".lock").read_text().strip()
    except OSError:
        return ""


def done_units(out: Path) -> int:
    return len(list(out.glob("parts/*/done.json")))


def test_reference_run(reference) -> None:
    tables = reference.tables
    assert (tables["images"]["role"] == "explained").sum() == 8  # 4 identities x 3 photos, 1 reference each
    assert len(tables["regions"]) and len(tables["occlusion"]) and len(tables["pairs"])
    assert reference.units == 6  # the data folder, 4 identities, the pairs
    assert reference.seconds < 120


@pytest.mark.slow
def test_sigkilled_20_times_then_resumed(data, reference, tmp_path, record_property) -> None:
    """Each start is killed after a random delay (seeded), uniform up to the time the rest of the run
    would take (the uninterrupted run's start-up and its share of the units left), and, once the run
    has finished, up to 1.5 x that last run: so the kills spread over the units of work, then over the
    start-up, the consolidation and the final ``run.json`` of resumed runs. In the middle, a second
    process on the same run is refused while the first holds it."""
    out, log, second = tmp_path / "run", tmp_path / "log.txt", tmp_path / "second.txt"
    rng = random.Random(7)
    landed, progress, strays, finished_in, starts = 0, [], 0, None, 0
    start_up, work = reference.first_unit_seconds, reference.seconds - reference.first_unit_seconds
    while landed < KILLS and starts < 200:
        starts += 1
        left = 1 - done_units(out) / reference.units
        longest = start_up + work * left if finished_in is None else 1.5 * finished_in
        proc, started = start_leam(study(data, out), log), time.monotonic()
        delay = rng.uniform(0.0, longest)
        if landed == 3 and not second.exists():  # a second process: refused at once, naming the first
            while proc.is_alive() and holder(out) != str(proc.pid):  # the first holds the run's lock
                time.sleep(0.01)
            if proc.is_alive():
                assert run_leam(study(data, out), second) == 1
                assert f"another leam process (pid {proc.pid})" in second.read_text()
        proc.join(max(0.0, delay - (time.monotonic() - started)))
        if proc.exitcode is None:
            proc.kill()
            proc.join()
            landed += 1
            progress.append(done_units(out))
            strays += len(list(out.rglob(".*.tmp")))
        else:
            assert proc.exitcode == 0, log.read_text()[-3000:]
            finished_in = time.monotonic() - started
    assert landed == KILLS, f"only {landed} kills landed in {starts} starts"
    assert second.is_file()  # the second process was tried while the first held the run
    assert run_leam(study(data, out), log) == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()
    assert not list(out.rglob(".*.tmp"))
    assert_same_tables(out, reference.tables)
    assert len(set(progress)) >= 3, progress  # the kills landed at several stages of the work
    record_property("kills_at_done_units", progress)
    record_property("kills_leaving_a_temporary_file", strays)
    record_property("starts", starts)


def test_half_written_and_stray_files_are_repaired(data, reference, tmp_path) -> None:
    out = tmp_path / "run"
    shutil.copytree(reference.out, out, symlinks=True)
    store = RunStore(out)
    units = sorted(p.name for p in (out / "parts").iterdir())
    identity_units = [u for u in units if u.startswith("identity")]
    pairs_unit = next(u for u in units if u.startswith("pairs"))
    damaged = {  # unit: file cut short
        identity_units[0]: "maps.npz", identity_units[1]: "regions.parquet", pairs_unit: "done.json",
    }
    for unit, name in damaged.items():
        path = out / "parts" / unit / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    (out / "parts" / identity_units[2] / ".occlusion.parquet.k1ll3d.tmp").write_bytes(b"PAR1 half a file")
    (out / "tables" / ".images.parquet.k1ll3d.tmp").write_bytes(b"")
    (out / "tables" / "images.parquet").unlink()
    assert [u for u in units if not store.is_done(u)] == sorted(damaged)
    log = tmp_path / "log.txt"
    assert run_leam(study(data, out), log) == 0, log.read_text()[-3000:]
    assert all(store.is_done(u) for u in units)
    assert not list(out.rglob(".*.tmp"))
    assert_same_tables(out, reference.tables)


def test_damaged_table_is_named_by_the_report_then_rebuilt(data, reference, tmp_path) -> None:
    out, log = tmp_path / "run", tmp_path / "log.txt"
    shutil.copytree(reference.out, out, symlinks=True)
    pairs = out / "tables" / "pairs.parquet"
    pairs.write_bytes(pairs.read_bytes()[:100])
    assert run_leam(["report", out], log) == 1
    last = log.read_text().strip().splitlines()[-1]
    assert last.startswith(f"leam: error: {pairs} is damaged") and "run `leam study`" in last
    assert run_leam(study(data, out), log) == 0
    assert_same_tables(out, reference.tables)
    assert run_leam(["report", out], log) == 0, log.read_text()[-2000:]


@pytest.mark.parametrize("limit", [1_000, 200_000], ids=["at-run.json", "at-maps.npz"])
def test_full_disk_stops_with_one_line_then_resumes(data, reference, tmp_path, limit) -> None:
    """Files may not grow past ``limit`` bytes (as on a full disk): run.json (~2.6 kB) or the first
    unit's maps.npz (~0.8 MB) cannot be written."""
    out, log = tmp_path / "run", tmp_path / "log.txt"
    assert run_leam(study(data, out), log, max_file_bytes=limit) == 1
    text = log.read_text()
    last = text.strip().splitlines()[-1].split("\r")[-1]
    assert last.startswith("leam: error: cannot write ") and "(File too large)" in last, text[-2000:]
    assert ("run.json" if limit < 2000 else "maps.npz") in last
    assert "Traceback" not in text
    assert not list(out.rglob(".*.tmp"))  # nothing half-written left behind
    assert run_leam(study(data, out), log) == 0, log.read_text()[-3000:]
    assert_same_tables(out, reference.tables)


def test_workers_end_with_a_killed_study(data, reference, tmp_path) -> None:
    """``--workers 2`` (spawned processes), the study SIGKILLed once its workers are at work: they end
    too, instead of writing on into the run beside whoever resumes it; the resumed run is complete."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "leam.cli.main", *study(data, out), "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while done_units(out) < 2 and proc.poll() is None and time.monotonic() < deadline:  # data unit + one
            time.sleep(0.05)
        children = [int(c) for c in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        assert len(children) >= 2 and proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 20
        while any(Path(f"/proc/{c}").exists() and "Z" not in _state(c) for c in children) and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        alive = [c for c in children if Path(f"/proc/{c}").exists() and "Z" not in _state(c)]
        assert not alive, f"processes of the killed study still running: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()
    log = tmp_path / "log.txt"
    assert run_leam(study(data, out), log) == 0, log.read_text()[-3000:]
    assert_same_tables(out, reference.tables)


@pytest.mark.parametrize(("signal_name", "times", "group"),
                         [("SIGINT", 1, False), ("SIGINT", 3, True), ("SIGTERM", 1, False)],
                         ids=["kill-int", "ctrl-c-3-times", "kill-term"])
@pytest.mark.slow
def test_a_study_with_workers_stops_at_once_on_ctrl_c(data, slow_reference, tmp_path, signal_name, times,
                                                      group) -> None:
    """``--workers 2`` (``SLOW`` units, ~1 s each: a queue that would take seconds to finish) signalled
    ``times`` times 50 ms apart once the first identity is done: to the study
    only (``kill -INT PID``) or as a terminal's Ctrl-C does it (the study and its workers: the whole process
    group). It exits 130 within a few seconds, its stderr holds one line besides the progress bars, the
    units at work and queued are not done, and no process of it is left; the same command then resumes to
    the uninterrupted run's tables."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "leam.cli.main", *study(data, out), *SLOW, "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while done_units(out) < 2 and proc.poll() is None and time.monotonic() < deadline:  # data unit + one
            time.sleep(0.02)
        family = descendants(proc.pid)
        assert proc.poll() is None and len(family) >= 2, "the study ended before it could be interrupted"
        signalled, signalled_at = time.monotonic(), time.time()
        for _ in range(times):
            (os.killpg if group else os.kill)(proc.pid, getattr(signal, signal_name))
            time.sleep(0.05)
        _, err = proc.communicate(timeout=30)
        stopped_in = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err[-3000:]
    assert stopped_in < 5, stopped_in
    assert "Traceback" not in err
    assert [line for line in re.split(r"[\r\n]+", err) if line and not BAR.match(line)] == ["leam: interrupted"], err
    deadline = time.monotonic() + 5
    while (alive := [p for p in family if _state(p) not in ("Z", "X")]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive, f"processes of the interrupted study still running: {alive}"
    late = [p.parent.name for p in out.glob("parts/*/done.json") if p.stat().st_mtime > signalled_at + 0.5]
    assert not late, f"units done after the study was told to stop: {late}"  # at work or queued: none went on
    assert not json.loads((out / "run.json").read_text()).get("finished")
    log = tmp_path / "log.txt"
    assert run_leam([*study(data, out), *SLOW], log) == 0, log.read_text()[-3000:]
    assert_same_tables(out, slow_reference)


@pytest.fixture(scope="module")
def slow_reference(data, tmp_path_factory) -> dict[str, pd.DataFrame]:
    """The tables of the uninterrupted ``SLOW`` run."""
    out = tmp_path_factory.mktemp("slow") / "run"
    log = out.parent / "log.txt"
    assert run_leam([*study(data, out), *SLOW], log) == 0, log.read_text()[-3000:]
    return RunStore(out).tables()


SLOW = ["--occlusion-seeds", "60"]  # the same study with units of ~1 s (more random masks)
BAR = re.compile(r"(identities × models|transfer|map pairs): ")  # tqdm's progress bars


def descendants(pid: int) -> list[int]:
    """The processes under ``pid`` (children, their children, ...)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            children = [int(c) for t in Path(f"/proc/{p}/task").iterdir()
                        for c in (t / "children").read_text().split()]
        except OSError:
            continue
        out += children
        todo += children
    return out


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"
