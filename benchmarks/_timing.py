"""Interleaved timing shared by the benchmark scripts (run them from the repository root)."""

from __future__ import annotations

import time
from collections.abc import Callable


def measure(cases: dict[str, tuple[Callable, Callable]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per call for each case, interleaved, the order rotating every repeat."""
    names = list(cases)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(warmup + repeats):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            prepare, run = cases[name]
            prepare()
            start = time.perf_counter()
            run()
            elapsed = time.perf_counter() - start
            if i >= warmup:
                times[name].append(elapsed)
    return times
