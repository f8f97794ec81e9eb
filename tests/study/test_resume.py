"""A study survives interruption: killed (SIGKILL) at random points and resumed, it ends with the same
tables as an uninterrupted run, row for row; a second process on the same run is refused."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from leam.study.config import StudyConfig
from leam.study.run import run_study
from leam.study.store import TABLES, RunLockedError, RunStore
from tests.study.conftest import quick_config

DEMO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "lfw-demo"
pytestmark = pytest.mark.skipif(not DEMO.is_dir(), reason=f"shared photos not found at {DEMO}")


@pytest.fixture(scope="module")
def data(three_people: Path) -> Path:
    return three_people


@pytest.fixture(scope="module")
def reference_tables(data, tmp_path_factory) -> dict[str, pd.DataFrame]:
    return run_study(quick_config(data), tmp_path_factory.mktemp("uninterrupted") / "run", progress=False)


def assert_same_tables(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame]) -> None:
    for name in TABLES:
        pd.testing.assert_frame_equal(got[name], want[name], check_exact=True)


def test_reference_run_has_rows(reference_tables) -> None:
    assert len(reference_tables["images"]) == 9  # 3 identities × 3 photos, one reference each
    assert (reference_tables["images"]["role"] == "explained").sum() == 6
    assert len(reference_tables["regions"]) and len(reference_tables["occlusion"]) and len(reference_tables["pairs"])


@pytest.mark.parametrize("stop_after", [0, 1, 2, 3])
def test_interrupted_in_process_then_resumed(data, reference_tables, tmp_path, stop_after) -> None:
    out = tmp_path / "run"
    done = []

    def interrupt(unit) -> None:
        done.append(unit)
        if len(done) > stop_after:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_study(quick_config(data), out, progress=False, on_unit=interrupt)
    assert_same_tables(run_study(quick_config(data), out, progress=False), reference_tables)
    first, second = RunStore(out).read_manifest()["sessions"]  # each invocation is recorded
    assert first["finished"] is None and second["finished"] is not None and second["seconds"] > 0
    assert second["units_pending"] == first["units_pending"] - (stop_after + 1)


def test_units_record_their_time(data, tmp_path) -> None:
    out = tmp_path / "run"
    run_study(quick_config(data), out, progress=False)
    timings = RunStore(out).timings()
    work = timings[timings["kind"] != "data"]
    assert sorted(work["kind"].unique()) == ["identity", "pairs"]
    assert len(work) == 4 and (work["seconds"] > 0).all() and (work["cpu_seconds"] > 0).all()
    identity = work[work["kind"] == "identity"]
    assert (identity["seconds"] > 0.2).all()  # three photos explained, parsed and occluded: not instant


def test_sigkilled_at_random_points_then_resumed(data, reference_tables, tmp_path) -> None:
    """SIGKILL the command at several points of its work (just after a unit is written, plus a random
    delay, so kills land inside units and between them); each time start it again."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "leam.cli.main", "study", str(data), "--models", "dlib-resnet", "--largest-face",
           "--pairs", "6", "--workers", "1", "--out", str(out)]
    cmd += ["--thresholds", "1", "10", "100", "--occlusion-seeds", "2", "--occlusion-percents", "1", "5"]
    rng = random.Random(0)
    kills = 0

    def done_units() -> int:
        return len(list(out.glob("parts/*/done.json")))

    for _ in range(10):
        before = done_units()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline and done_units() == before:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        if proc.returncode == 0:
            break
    final = subprocess.run(cmd, capture_output=True, text=True)  # resumes, or redoes nothing when complete
    assert final.returncode == 0, final.stderr
    assert kills >= 2
    assert not list(out.rglob(".*.tmp"))
    assert_same_tables(RunStore(out).tables(), reference_tables)


def test_a_second_process_is_refused(data, tmp_path) -> None:
    out = tmp_path / "run"
    store = RunStore(out)
    with store.lock():
        r = subprocess.run([sys.executable, "-m", "leam.cli.main", "study", str(data), "--out", str(out)],
                           capture_output=True, text=True)
        assert r.returncode == 1
        assert f"pid {os.getpid()}" in r.stderr and "another leam process" in r.stderr
        with pytest.raises(RunLockedError):
            with RunStore(out).lock():
                pass
    with store.lock():  # released: free again
        pass


def test_a_different_config_is_refused(data, tmp_path) -> None:
    out = tmp_path / "run"
    small = StudyConfig(data=str(data), models=("dlib-resnet",), face="largest", pairs=1, transfer=False,
                        occlusion_seeds=1, occlusion_percents=(1,), thresholds=(1,))
    run_study(small, out, progress=False)
    with pytest.raises(Exception, match="different configuration"):
        run_study(StudyConfig(**{**small.to_dict(), "pairs": 2}), out, progress=False)


def test_an_identity_with_one_usable_photo_is_recorded(tmp_path) -> None:
    root = tmp_path / "data"
    person = sorted(p for p in DEMO.iterdir() if p.is_dir())[0]
    (root / "solo").mkdir(parents=True)
    (root / "solo" / "a.jpg").symlink_to(sorted(person.iterdir())[0])
    (root / "solo" / "b.jpg").write_text("not a photo")
    tables = run_study(StudyConfig(data=str(root), models=("dlib-resnet",), pairs=1, occlusion_seeds=1,
                                   occlusion_percents=(1,), thresholds=(1,)), tmp_path / "run", progress=False)
    failures = tables["failures"]
    assert set(failures["stage"]) == {"face", "identity"}
    assert "not an image" in failures.loc[failures["stage"] == "face", "reason"].iloc[0]
    assert "1 usable photo" in failures.loc[failures["stage"] == "identity", "reason"].iloc[0]
