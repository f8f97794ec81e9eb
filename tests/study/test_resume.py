"""A study survives interruption: killed (SIGKILL) at random points and resumed, it ends with the same
tables as an uninterrupted run, row for row; a second process on the same run is refused."""

from __future__ import annotations

import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from leam.study.config import StudyConfig
from leam.study.run import DATA_UNIT, run_study, unit_name
from leam.study.store import TABLES, RunLockedError, RunStore
from leam.study.units import Unit
from tests.study.conftest import quick_config

DEMO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "lfw-demo"
pytestmark = pytest.mark.skipif(not DEMO.is_dir(), reason=f"shared photos not found at {DEMO}")


@pytest.fixture(scope="module")
def data(three_people: Path) -> Path:
    return three_people


@pytest.fixture(scope="module")
def reference_tables(data, tmp_path_factory) -> dict[str, pd.DataFrame]:
    return run_study(quick_config(data), tmp_path_factory.mktemp("uninterrupted") / "run")


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
        run_study(quick_config(data), out, on_unit=interrupt)
    calls = []
    assert_same_tables(run_study(quick_config(data), out, progress=lambda *call: calls.append(call)),
                       reference_tables)
    identities = [("identities × models", n, 3) for n in range(stop_after + 1, 4)] if stop_after < 2 else []
    assert calls == identities + ([("map pairs", 0, 1), ("map pairs", 1, 1)] if stop_after < 3 else [])
    first, second = RunStore(out).read_manifest()["sessions"]  # each invocation is recorded
    assert first["finished"] is None and second["finished"] is not None and second["seconds"] > 0
    assert second["units_pending"] == first["units_pending"] - (stop_after + 1)


def test_units_record_their_time(data, tmp_path) -> None:
    out = tmp_path / "run"
    run_study(quick_config(data), out)
    timings = RunStore(out).timings()
    work = timings[timings["kind"] != "data"]
    assert sorted(work["kind"].unique()) == ["identity", "pairs"]
    assert len(work) == 4 and (work["seconds"] > 0).all() and (work["cpu_seconds"] > 0).all()
    identity = work[work["kind"] == "identity"]
    assert (identity["seconds"] > 0.2).all()  # three photos explained, parsed and occluded: not instant


@pytest.mark.slow
def test_sigkilled_at_random_points_then_resumed(data, reference_tables, tmp_path) -> None:
    """SIGKILL the command at several points of its work (just after a unit is written, plus a random
    delay, so kills land inside units and between them); each time start it again."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "leam.cli.main", "study", str(data), "--models", "dlib-resnet", "--face", "largest",
           "--pairs", "6", "--workers", "1", "--out", str(out)]
    cmd += ["--thresholds", "1", "10", "100", "--occlusion-seeds", "2", "--occlusion-percents", "1", "5"]
    cmd += ["--forwards", "torch"]  # as quick_config's reference run (the command's default is onnxruntime)
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
    run_study(small, out)
    with pytest.raises(Exception, match="different configuration"):
        run_study(StudyConfig(**{**small.to_dict(), "pairs": 2}), out)


def test_an_identity_with_one_usable_photo_is_recorded(tmp_path) -> None:
    root = tmp_path / "data"
    person = sorted(p for p in DEMO.iterdir() if p.is_dir())[0]
    (root / "solo").mkdir(parents=True)
    (root / "solo" / "a.jpg").symlink_to(sorted(person.iterdir())[0])
    (root / "solo" / "b.jpg").write_text("not a photo")
    tables = run_study(StudyConfig(data=str(root), models=("dlib-resnet",), pairs=1, occlusion_seeds=1,
                                   occlusion_percents=(1,), thresholds=(1,)), tmp_path / "run")
    failures = tables["failures"]
    assert set(failures["stage"]) == {"face", "identity"}
    assert "not an image" in failures.loc[failures["stage"] == "face", "reason"].iloc[0]
    assert "1 usable photo" in failures.loc[failures["stage"] == "identity", "reason"].iloc[0]


# ------------------------------------------------------------------------------ data changed between runs

TWO_MODELS = dict(models=("dlib-resnet", "facenet"), face="largest", thresholds=(10,), occlusion_percents=(5,),
                  occlusion_seeds=1, pair_thresholds=(None, 5), pairs=4, emd_grid=8,
                  layers={"dlib-resnet": ("stage4.block2",), "facenet": ("mixed7a",)})


def link(folder: Path, photo: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / photo.name).symlink_to(photo)


def write_manifest(data: Path, rows: list[dict]) -> None:
    with (data / "manifest.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["path", "identity", "gender"])
        writer.writeheader()
        writer.writerows(rows)


def markers(out: Path) -> dict[str, str | None]:
    """Each unit folder's done-marker digest: a unit redone gets a new one."""
    store = RunStore(out)
    return {d.name: store.marker_digest(d.name) for d in (out / "parts").iterdir()}


