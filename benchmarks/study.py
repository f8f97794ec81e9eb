"""A study end to end on a fixed slice of LFW: photos/s, memory, scaling, profile and EMD cost.

Photos/s and peak memory with 1 and 2 workers, how the time grows with the photos, what dominates
(cProfile), and what EMD costs at each grid and how far its block approximation is from a finer grid
and from Sinkhorn.

The slice is the first identities of ``--lfw`` by name, as many as it takes to reach N photos (links
in a temporary folder). Every run is a fresh ``leam study`` process into a fresh run folder, so it
pays decoding, detection, alignment, parsing, maps, statistics and writing, and model loading.

    python benchmarks/study.py throughput                       # ~100 and ~300 photos, 1 and 2 workers
    python benchmarks/study.py throughput --photos 100 1000 --workers 2
    python benchmarks/study.py throughput --photos all          # all of LFW: hours
    python benchmarks/study.py profile --photos 40              # cProfile of one in-process run
    python benchmarks/study.py emd --pairs 10                   # EMD cost and error by grid
    python benchmarks/study.py --lfw ../shared/data/lfw-demo forwards --photos all   # --forwards torch vs onnxruntime

CPU s is the user + system time of the study's processes (``os.wait4``): on a busy machine it varies
far less than the wall time, though torch threads waiting for each other there add to it. Peak
memory: the largest single process (``ru_maxrss`` from ``os.wait4`` of the study's process, which
covers its waited-for worker processes) and, with psutil installed, the peak of the summed RSS of the
study's process tree, sampled every 0.2 s.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

LFW = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lfw"
STUDY_ARGS = "--models dlib-resnet --face central --occlusion-seeds 1 --pairs 200"  # as the full LFW run


def lfw_slice(lfw: Path, photos: int | None, into: Path) -> tuple[Path, int, int]:
    """The first identities of ``lfw`` by name until ``photos`` photos (all when None), linked into ``into``."""
    root, lfw = into / f"lfw-{photos or 'all'}", lfw.resolve()  # links to absolute paths
    root.mkdir(parents=True, exist_ok=True)
    identities = count = 0
    for person in sorted(p for p in lfw.iterdir() if p.is_dir()):
        if photos is not None and count >= photos:
            break
        files = sorted(f for f in person.iterdir() if f.is_file())
        (root / person.name).mkdir(exist_ok=True)
        for f in files:
            (root / person.name / f.name).symlink_to(f)
        identities, count = identities + 1, count + len(files)
    return root, identities, count


# ------------------------------------------------------------------------------------ throughput

def run_child(data: Path, out: Path, workers: int, study_args: str) -> dict:
    """``leam study`` in a fresh process (timeline of units written by ``_child``); wall time and memory."""
    timeline = out.parent / f"{out.name}.timeline.json"
    cmd = [sys.executable, __file__, "_child", str(data), "--workers", str(workers), "--out", str(out),
           "--timeline", str(timeline), *study_args.split()]
    start = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = {"tree": 0}
    stop = threading.Event()

    def sample() -> None:
        try:
            import psutil
        except ImportError:
            peak["tree"] = None
            return
        root = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
                peak["tree"] = max(peak["tree"], sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.time() - start
    stop.set()
    sampler.join()
    err = proc.stderr.read()
    if status != 0:
        raise SystemExit(f"leam study failed ({status}):\n{err[-3000:]}")
    info = json.loads(timeline.read_text())
    info.update(wall=wall, start=start, cpu=usage.ru_utime + usage.ru_stime, maxrss_mb=usage.ru_maxrss / 1024,
                tree_mb=None if peak["tree"] is None else peak["tree"] / 2**20)
    return info


def study_args(data: Path, out: Path, options: str, *extra: str) -> argparse.Namespace:
    """``leam study DATA --out OUT OPTIONS EXTRA`` parsed by leam's own CLI parser."""
    from leam.cli.main import build_parser

    return build_parser().parse_args(["study", str(data), "--out", str(out), *options.split(), *extra])


def child(argv: list[str]) -> None:
    """In the fresh process: ``leam study``'s config and ``run_study``, with a timeline of the units."""
    t0 = time.time()
    from leam.cli.study import study_config
    from leam.study.run import run_study

    timeline = Path(argv[argv.index("--timeline") + 1])
    del argv[argv.index("--timeline") : argv.index("--timeline") + 2]
    cli = study_args(Path(argv[0]), Path(argv[argv.index("--out") + 1]), " ".join(argv[1:]))
    units: list[tuple[str, float]] = []
    t_call = time.time()
    tables = run_study(study_config(cli), cli.out, workers=cli.workers, engine=cli.engine,
                       device=cli.device, on_unit=lambda u: units.append((u.kind, time.time())))
    explained = int((tables["images"]["role"] == "explained").sum()) if len(tables["images"]) else 0
    timeline.write_text(json.dumps({"t0": t0, "t_call": t_call, "t_end": time.time(), "units": units,
                                    "explained": explained}))


