"""``leam`` commands in processes a test can SIGKILL and start again many times.

Each command runs in a process forked from multiprocessing's fork server, which has imported leam
and torch once (a fresh interpreter spends seconds on that); the process then does what the shell
command does (``leam.cli.main.main``), with one torch thread, its stdout and stderr appended to a log
file and, optionally, a limit on the size of the files it writes (``RLIMIT_FSIZE`` with ``SIGXFSZ``
ignored: writes past it fail with ``EFBIG``, as a full disk fails them with ``ENOSPC``).

>>> proc = start_leam(["study", "DATA", "--out", "RUN"], log)      # doctest: +SKIP
>>> proc.kill(); proc.join()                                        # doctest: +SKIP
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import sys
from multiprocessing.process import BaseProcess
from pathlib import Path

_PRELOAD = ["leam.cli.main", "leam.study.run", "leam.models", "leam.parse"]


def _leam(argv: list[str], log: str, max_file_bytes: int | None) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    if max_file_bytes is not None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))
    import torch

    torch.set_num_threads(1)  # two threads stall each other on a busy two-core machine
    from leam.cli.main import main

    sys.exit(main(argv))


def start_leam(argv: list[str], log: Path, max_file_bytes: int | None = None) -> BaseProcess:
    """``leam ARGV`` started in a forked process (``.kill()`` sends SIGKILL; ``.exitcode`` is the status)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    proc = ctx.Process(target=_leam, args=([str(a) for a in argv], str(log), max_file_bytes))
    proc.start()
    return proc


def run_leam(argv: list[str], log: Path, max_file_bytes: int | None = None, timeout: float = 600) -> int:
    """``leam ARGV`` to the end in a forked process; its exit status."""
    proc = start_leam(argv, log, max_file_bytes)
    proc.join(timeout)
    if proc.exitcode is None:
        proc.kill()
        proc.join()
        raise TimeoutError(f"leam {' '.join(map(str, argv))} ran over {timeout} s")
    return proc.exitcode