@pytest.mark.slow
def test_changed_data_redoes_what_changed_and_nothing_else(tmp_path) -> None:
    """Two models (so transfer units too), a manifest with a gender column, seven people of lfw-demo with
    three photos each. Between two runs: one person gets a photo, one loses one, one photo's bytes are
    replaced (same name), one photo's gender changes, one person leaves, one arrives, one is untouched.
    The resumed run says so in one line, redoes the changed people's units and every transfer and pairs
    unit that read them, not the untouched person's, and ends with the tables of a fresh run over the
    changed data, value for value."""
    people = sorted(p for p in DEMO.iterdir() if p.is_dir())[:7]
    photos = {p.name: sorted(p.iterdir()) for p in people}
    gender = {p.name: "M" if p.name.startswith(("A", "C", "E", "G")) else "F" for p in people}
    data = tmp_path / "data"
    rows = []
    grown, shrunk, replaced, relabelled, leaving, arriving, untouched = photos
    for person in [grown, shrunk, replaced, relabelled, leaving, untouched]:
        for photo in photos[person][:3]:
            link(data / person, photo)
            rows.append({"path": f"{person}/{photo.name}", "identity": person, "gender": gender[person]})
    write_manifest(data, rows)
    config = StudyConfig(data=str(data), **TWO_MODELS)
    out = tmp_path / "run"
    run_study(config, out)
    before = markers(out)

    link(data / grown, photos[grown][3])
    rows.append({"path": f"{grown}/{photos[grown][3].name}", "identity": grown, "gender": gender[grown]})
    (data / shrunk / photos[shrunk][2].name).unlink()
    rows = [r for r in rows if r["path"] != f"{shrunk}/{photos[shrunk][2].name}"]
    target = data / replaced / photos[replaced][1].name
    target.unlink()  # a symlink to the shared photo: replaced by a file of other bytes, never written through
    target.write_bytes(photos[replaced][3].read_bytes())
    for r in rows:
        if r["path"] == f"{relabelled}/{photos[relabelled][1].name}":
            r["gender"] = "X"
    rows = [r for r in rows if r["identity"] != leaving]
    shutil.rmtree(data / leaving)
    for photo in photos[arriving][:3]:
        link(data / arriving, photo)
        rows.append({"path": f"{arriving}/{photo.name}", "identity": arriving, "gender": gender[arriving]})
    write_manifest(data, rows)

    notes: list[str] = []
    resumed = run_study(config, out, notify=notes.append)
    said = [line for line in notes if line.startswith("data changed")]
    assert said == ["data changed since the last session: 1 photo added, 1 photo removed, 1 photo replaced "
                    "(other bytes), 1 photo's attributes changed, 1 identity added, 1 identity removed; "
                    "redoing 22 units"]  # 5 people (4 changed, 1 new) × 2 models, their 10 transfer units, 2 pairs
    session = RunStore(out).read_manifest()["sessions"][-1]
    assert session["data_changes"] == {"photos_added": 1, "photos_removed": 1, "photos_replaced": 1,
                                       "attributes_changed": 1, "identities_added": 1, "identities_removed": 1}
    after = markers(out)
    kept = {unit_name(Unit(kind, m, untouched)) for kind in ("identity", "transfer") for m in config.models}
    assert {u for u in after if after[u] == before.get(u)} == kept | {DATA_UNIT}
    gone = {unit_name(Unit(kind, m, leaving)) for kind in ("identity", "transfer") for m in config.models}
    assert gone <= set(before) and not gone & set(after)
    fresh = run_study(config, tmp_path / "fresh")
    assert_same_tables(resumed, fresh)
    images = resumed["images"]
    assert leaving not in set(images["identity"]) and arriving in set(images["identity"])
    assert (images["attr_gender"] == "X").sum() == 2  # the relabelled photo, under each model