def phases(info: dict) -> dict[str, float]:
    """Seconds: start-up (process start to ``run_study``), each phase (to its last unit), the rest."""
    out = {"start-up": info["t_call"] - info["start"]}
    last = info["t_call"]
    for kind in ("identity", "transfer", "pairs", "population", "faithfulness"):
        ends = [t for k, t in info["units"] if k == kind]
        if ends:
            out[kind] = max(ends) - last
            last = max(ends)
    out["consolidate"] = info["t_end"] - last
    return out


def throughput(args: argparse.Namespace) -> None:
    sizes = [None if p == "all" else int(p) for p in args.photos]
    print(f"leam study on slices of {args.lfw} ({args.study_args}); {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    print(f"{'photos':>6} {'ids':>4} {'workers':>7} {'wall s':>7} {'photos/s':>8} {'CPU s':>7} {'maps':>5} "
          f"{'max proc MB':>11} {'tree MB':>8}   phases (s)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="leam-bench-") as tmp:
        tmp = Path(tmp)
        slices = {n: lfw_slice(args.lfw, n, tmp) for n in sizes}
        runs = [(n, w) for _ in range(args.repeats) for n in sizes for w in args.workers]
        for i, (n, w) in enumerate(runs):
            data, ids, photos = slices[n]
            info = run_child(data, tmp / f"run-{i}", w, args.study_args)
            ph = phases(info)
            rows.append((photos, w, info["wall"], info["cpu"], ph.get("identity", 0.0)))
            tree = "-" if info["tree_mb"] is None else f"{info['tree_mb']:.0f}"
            print(f"{photos:6d} {ids:4d} {w:7d} {info['wall']:7.1f} {photos / info['wall']:8.2f} {info['cpu']:7.1f} "
                  f"{info['explained']:5d} {info['maxrss_mb']:11.0f} {tree:>8}   "
                  + ", ".join(f"{k} {v:.1f}" for k, v in ph.items()), flush=True)
    for w in args.workers:
        for label, col in (("wall", 2), ("CPU", 3), ("identity phase wall", 4)):
            pts = sorted((r[0], r[col]) for r in rows if r[1] == w)
            if len({p for p, _ in pts}) >= 2:
                x, y = np.array(pts, dtype=float).T
                slope, intercept = np.polyfit(x, y, 1)
                resid = np.abs(y - (slope * x + intercept)).max()
                print(f"workers {w}, {label} time = {intercept:6.1f} s + {slope * 1e3:4.0f} ms x photos "
                      f"(largest deviation from the line {resid:.1f} s)")


# ------------------------------------------------------------------------------------- forwards

CLOSE = {"occlusion": "drop", "transfer": "drop", "faithfulness": "cosine"}  # what the forwards engine computes


def forwards_bench(args: argparse.Namespace) -> None:
    """The same study with each ``--forwards`` engine, runs interleaved (the order alternating every repeat),
    each a fresh ``leam study`` process: wall and CPU time, CPU per photo x model and per phase (the units'
    own CPU seconds). With two or more sizes, the marginal CPU per photo x model (the slope of a line through
    the runs: what a photo costs once the per-process costs, model loading and ONNX export, are paid). Then the
    tables and the report's Markdown tables of the last two runs of the largest size compared."""
    from leam.study.store import RunStore

    sizes = [None if p == "all" else int(p) for p in args.photos]
    engines = args.engines
    models = len(study_args(Path("."), Path("."), args.study_args).models)
    print(f"leam study ({args.study_args}) on {args.lfw}, --forwards {' vs '.join(engines)}, {args.workers} "
          f"worker(s); {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    rows: dict[str, list[dict]] = {e: [] for e in engines}
    with tempfile.TemporaryDirectory(prefix="leam-bench-") as tmp:
        tmp = Path(tmp)
        slices = {n: lfw_slice(args.lfw, n, tmp) for n in sizes}
        print(f"{'forwards':>12} {'photos':>6} {'wall s':>7} {'CPU s':>7} {'CPU ms/photo x model':>20}   "
              f"units' CPU s by phase ({models} model(s))")
        last = {}
        for r in range(args.repeats):
            for n in sizes:
                data, _, photos = slices[n]
                for e in engines if r % 2 == 0 else engines[::-1]:
                    out = tmp / f"run-{r}-{n}-{e}"
                    info = run_child(data, out, args.workers, f"{args.study_args} --forwards {e}")
                    by_kind = RunStore(out).timings().groupby("kind")["cpu_seconds"].sum()
                    rows[e].append({"photos": photos, "wall": info["wall"], "cpu": info["cpu"], **by_kind.to_dict()})
                    print(f"{e:>12} {photos:6d} {info['wall']:7.1f} {info['cpu']:7.1f} "
                          f"{info['cpu'] / (photos * models) * 1e3:20.0f}   "
                          + ", ".join(f"{k} {v:.1f}" for k, v in by_kind.items() if k != "data"), flush=True)
                    if e in last:
                        shutil.rmtree(last[e])
                    last[e] = out
        base, other = engines
        for photos in sorted({row["photos"] for row in rows[base]}):
            print(f"\n{photos} photos: ratios {base} / {other} (median over {args.repeats} run(s) each; > 1: {other} "
                  "faster)")
            mine = {e: [row for row in rows[e] if row["photos"] == photos] for e in engines}
            for key in ["wall", "cpu", *[k for k in mine[base][0] if k not in ("photos", "wall", "cpu", "data")]]:
                a, b = (np.median([row.get(key, np.nan) for row in mine[e]]) for e in engines)
                label = {"wall": "wall time", "cpu": "CPU time (all)"}.get(key, f"{key} units' CPU")
                print(f"  {label:<28} {a:8.1f} s / {b:8.1f} s = {a / b:5.2f}")
        if len(sizes) >= 2:
            slopes = {e: np.polyfit([row["photos"] for row in rows[e]], [row["cpu"] for row in rows[e]], 1)
                      for e in engines}
            print(f"\nmarginal CPU per photo x model: {base} {slopes[base][0] / models * 1e3:.0f} ms, {other} "
                  f"{slopes[other][0] / models * 1e3:.0f} ms: {slopes[base][0] / slopes[other][0]:.2f}x; fixed "
                  f"costs (start-up, loading, export, pairs) {slopes[base][1]:.1f} s and {slopes[other][1]:.1f} s")
        compare_runs(last[base], last[other])


def compare_runs(a: Path, b: Path) -> None:
    """The two runs' tables (exactly, or the forwards' own columns within their largest difference) and the
    report's Markdown tables (the figures as printed), the compute-time tables left out."""
    from leam.report import write_report
    from leam.study.store import RunStore

    ta, tb = RunStore(a).tables(), RunStore(b).tables()
    for name in ta:
        x, y = ta[name], tb[name]
        column = CLOSE.get(name)
        same = x.drop(columns=[column] if column in x else []).equals(y.drop(columns=[column] if column in y else []))
        diff = f", max |difference| of {column} {np.abs(x[column] - y[column]).max():.1e}" if column in x else ""
        print(f"  table {name:<13} {len(x):7d} rows: {'identical' if same else 'DIFFERENT'} other columns{diff}")
    for run in (a, b):
        write_report(run, run / "report.html")
    printed = sorted(p.name for p in (a / "report_tables").glob("*.md"))
    cells = differ = 0
    units = []  # the differences of differing numbers, in units of their last printed digit
    for name in printed:
        if "compute" in name or "session" in name:
            continue
        for x, y in zip(*((run / "report_tables" / name).read_text().splitlines() for run in (a, b))):
            for u, v in zip(x.split("|"), y.split("|")):
                cells += 1
                if u != v:
                    differ += 1
                    units.append(_last_digit_units(u.strip(), v.strip()))
                    print(f"    {name}: {u.strip()} vs {v.strip()} in  {x.strip()[:100]}")
    print(f"  report: {len(printed)} Markdown tables, {cells} cells; {differ} differ"
          + (f", by at most {max(units):g} unit(s) of the last printed digit" if units else ""))


def _last_digit_units(u: str, v: str) -> float:
    """|u - v| in units of the last printed digit of two numbers as printed (inf when not numbers)."""
    try:
        decimals = len(u.partition(".")[2])
        return round(abs(float(u) - float(v)) * 10**decimals, 6)
    except ValueError:
        return float("inf")


# --------------------------------------------------------------------------------------- profile

STAGES = [  # (label, file suffix, function): cumulative seconds; they nest as the comments say
    ("decode (load_image)", "leam/image.py", "load_image"),
    ("detect + 5 landmarks (detect_faces)", "leam/face/detect.py", "detect_faces"),
    ("align (warp_to_chip)", "leam/face/align.py", "warp_to_chip"),
    ("parse (LandmarkParser.parse)", "leam/parse/landmarks.py", "parse"),
    ("LEAM maps (LEAM.__call__)", "leam/maps/leam.py", "__call__"),
    ("occlusion (occlusion_drops, its forwards incl.)", "leam/metrics/occlusion.py", "occlusion_drops"),
    ("forwards without gradient (FaceModel.embed: occlusion, refs)", "leam/models/_registry.py", "embed"),
    ("  of occlusion, transfer, curves (leam.models.inference)", "leam/models/inference.py", "__call__"),
    ("region statistics (region_table)", "leam/metrics/regions.py", "region_table"),
    ("transfer (transfer_unit)", "leam/study/units.py", "transfer_unit"),
    ("pairs (pairs_unit)", "leam/study/units.py", "pairs_unit"),
    ("  of which EMD", "leam/metrics/similarity.py", "emd"),
    ("  of which BC", "leam/metrics/similarity.py", "bhattacharyya"),
    ("write parts (RunStore.write_unit)", "leam/study/store.py", "write_unit"),
    ("consolidate tables", "leam/study/store.py", "consolidate"),
    ("model loading (create_model)", "leam/models/_registry.py", "create_model"),
    ("dlib detector loading", "leam/face/detect.py", "_dlib_models"),
    ("dlib 68-point predictor loading", "leam/parse/landmarks.py", "_predictor"),
]


def profile(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="leam-bench-") as tmp:
        data, ids, photos = lfw_slice(args.lfw, args.photos, Path(tmp))
        cli = study_args(data, Path(tmp) / "run", args.study_args)
        from leam.cli.study import study_config
        from leam.study.run import run_study

        config = study_config(cli)
        prof = cProfile.Profile(time.process_time)  # CPU time (all threads): robust on a busy machine
        start, cpu = time.perf_counter(), time.process_time()
        prof.enable()
        tables = run_study(config, cli.out, workers=1)
        prof.disable()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    stats = pstats.Stats(prof)
    explained = int((tables["images"]["role"] == "explained").sum())
    print(f"cProfile (CPU time) of one in-process run: {photos} photos of {ids} identities, {explained} maps, "
          f"{args.study_args}, {args.threads} threads: {wall:.1f} s wall, {cpu:.1f} s CPU "
          f"({cpu / photos:.2f} CPU s per photo)")
    print(f"{'stage (cumulative; indented lines are parts of the line above)':<62} {'CPU s':>7} {'share':>6} "
          f"{'calls':>6}")
    for label, suffix, func in STAGES:
        found = [(v[1], v[3]) for (file, _, name), v in stats.stats.items() if name == func and file.endswith(suffix)]
        if found:
            calls, cum = sum(c for c, _ in found), sum(t for _, t in found)
            print(f"{label:<62} {cum:7.1f} {cum / cpu:6.1%} {calls:6d}")
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(args.top)
    print(f"\ntop {args.top} functions by own time:")
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[-4000:])


# ------------------------------------------------------------------------------------------- EMD

def emd_bench(args: argparse.Namespace) -> None:
    from leam.metrics.similarity import EMD_GRID, emd
    from leam.study.run import run_study

    with tempfile.TemporaryDirectory(prefix="leam-bench-") as tmp:
        data, ids, photos = lfw_slice(args.lfw, args.photos, Path(tmp))
        from leam.cli.study import study_config

        cli = study_args(data, Path(tmp) / "run", args.study_args, "--pairs", "1")
        tables = run_study(study_config(cli), cli.out, workers=1)
        maps = []
        for part in sorted((Path(tmp) / "run" / "parts").glob("identity*/maps.npz")):
            with np.load(part) as npz:
                maps += [npz[k].astype(np.float64) for k in npz.files if k.endswith("/aggregate")]
    rng = np.random.default_rng(0)
    pairs = [tuple(rng.choice(len(maps), 2, replace=False)) for _ in range(args.pairs)]
    print(f"EMD between aggregate maps ({maps[0].shape[0]} px) of {len(maps)} photos "
          f"({len(tables['images'])} images, {ids} identities): {len(pairs)} random pairs; leam's grid is {EMD_GRID}")
    t = time.process_time()
    for a, b in pairs:
        for top in (None, 1.0, 5.0, 10.0):  # what the pairs unit computes per pair (StudyConfig.pair_thresholds)
            emd(maps[a], maps[b], top, grid=EMD_GRID)
    print(f"one study pair's EMDs (full map, top 1, 5, 10 %) at grid {EMD_GRID}: "
          f"{(time.process_time() - t) / len(pairs) * 1e3:.0f} ms (CPU time, as every time here)")
    for top in (None, 5.0):
        reference = {}
        print(f"\n{'full maps' if top is None else f'top {top:g} % pixels'}: exact EMD at each grid "
              f"(error vs exact at grid {args.reference_grid}), Sinkhorn at the same grid (error vs exact there)")
        print(f"{'grid':>5} {'block px':>8} {'CPU ms':>8} {'median |err| px':>15} {'max |err| px':>12} "
              f"{'median rel':>10} {'sinkhorn ms':>11} {'sinkhorn max |err|':>18}")
        for grid in [args.reference_grid, *args.grids]:
            t = time.process_time()
            exact = [emd(maps[a], maps[b], top, grid=grid) for a, b in pairs]
            ms = (time.process_time() - t) / len(pairs) * 1e3
            if grid == args.reference_grid:
                reference = np.array(exact)
                print(f"{grid:5d} {maps[0].shape[0] / grid:8.1f} {ms:8.1f}   (reference: median EMD "
                      f"{np.median(reference):.2f} px)")
                continue
            err = np.abs(np.array(exact) - reference)
            sk = "", ""
            if grid <= args.sinkhorn_max_grid:
                t = time.process_time()
                with np.errstate(divide="ignore"):  # POT takes log(0) of empty blocks in the log domain
                    approx = [emd(maps[a], maps[b], top, grid=grid, method="sinkhorn") for a, b in pairs]
                sk_ms = (time.process_time() - t) / len(pairs) * 1e3
                sk = f"{sk_ms:.1f}", f"{np.abs(np.array(approx) - np.array(exact)).max():.3f}"
            print(f"{grid:5d} {maps[0].shape[0] / grid:8.1f} {ms:8.1f} {np.median(err):15.3f} {err.max():12.3f} "
                  f"{np.median(err / reference):10.2%} {sk[0]:>11} {sk[1]:>18}", flush=True)
    half_diagonal = np.sqrt(2) * (maps[0].shape[0] / EMD_GRID - 1) / 2
    print(f"\nbound at grid {EMD_GRID}: moving each pixel's mass to its block centre moves it at most "
          f"{half_diagonal:.2f} px, so |EMD(grid) - EMD(pixels)| <= {2 * half_diagonal:.2f} px")


# ------------------------------------------------------------------------------------------ main

def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        return child(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=LFW, help="LFW as <identity>/<photos> (default ../shared/data/lfw)")
    parser.add_argument("--study-args", default=STUDY_ARGS, help=f"leam study options (default: {STUDY_ARGS})")
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("throughput", help="photos/s, peak memory and scaling, each run a fresh leam study")
    p.add_argument("--photos", nargs="+", default=["100", "300"], help="slice sizes, or 'all' (default 100 300)")
    p.add_argument("--workers", nargs="+", type=int, default=[1, 2], help="worker counts (default 1 2)")
    p.add_argument("--repeats", type=int, default=1, help="runs of each size and worker count, interleaved")
    p = sub.add_parser("profile", help="cProfile of one in-process run: what dominates")
    p.add_argument("--photos", type=int, default=40)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--top", type=int, default=20, help="functions listed by own time (default 20)")
    p = sub.add_parser("emd", help="EMD cost and approximation error by grid")
    p.add_argument("--photos", type=int, default=40, help="photos whose maps are compared (default 40)")
    p.add_argument("--pairs", type=int, default=10)
    p.add_argument("--grids", nargs="+", type=int, default=[10, 15, 25, 30])
    p.add_argument("--reference-grid", type=int, default=50,
                   help="the finer grid taken as truth (default 50: 3 px blocks; 75 costs minutes per full-map pair)")
    p.add_argument("--sinkhorn-max-grid", type=int, default=15, help="Sinkhorn up to this grid (default 15)")
    p = sub.add_parser("forwards", help="the same study with --forwards torch and onnxruntime, interleaved")
    p.add_argument("--photos", nargs="+", default=["all"],
                   help="slice sizes, or 'all' (default: all; lfw-demo: 120 photos)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--repeats", type=int, default=1, help="runs per engine and size, interleaved (default 1)")
    p.add_argument("--engines", nargs=2, default=["torch", "onnxruntime"])
    args = parser.parse_args()
    if not args.lfw.is_dir():
        raise SystemExit(f"LFW not found at {args.lfw} (--lfw)")
    {"throughput": throughput, "profile": profile, "emd": emd_bench, "forwards": forwards_bench}[args.what](args)


if __name__ == "__main__":
    main()
