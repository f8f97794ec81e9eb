"""Concurrent writers (issue 26): two ``leam study``, ``leam explore`` or ``leam protect-eval`` processes on one
folder; ``leam report`` and ``leam explore`` while a study rewrites a run's tables; a study killed while it
rewrites them, then the report. One writer wins by a lock; the other says so in one line naming the folder and
the holder's pid, exits 1 and writes nothing; no reader takes half-written tables as whole, and a consolidation
waits for the readers of the tables it replaces. Every ``leam`` here is a real process
(``tests.helpers.killable``) on real photos of lfw-demo, stopped (SIGSTOP) or killed at the step under test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from multiprocessing.process import BaseProcess
from pathlib import Path

import pandas as pd
import pytest

from leam.study.store import CONSOLIDATING, TABLES, RunStore
from tests.helpers.killable import run_leam, start_leam
from tests.study.conftest import linked_people

pytestmark = [pytest.mark.reliability,
              pytest.mark.skipif(sys.platform != "linux", reason="uses SIGSTOP, SIGKILL and /proc/locks")]
SMALL = ["--models", "dlib-resnet", "--workers", "1", "--face", "largest", "--pairs", "3", "--occlusion-seeds", "1",
         "--occlusion-percents", "5", "--thresholds", "10", "100", "--no-transfer",
         "--layers", "dlib-resnet=stage2.block1,stage4.block2"]
PROTECT = ["--models", "dlib-resnet", "--ensembles", "all", "--budgets", "1", "--steps", "1", "--threads", "1",
           "--methods", "black", "--identities", "1"]
TRIES = 8  # resumes tried to stop one inside its consolidation (each consolidates again: about 2 s)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Two identities of lfw-demo, three photos each (symlinks to the shared photos)."""
    return linked_people(tmp_path_factory.mktemp("data"), 2)


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory) -> Path:
    """A study of ``data`` run to its end by one ``leam study`` process (about 8 s)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    log = out.parent / "log.txt"
    assert run_leam(study(data, out), log) == 0, log.read_text()
    return out


def study(data: Path, out: Path) -> list[str]:
    return ["study", str(data), *SMALL, "--out", str(out)]


def copy_run(run: Path, to: Path) -> Path:
    """A copy of ``run`` to change (the module's run stays as the study wrote it)."""
    shutil.copytree(run, to, symlinks=True)
    return to


def at_once(argv: list[str], tmp: Path) -> list[tuple[int, str, int]]:
    """``leam ARGV`` started twice at once; (exit status, output, pid) of each, the winner first."""
    logs = [tmp / f"log-{k}.txt" for k in (0, 1)]
    procs = [start_leam(argv, log) for log in logs]
    for proc in procs:
        proc.join(300)
        assert proc.exitcode is not None, "a process ran over 300 s"
    ends = [(proc.exitcode, log.read_text(), proc.pid) for proc, log in zip(procs, logs)]
    return sorted(ends, key=lambda end: end[0])


def assert_refused(output: str, folder: Path, holder: int, doing: str) -> None:
    """One line, naming ``folder`` and the pid of the process that holds it, and what that process does."""
    assert output.count("\n") == 1 and "Traceback" not in output, output
    assert output.startswith(f"leam: error: {folder}: another leam process (pid {holder}) is {doing}"), output


def assert_same_tables(out: Path, want: Path) -> None:
    got, expected = RunStore(out).tables(), RunStore(want).tables()
    assert set(got) == set(expected) == set(TABLES)
    for name in TABLES:
        pd.testing.assert_frame_equal(got[name], expected[name], check_exact=True, obj=name)


def stopped(proc: BaseProcess) -> None:
    """SIGSTOP ``proc`` and wait until it is stopped."""
    os.kill(proc.pid, signal.SIGSTOP)
    while Path(f"/proc/{proc.pid}/stat").read_text().rpartition(")")[2].split()[0] not in "Tt":
        time.sleep(0.001)


def stopped_while_consolidating(data: Path, out: Path, log: Path) -> BaseProcess:
    """A resumed ``leam study`` of ``out`` (which consolidates the tables again), stopped while it rewrites
    the tables: holding their lock, ``tables/.consolidating`` in place."""
    marker = out / "tables" / CONSOLIDATING
    for _ in range(TRIES):
        proc = start_leam(study(data, out), log)
        while proc.is_alive() and not marker.exists():
            time.sleep(0.0005)
        if proc.is_alive():
            stopped(proc)
            if marker.exists():
                return proc
            os.kill(proc.pid, signal.SIGCONT)  # stopped just after the tables were in place: again
        proc.join()
        assert proc.exitcode == 0, log.read_text()[-3000:]
    raise AssertionError(f"no resume of {TRIES} was stopped while it consolidated")


def text(log: Path) -> str:
    """What a process has written to its log so far."""
    return log.read_text() if log.exists() else ""


def holds_lock(pid: int, lock: Path, mode: str) -> bool:
    """Whether process ``pid`` holds ``flock`` on ``lock`` in ``mode`` (READ or WRITE), by /proc/locks."""
    inode = f":{lock.stat().st_ino}"
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if fields[1:4] == ["FLOCK", "ADVISORY", mode] and fields[4] == str(pid) and fields[5].endswith(inode):
            return True
    return False


def test_two_studies_on_one_run(data, finished, tmp_path) -> None:
    out = tmp_path / "run"
    (won, _, pid), (lost, refusal, _) = at_once(study(data, out), tmp_path)
    assert (won, lost) == (0, 1)
    assert_refused(refusal, out, pid, "working on this run")
    assert len(json.loads((out / "run.json").read_text())["sessions"]) == 1  # the loser added no session
    assert_same_tables(out, finished)


def test_two_explorers_on_one_site(finished, tmp_path) -> None:
    site = tmp_path / "site"
    (won, _, pid), (lost, refusal, _) = at_once(["explore", str(finished), "--out", str(site)], tmp_path)
    assert (won, lost) == (0, 1)
    assert_refused(refusal, site, pid, "writing this explorer site")
    log = tmp_path / "again.txt"
    assert run_leam(["explore", str(finished), "--out", str(site)], log) == 0
    assert "pictures drawn for 0 identity × model" in log.read_text()  # the winner's manifest is whole and current


def test_two_protection_evaluations_on_one_run(data, tmp_path) -> None:
    out = tmp_path / "run"
    (won, _, pid), (lost, refusal, _) = at_once(["protect-eval", str(data), *PROTECT, "--out", str(out)], tmp_path)
    assert (won, lost) == (0, 1)
    assert_refused(refusal, out, pid, "working on this run")
    results = pd.read_csv(out / "tables" / "results.csv")
    assert set(results["method"]) >= {"black"} and (out / "report.html").is_file()
    assert not (out / "tables" / CONSOLIDATING).exists()  # the CSVs are written within the consolidation


def test_readers_refused_while_a_study_consolidates(data, finished, tmp_path) -> None:
    """``leam report`` and ``leam explore`` while the tables are rewritten: one line each, nothing read."""
    out = copy_run(finished, tmp_path / "run")
    proc = stopped_while_consolidating(data, out, tmp_path / "study.txt")
    try:
        assert holds_lock(proc.pid, out / "tables" / ".lock", "WRITE")
        for argv, log in ((["report", str(out)], tmp_path / "report.txt"),
                          (["explore", str(out)], tmp_path / "explore.txt")):
            assert run_leam(argv, log) == 1
            assert_refused(log.read_text(), out / "tables", proc.pid, "writing this run's tables")
        assert not (out / "report.html").exists() and not (out / "explore").exists()
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.join()
    assert proc.exitcode == 0
    assert_same_tables(out, finished)


def test_study_killed_while_consolidating_then_report(data, finished, tmp_path) -> None:
    """The killed consolidation's tables are refused (they may mix two), until ``leam study`` rebuilds them."""
    out = copy_run(finished, tmp_path / "run")
    proc = stopped_while_consolidating(data, out, tmp_path / "study.txt")
    proc.kill()
    proc.join()
    log = tmp_path / "report.txt"
    assert run_leam(["report", str(out)], log) == 1
    said = log.read_text()
    assert said.count("\n") == 1 and "Traceback" not in said, said
    assert f"{out / 'tables'}: `leam study` (pid {proc.pid}) was stopped while it rewrote these tables" in said
    assert "run `leam study` with the run's options again: it rebuilds the tables" in said
    assert not (out / "report.html").exists()
    assert run_leam(study(data, out), tmp_path / "study.txt") == 0
    assert not (out / "tables" / CONSOLIDATING).exists()
    assert_same_tables(out, finished)
    assert run_leam(["report", str(out)], log) == 0, log.read_text()
    assert (out / "report.html").is_file()


def test_consolidation_waits_for_a_reader(data, finished, tmp_path) -> None:
    """A study that ends while ``leam explore`` reads the tables says so and waits; both end whole."""
    out = copy_run(finished, tmp_path / "run")
    lock, explore_log, study_log = out / "tables" / ".lock", tmp_path / "explore.txt", tmp_path / "study.txt"
    reader = start_leam(["explore", str(out)], explore_log)
    while reader.is_alive() and not holds_lock(reader.pid, lock, "READ"):
        time.sleep(0.001)
    stopped(reader)  # holding the tables' lock, shared
    try:
        writer = start_leam(study(data, out), study_log)
        while writer.is_alive() and "waiting for the leam processes reading" not in text(study_log):
            time.sleep(0.01)
        time.sleep(0.3)
        assert writer.is_alive(), study_log.read_text()[-3000:]
        assert not (out / "tables" / CONSOLIDATING).exists()  # the tables not touched yet
        assert f"{out / 'tables'}: waiting for the leam processes reading these tables" in study_log.read_text()
    finally:
        os.kill(reader.pid, signal.SIGCONT)
    reader.join()
    writer.join()
    assert (reader.exitcode, writer.exitcode) == (0, 0), explore_log.read_text() + study_log.read_text()[-3000:]
    assert_same_tables(out, finished)
