"""Memory and time of ``leam report`` as a run grows: the run, and the same run with every table repeated
``--times`` times under new identity names (issue 17, part 1).

Method: the repeated run is built here from a finished run (``--run``, default ``make demo``'s
``demo-out/study``): its ``run.json`` copied, its ``parts/`` linked (the report reads the example maps from
there), and each table of ``tables/`` written ``--times`` times, copy k ≥ 1 with `` ~k`` appended to every
identity name, a row group at a time, with a fresh ``checksums.json``. Then ``leam report`` runs on both,
each in a new process that prints its own peak resident memory (``ru_maxrss``) and wall time; with
``--compare DIR`` (another leam checkout, e.g. a git worktree of an older commit), that checkout's report
runs on both too, in the same sweep. The order of the jobs rotates every repeat; the best of
``--repeats`` is kept.

    python benchmarks/report_memory.py --run demo-out/study --times 20
    git worktree add /tmp/before 5028910 && python benchmarks/report_memory.py --compare /tmp/before
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from leam.study.checksums import sealed, sha256_file

IDENTITY_COLUMNS = ("identity", "identity_a", "identity_b")
CHILD = """
import resource, sys, time
import leam
print(leam.__file__, file=sys.stderr)
from leam.report.html import write_report
start = time.perf_counter()
write_report(sys.argv[1], sys.argv[2])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, time.perf_counter() - start)
"""


def repeated_run(source: Path, out: Path, times: int) -> int:
    """``source`` with every table repeated ``times`` times into ``out``; returns the region rows."""
    out.mkdir(parents=True)
    for name in ("run.json", "run.json.bak"):
        if (source / name).exists():
            shutil.copy2(source / name, out / name)
    (out / "parts").symlink_to((source / "parts").resolve())
    (out / "tables").mkdir()
    sizes, sums = {}, {}
    for path in sorted((source / "tables").glob("*.parquet")):
        table = pq.read_table(path)
        target = out / "tables" / path.name
        with pq.ParquetWriter(target, table.schema) as writer:
            for k in range(times):
                copy = table
                for column in IDENTITY_COLUMNS:
                    if k and column in copy.column_names and copy.num_rows:
                        i = copy.column_names.index(column)
                        renamed = pc.binary_join_element_wise(copy.column(column).cast(pa.string()), f" ~{k}", "")
                        copy = copy.set_column(i, column, renamed.cast(copy.schema.field(column).type))
                writer.write_table(copy)
        sizes[target.name], sums[target.name] = target.stat().st_size, sha256_file(target)
    (out / "tables" / "checksums.json").write_bytes(sealed({"files": sizes, "sha256": sums}, indent=1))
    regions = out / "tables" / "regions.parquet"
    return pq.read_metadata(regions).num_rows if regions.exists() else 0


def report(run: Path, out: Path, pythonpath: str | None) -> tuple[float, float]:
    """(peak bytes, seconds) of ``leam report`` on ``run`` in a new process."""
    env = None
    if pythonpath:
        import os

        env = {**os.environ, "PYTHONPATH": pythonpath}
    if out.parent.exists():
        shutil.rmtree(out.parent)
    out.parent.mkdir(parents=True)
    # run from the output folder: the child's first import path is its working folder, which would otherwise
    # put this checkout before --compare's PYTHONPATH
    done = subprocess.run([sys.executable, "-c", CHILD, str(run.resolve()), str(out.resolve())], capture_output=True,
                          text=True, env=env, check=True, cwd=out.parent)
    peak, seconds = done.stdout.split()[-2:]
    return float(peak), float(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("demo-out/study"), help="a finished leam study run")
    parser.add_argument("--times", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--compare", help="another leam checkout to measure side by side (its folder)")
    parser.add_argument("--work", type=Path, help="where to build the repeated run (default: a temporary folder)")
    args = parser.parse_args()
    if not (args.run / "tables" / "checksums.json").exists():
        sys.exit(f"{args.run}: not a finished leam study run (run `make demo` first, or give --run)")
    work = args.work or Path(tempfile.mkdtemp(prefix="leam-report-memory-"))
    big = work / f"x{args.times}"
    if big.exists():
        shutil.rmtree(big)
    rows = repeated_run(args.run, big, args.times)
    base_rows = pq.read_metadata(args.run / "tables" / "regions.parquet").num_rows
    checkouts = {"this checkout": None, **({f"--compare {args.compare}": args.compare} if args.compare else {})}
    jobs = [(who, size, run) for who in checkouts for size, run in (("1x", args.run), (f"{args.times}x", big))]
    best: dict[tuple[str, str], tuple[float, float]] = {}
    for r in range(args.repeats):
        for who, size, run in jobs[r % len(jobs):] + jobs[:r % len(jobs)]:
            peak, seconds = report(run, work / f"report-{len(best)}-{size}" / "report.html", checkouts[who])
            old = best.get((who, size), (float("inf"), float("inf")))
            best[(who, size)] = (min(old[0], peak), min(old[1], seconds))
    print(f"region rows: 1x {base_rows:,}, {args.times}x {rows:,}")
    print(f"{'checkout':<40} {'size':>5} {'peak GB':>8} {'seconds':>8} {'memory ratio':>13} {'time ratio':>11}")
    for who in checkouts:
        one = best[(who, "1x")]
        for size in ("1x", f"{args.times}x"):
            peak, seconds = best[(who, size)]
            print(f"{who:<40} {size:>5} {peak / 1e9:8.2f} {seconds:8.1f} {peak / one[0]:13.2f} "
                  f"{seconds / one[1]:11.2f}")
    print(json.dumps({f"{w} {s}": {"peak_bytes": p, "seconds": t} for (w, s), (p, t) in best.items()}))
    if not args.work:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
