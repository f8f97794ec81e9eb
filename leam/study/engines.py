"""Where a study's units run: the engine (this machine's processes, or a Ray cluster) and the device.

Every engine runs the same ``leam.study.worker.execute`` on each unit, which writes the unit's parts into
the run folder atomically and marks it done last; so the run folder, resuming and the consolidated
tables are the same whichever engine did the work.

Every unit computes on one thread (``unit_threads``), whatever the engine, the number of workers or the
machine's cores: floats depend on how many threads a kernel splits its work into (one thread and two
differ in the last digits of maps and embeddings), so a unit's numbers are the same wherever it runs on
one machine. Parallelism comes from running units side by side (``workers``).

- ``local`` (default): in this process, or ``workers`` spawned processes (``leam.study.run``).
- ``ray``: one Ray task per unit. Without ``address`` a local Ray instance with this machine's cores
  is started (and ``workers`` tasks run at once); with ``address``
  (``auto``, ``ray://host:10001``, ...) the tasks go to that cluster, one core each, as many at once
  as it has cores; with ``device`` cuda each task asks for 1 / ``workers`` of a GPU. Every node must
  see the run folder and the data at the same paths (a shared file system) and have leam installed;
  a node that does not see the run folder says so.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from leam.errors import LeamError
from leam.study.worker import UNIT_THREADS, execute, unit_threads  # noqa: F401  (the first and last: re-exported)

ENGINES = ("local", "ray")
RAY_MISSING = "--engine ray needs Ray, which is not installed: pip install 'leam[ray]' (or pip install ray)"
RAY_CLIENT_MISSING = "a ray:// address needs the Ray Client, which is not installed: pip install 'ray[client]'"
RAY_CONNECT_SECONDS = 30  # joining a cluster (--address) gives up after this long


def default_workers() -> int:
    """As many workers as this process may use cores, at most 8 (each holds its own models: 0.3–1 GB)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def check_engine(engine: str, address: str | None = None) -> None:
    """Refuse an unknown engine, an address without Ray, and Ray (or, for a ``ray://`` address, the Ray
    Client) when it is not installed."""
    if engine not in ENGINES:
        raise LeamError(f"expected engine in {ENGINES}, got {engine!r}")
    if address is not None and engine != "ray":
        raise LeamError("--address is the address of a Ray cluster: it needs --engine ray")
    if engine == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise LeamError(RAY_MISSING) from None
    if address is not None and address.startswith("ray://"):
        try:
            import grpc  # noqa: F401  (what Ray's own check for its client imports)
        except ImportError:
            raise LeamError(f"--address {address}: {RAY_CLIENT_MISSING}") from None


def resolve_device(name: str) -> str:
    """"cpu", "cuda", "cuda:N" or "auto" (a GPU when torch sees one) → a torch device string.

    A GPU asked for but not there is refused here, with the reason, before any work starts.
    """
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise LeamError(f"--device: expected cpu, cuda, cuda:N or auto, got {name!r}") from None
    if device.type == "cpu":
        return "cpu"
    if device.type != "cuda":
        raise LeamError(f"--device: expected cpu, cuda, cuda:N or auto, got {name!r}")
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise LeamError(f"--device {name}: torch {torch.__version__} ({build}) sees no CUDA GPU; "
                        "use --device cpu (or auto)")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise LeamError(f"--device {name}: only {torch.cuda.device_count()} CUDA GPU(s) visible")
    return str(device)


# -------------------------------------------------------------------------------------------- Ray