def test_photos_added_and_removed_in_folders(tmp_path) -> None:
    """Without a manifest: a photo added to a folder, one deleted, a folder removed and one added, a broken
    link added (an entry left out, recorded as a failure); the resumed run equals a fresh one over the
    changed folders."""
    people = sorted(p for p in DEMO.iterdir() if p.is_dir())[:4]
    data = tmp_path / "data"
    for person in people[:3]:
        for photo in sorted(person.iterdir())[:3]:
            link(data / person.name, photo)
    out = tmp_path / "run"
    run_study(quick_config(data), out)
    link(data / people[0].name, sorted(people[0].iterdir())[4])
    (data / people[1].name / sorted(people[1].iterdir())[0].name).unlink()  # the reference photo
    shutil.rmtree(data / people[2].name)
    for photo in sorted(people[3].iterdir())[:3]:
        link(data / people[3].name, photo)
    (data / "moved away").symlink_to(tmp_path / "nowhere")
    resumed = run_study(quick_config(data), out)
    assert RunStore(out).read_manifest()["sessions"][-1]["data_changes"] == {
        "photos_added": 1, "photos_removed": 1, "identities_added": 1, "identities_removed": 1, "entries_left_out": 1}
    assert list(resumed["failures"].query("stage == 'data'")["identity"]) == ["moved away"]
    assert_same_tables(resumed, run_study(quick_config(data), tmp_path / "fresh"))
    assert set(resumed["images"]["identity"]) == {people[0].name, people[1].name, people[3].name}


def test_unchanged_data_redoes_nothing(data, tmp_path) -> None:
    out = tmp_path / "run"
    run_study(quick_config(data), out)
    before = markers(out)
    run_study(quick_config(data), out)
    assert markers(out) == before
    session = RunStore(out).read_manifest()["sessions"][-1]
    assert session["units_pending"] == 0 and session["data_changes"] == {}


def test_a_resumed_run_keeps_its_own_map_unless_told(tmp_path: Path) -> None:
    """``leam study`` without --direction/--aggregate takes a resumed run's own (so a run made before the default
    map changed resumes as it was made), a new run today's default, and the options given win."""
    from leam.cli.main import build_parser
    from leam.cli.study import study_config
    from leam.maps import DEFAULT_AGGREGATION, DEFAULT_DIRECTION
    from leam.study.run import default_map

    made = StudyConfig(data=str(tmp_path), models=("dlib-resnet",), direction="similarity", aggregation="max")
    old = tmp_path / "old"
    RunStore(old).write_manifest({"kind": "study", "config": made.to_dict()})
    assert default_map(old) == ("similarity", "max")
    assert default_map(tmp_path / "new") == (DEFAULT_DIRECTION, DEFAULT_AGGREGATION)
    argv = ["study", str(tmp_path), "--models", "dlib-resnet"]
    resumed = study_config(build_parser().parse_args([*argv, "--out", str(old)]))
    assert (resumed.direction, resumed.aggregation) == ("similarity", "max")
    fresh = study_config(build_parser().parse_args([*argv, "--out", str(tmp_path / "new")]))
    assert (fresh.direction, fresh.aggregation) == (DEFAULT_DIRECTION, DEFAULT_AGGREGATION)
    told = study_config(build_parser().parse_args([*argv, "--out", str(old), "--direction", "loss",
                                                   "--aggregate", "early"]))
    assert (told.direction, told.aggregation) == ("loss", "early")
