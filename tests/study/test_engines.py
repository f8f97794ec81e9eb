"""Where a study runs: the Ray engine finishes a run the local engine began, with the same files and
tables; engine and device mistakes are refused in one line before any work; on a GPU the study runs
there (skipped without one)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from leam.cli.main import main
from leam.study.engines import RAY_MISSING, resolve_device
from leam.study.run import run_study
from leam.study.store import TABLES
from tests.study.conftest import quick_config

DEMO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "lfw-demo"
needs_photos = pytest.mark.skipif(not DEMO.is_dir(), reason=f"shared photos not found at {DEMO}")
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch")


def ray_or_skip():
    return pytest.importorskip("ray", reason="Ray is not installed (pip install 'leam[ray]'): Ray engine not tested")


@pytest.fixture(scope="module")
def data(three_people: Path) -> Path:
    return three_people


@pytest.fixture(scope="module")
def local_run(data, tmp_path_factory) -> tuple[Path, dict[str, pd.DataFrame]]:
    """The local engine, uninterrupted, in this process with 3 torch threads (each unit runs on one
    whatever the caller's count: on this machine 1 and 2 threads differ in maps' last digits): its
    folder and tables."""
    out = tmp_path_factory.mktemp("local") / "run"
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        return out, run_study(quick_config(data), out)
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray instance with 2 CPUs for this module's tests, shut down after them."""
    ray = ray_or_skip()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", object_store_memory=256 * 2**20)
    yield ray
    ray.shutdown()


def sorted_table(df: pd.DataFrame) -> pd.DataFrame:
    keys = [c for c in df.columns if df[c].map(lambda v: isinstance(v, (str, int, float, np.number))).all()]
    return df.sort_values(keys, kind="stable").reset_index(drop=True) if len(df) else df


def assert_same_tables(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame]) -> None:
    for name in TABLES:
        pd.testing.assert_frame_equal(sorted_table(got[name]), sorted_table(want[name]), check_exact=True)


def part_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / "parts").rglob("*") if p.is_file())


@pytest.mark.slow
@needs_photos
def test_ray_engine_finishes_a_run_the_local_engine_began(ray_cluster, data, local_run, tmp_path) -> None:
    """The local engine stops after one unit; Ray, 2 tasks at once, does the other three (two identities,
    then the pairs): the same part files and, row for row, the same tables as the uninterrupted run."""
    local_root, local_tables = local_run
    out, done = tmp_path / "run", []

    def interrupt(unit) -> None:
        done.append(unit)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_study(quick_config(data), out, on_unit=interrupt)
    by_ray = []
    got = run_study(quick_config(data), out, workers=2, engine="ray", on_unit=by_ray.append)
    assert sorted(u.kind for u in by_ray) == ["identity", "identity", "pairs"]
    assert (got["images"]["role"] == "explained").sum() == 6 and len(got["pairs"])
    assert_same_tables(got, local_tables)
    assert part_files(out) == part_files(local_root)  # the same units, files and done markers


def test_a_unit_runs_on_one_thread_and_restores_the_callers_count() -> None:
    from threadpoolctl import threadpool_info

    from leam.study.engines import UNIT_THREADS, unit_threads

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        with unit_threads():
            assert torch.get_num_threads() == UNIT_THREADS == 1
            assert all(pool["num_threads"] == 1 for pool in threadpool_info())
        assert torch.get_num_threads() == 3
        with pytest.raises(RuntimeError), unit_threads():
            raise RuntimeError("a unit that fails")
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_engine_ray_without_ray_says_how_to_install(tmp_path) -> None:
    """With ``import ray`` failing (as when it is not installed): one line on stderr, nothing written."""
    out = tmp_path / "run"
    code = "import sys; sys.modules['ray'] = None; from leam.cli.main import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, "study", str(tmp_path), "--engine", "ray", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"leam: error: {RAY_MISSING}"]
    assert not out.exists()


def test_a_ray_node_without_the_run_folder_says_so(ray_cluster, tmp_path) -> None:
    """The task's own LeamError reaches the caller as it was raised (one line), not wrapped by Ray."""
    from leam.errors import LeamError
    from leam.study.engines import ray_units
    from leam.study.units import Unit

    with pytest.raises(LeamError, match="^run folder .* is not visible on Ray node .*every node shares$"):
        list(ray_units(str(tmp_path / "elsewhere"), {}, [Unit("identity", "dlib-resnet", "x")], workers=2))


def test_address_without_engine_ray_is_refused(tmp_path, capsys) -> None:
    assert main(["study", str(tmp_path), "--address", "auto", "--out", str(tmp_path / "run")]) == 1
    assert "--address" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_device_cuda_without_a_gpu_is_refused(tmp_path, capsys) -> None:
    assert main(["study", str(tmp_path), "--device", "cuda", "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sees no CUDA GPU" in err[0] and "--device cpu" in err[0]
    assert not (tmp_path / "run").exists()
    assert resolve_device("auto") == "cpu"


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "meta"])
def test_device_names_other_than_cpu_cuda_auto_are_refused(name) -> None:
    from leam.errors import LeamError

    with pytest.raises(LeamError, match="expected cpu, cuda, cuda:N or auto"):
        resolve_device(name)


@needs_gpu
@needs_photos
def test_study_on_the_gpu_agrees_with_the_cpu(data, local_run, tmp_path) -> None:
    got = run_study(quick_config(data), tmp_path / "run", device="cuda")
    want = local_run[1]
    assert len(got["images"]) == len(want["images"]) and len(got["regions"]) == len(want["regions"])
    np.testing.assert_allclose(sorted_table(got["images"])["cosine"], sorted_table(want["images"])["cosine"],
                               atol=1e-4)


@needs_gpu
def test_leam_and_embed_follow_the_net_to_the_gpu(dlib_resnet_model) -> None:
    """CPU inputs go to the net's device; embeddings come back as NumPy; maps match the CPU's."""
    from leam.maps import LEAM

    model = dlib_resnet_model
    chips = np.random.default_rng(0).integers(0, 256, (2, 150, 150, 3), dtype=np.uint8)
    ref = torch.randn(2, 128, generator=torch.Generator().manual_seed(0))
    layers = list(model.spec.default_layers)
    want_emb, want = model.embed(chips), LEAM(model.net, layers)(model.chips_to_tensor(chips), ref)
    model.net.to("cuda")
    try:
        assert model.chips_to_tensor(chips).device.type == "cuda"
        got_emb = model.embed(chips)
        got = LEAM(model.net, layers)(torch.from_numpy(chips).permute(0, 3, 1, 2).float(), ref)
    finally:
        model.net.to("cpu")
    np.testing.assert_allclose(got_emb, want_emb, atol=1e-4)
    for layer in layers:
        assert got.maps[layer].device.type == "cuda"
        np.testing.assert_allclose(got.maps[layer].cpu().numpy(), want.maps[layer].numpy(), atol=1e-3)
