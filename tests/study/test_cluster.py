"""A real two-node Ray cluster on this machine (issue 17): a head node and a worker node, each started with
``ray start`` and its own temporary folder, one CPU each; the study is submitted with ``--address``; the
worker node is killed (SIGKILL to all its processes) once the first unit is done, and the study still
completes, with the tables of an uninterrupted run of the local engine.

About a minute on two cores (most of it starting the nodes)."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from leam.study.run import run_study
from leam.study.store import TABLES, RunStore
from tests.study.conftest import quick_config
from tests.study.test_engines import assert_same_tables, needs_photos

NODE_SECONDS = 90  # a node not up within this long fails the test


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_command() -> Path:
    return Path(sys.executable).with_name("ray")


def start_node(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    """``ray start ... --block`` in a session of its own: the node's processes share its process group."""
    return subprocess.Popen([str(ray_command()), "start", "--block", "--disable-usage-stats", "--num-cpus=1",
                             "--node-ip-address=127.0.0.1", *args], env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (Ray puts a node's worker processes in process groups of their own,
    so the node's group alone is not all of it)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def kill_node(node: subprocess.Popen) -> None:
    """SIGKILL to every process of the node at once, as when its machine is lost."""
    for pid in descendants(node.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    node.wait(timeout=30)


def running_on(node: subprocess.Popen) -> int | None:
    """The process of the node running one of the study's units (Ray titles a worker process after the task it
    runs, ``ray::_ray_execute``); None when none is."""
    for pid in descendants(node.pid):
        try:
            if b"_ray_execute" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    return None


def alive_nodes(address: str, env: dict) -> int:
    code = (f"import ray; ray.init(address={address!r}, logging_level='ERROR'); "
            "print(sum(n['Alive'] for n in ray.nodes()))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    return int(done.stdout.split()[-1]) if done.returncode == 0 and done.stdout.split() else 0


@pytest.fixture
def two_nodes() -> Iterator[tuple[str, subprocess.Popen, dict]]:
    """(address, worker node, environment) of a cluster of two nodes on this machine, torn down afterwards.
    The cluster uses Ray's token authentication (on by default in Ray 2.60): the nodes and the study share
    the token through ``RAY_AUTH_TOKEN`` in their environment."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'leam[ray]'): no cluster to test")
    if not ray_command().exists():
        pytest.skip(f"the ray command is not beside {sys.executable}")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    port = free_port()
    address = f"127.0.0.1:{port}"
    # short folders: Ray's socket paths live under them and must stay under 107 bytes
    folders = [Path(tempfile.mkdtemp(prefix="leam-ray-", dir="/tmp")) for _ in range(2)]
    nodes = []
    try:
        nodes.append(start_node(["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={folders[0]}"],
                                env, folders[0] / "node.log"))
        deadline = time.monotonic() + NODE_SECONDS
        while alive_nodes(address, env) < 1:
            assert time.monotonic() < deadline, (folders[0] / "node.log").read_text()[-2000:]
            time.sleep(2)
        nodes.append(start_node([f"--address={address}", f"--temp-dir={folders[1]}"], env, folders[1] / "node.log"))
        while alive_nodes(address, env) < 2:
            assert time.monotonic() < deadline, (folders[1] / "node.log").read_text()[-2000:]
            time.sleep(2)
        yield address, nodes[1], env
    finally:
        for node in reversed(nodes):
            kill_node(node)
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


def done_units(out: Path) -> list[str]:
    """The units of the work (not the data listing) with a done marker."""
    return [p.parent.name for p in (out / "parts").glob("*/done.json") if not p.parent.name.startswith("data")]


@pytest.mark.slow
@needs_photos
def test_study_completes_when_a_worker_node_dies(two_nodes, three_people: Path, tmp_path: Path) -> None:
    """``leam study --engine ray --address`` (the same settings as ``quick_config``), the worker node killed once
    the first unit is done: the study finishes, every unit done, the tables equal to a local run's."""
    address, worker, env = two_nodes
    want = run_study(quick_config(three_people), tmp_path / "local")
    out = tmp_path / "cluster"
    study = subprocess.Popen(
        [sys.executable, "-m", "leam.cli.main", "study", str(three_people), "--models", "dlib-resnet",
         "--face", "largest", "--pairs", "6", "--occlusion-seeds", "2", "--occlusion-percents", "1", "5",
         "--thresholds", "1", "10", "100",
         "--forwards", "torch", "--engine", "ray", "--address", address, "--workers", "2", "--out", str(out)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600
    while (busy := running_on(worker)) is None and study.poll() is None:  # a unit started there: kill it mid-unit
        assert time.monotonic() < deadline, "the worker node ran no unit in 10 minutes"
        time.sleep(0.05)
    at_kill = len(done_units(out))
    kill_node(worker)
    output, _ = study.communicate(timeout=600)
    assert study.returncode == 0, output[-3000:]
    assert busy is not None and at_kill < 4 and len(done_units(out)) == 4, output[-3000:]  # 3 identities, pairs
    store = RunStore(out)
    writers = {store.marker(u)["pid"] for u in done_units(out)}
    assert busy not in writers  # the unit it was running was done again, by a process of the head node
    got = store.tables()
    assert_same_tables({t: got[t] for t in TABLES}, {t: want[t] for t in TABLES})