def start_ray(address: str | None = None, timeout: float = RAY_CONNECT_SECONDS) -> None:
    """Start Ray here (no ``address``) or join the cluster at ``address``, once per process.

    Ray itself waits for an unreachable cluster for minutes without a word; here an address where
    nothing answers is refused at once, and a cluster that does not answer within ``timeout`` seconds is
    given up with one line. A ``ray://`` address without the Ray Client says what to install."""
    check_engine("ray", address)
    import ray

    if ray.is_initialized():
        return
    if address is None:
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, logging_level="WARNING",
                 object_store_memory=256 * 2**20)
        return
    _probe(address, timeout)
    _quiet_sigterm_note()
    outcome: dict[str, BaseException | None] = {}

    def join() -> None:
        try:
            ray.init(address=address, logging_level="WARNING")
            outcome["error"] = None
        except Exception as exc:  # handed to the caller below
            outcome["error"] = exc

    thread = threading.Thread(target=join, name="leam-ray-init", daemon=True)
    thread.start()
    thread.join(timeout)
    if "error" not in outcome:
        raise LeamError(f"--address {address}: no Ray cluster answered within {timeout:g} s; check the address "
                        "(`ray status` on the cluster's head node shows it) and that this machine can reach it")
    error = outcome["error"]
    if error is None:
        return
    if "ray[client]" in str(error):
        raise LeamError(f"--address {address}: {RAY_CLIENT_MISSING}") from None
    if isinstance(error, (ConnectionError, TimeoutError, ValueError, RuntimeError)):
        raise LeamError(f"--address {address}: cannot join the Ray cluster ({type(error).__name__}: "
                        f"{' '.join(str(error).split())})") from None
    raise error


def _quiet_sigterm_note() -> None:
    """Ray, joined from a thread other than the main one, warns that it set no SIGTERM handler; the study's
    command handles SIGTERM itself (``leam.cli.study``), so that warning would only mislead."""
    worker_log = logging.getLogger("ray._private.worker")
    if not any(isinstance(f, _NoSigtermNote) for f in worker_log.filters):
        worker_log.addFilter(_NoSigtermNote())


class _NoSigtermNote(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()


def _probe(address: str, timeout: float) -> None:
    """Refuse at once a ``HOST:PORT`` (or ``ray://HOST:PORT``) where nothing accepts a connection; other
    addresses (``auto``, no port) are left to Ray."""
    rest = address.removeprefix("ray://")
    if rest == "auto" or ":" not in rest:
        return
    try:
        where = urlsplit(f"//{rest}")
        host, port = where.hostname, where.port
    except ValueError:
        raise LeamError(f"--address {address}: expected HOST:PORT (or ray://HOST:PORT, or auto)") from None
    if not host or port is None:
        return
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except TimeoutError:
        raise LeamError(f"--address {address}: no answer from {host}:{port} within {timeout:g} s; check the address "
                        "and that this machine can reach it") from None
    except OSError as exc:
        raise LeamError(f"--address {address}: nothing answers at {host}:{port} ({exc.strerror or exc}); start "
                        "the cluster there (`ray start --head`) or give its address") from None


def _ray_execute(root: str, config_dict: dict, unit, device: str):
    """One unit in a Ray worker (a module-level function, so Ray imports it by name on every node)."""
    if not (Path(root) / "run.json").is_file():
        raise LeamError(f"run folder {root} is not visible on Ray node {socket.gethostname()}: --engine ray "
                        "needs the run folder and the data on a file system every node shares")
    return execute(root, config_dict, unit, device)


def ray_units(
    root: str, config_dict: dict, units: list, workers: int, address: str | None = None, device: str = "cpu"
) -> Iterator:
    """Run ``units`` as Ray tasks; yields each unit as its task finishes (a task's error is raised).

    Ray is started on first use (a local instance without ``address``) and left running for the
    next phase; it stops with the process. Tasks still pending when this generator is closed (an
    error, Ctrl-C) are cancelled; a unit cut short leaves no done marker and is redone on resume.
    """
    import ray

    workers = max(1, workers)
    start_ray(address)
    # Each task computes on one thread (``unit_threads``). On this machine's instance a task asks for
    # cores / workers cores, so that ``workers`` tasks run at once; on a cluster (address), one core each.
    node_cpus = max((int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")), default=1)
    cpus = max(1, node_cpus // workers) if address is None else 1
    gpus = 1 / workers if device.startswith("cuda") else 0
    task = ray.remote(_ray_execute).options(num_cpus=cpus, num_gpus=gpus, max_retries=2)
    if gpus:  # Ray shows a task only the GPU it assigned, as cuda:0
        device = "cuda"
    pending = [task.remote(root, config_dict, u, device) for u in units]
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                unit = ray.get(done[0])
            except ray.exceptions.RayTaskError as exc:  # a unit's own error, e.g. a LeamError: as it was raised
                raise (exc.cause if isinstance(exc.cause, LeamError) else exc) from None
            yield unit
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)

