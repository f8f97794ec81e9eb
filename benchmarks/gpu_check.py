"""One short check for a lent GPU: a small study with ``--device cuda`` against the same study on the CPU.

Runs the study (``--models``, default the registered models whose weights are installed) over the first
``--people`` identities of ``--data`` (photos linked, not copied) twice: on the CPU and with ``device="cuda"``,
each in this process, timed. Then compares the tables row for row (sorted by their keys) within stated
tolerances and prints photos × models per second on each device and the speed-up. Where torch sees no CUDA
GPU it says so in one line and exits 0.

    python benchmarks/gpu_check.py                              # ../shared/data/lfw-demo, 6 people
    python benchmarks/gpu_check.py --people 20 --workers 4

Tolerances (GPU kernels round differently from CPU ones; a map's top-p % pixels can change at ties):
embeddings' cosine to the reference 1e-4, occlusion and transfer drops 2e-3, region values (shares, masses)
0.02 in mean absolute difference, pair BC 0.02 and EMD 0.5 pixel in mean absolute difference.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "lfw-demo"
TOLERANCES = {  # table: (column, tolerance, how): "max" = largest difference, "mean" = mean absolute difference
    "images": [("cosine", 1e-4, "max")],
    "occlusion": [("drop", 2e-3, "max")],
    "transfer": [("drop", 2e-3, "max")],
    "regions": [("value", 0.02, "mean")],
    "pairs": [("bc", 0.02, "mean"), ("emd", 0.5, "mean")],
}


def installed_models() -> list[str]:
    """The registered models whose default weights are installed."""
    from leam.models import default_weights_path, list_models

    return [m for m in list_models() if default_weights_path(m) is not None]


def linked(data: Path, people: int, photos: int, into: Path) -> Path:
    for person in sorted(p for p in data.iterdir() if p.is_dir())[:people]:
        (into / person.name).mkdir(parents=True)
        for photo in sorted(person.iterdir())[:photos]:
            (into / person.name / photo.name).symlink_to(photo.resolve())
    return into


def compare(cpu: dict[str, pd.DataFrame], gpu: dict[str, pd.DataFrame]) -> list[tuple[str, float, float, bool]]:
    """(table.column, difference, tolerance, within) for every checked column."""
    out = []
    for table, checks in TOLERANCES.items():
        a, b = cpu.get(table, pd.DataFrame()), gpu.get(table, pd.DataFrame())
        if a.empty and b.empty:
            continue
        if len(a) != len(b):
            out.append((f"{table} rows", abs(len(a) - len(b)), 0, False))
            continue
        # identifying columns only (text, and the settings a row is for), never measured values
        keys = [c for c in a.columns if len(a) and a[c].map(lambda v: isinstance(v, str)).all()]
        keys += [c for c in ("percent", "threshold", "seed", "array_index") if c in a.columns]
        a, b = (t.sort_values(keys, kind="stable").reset_index(drop=True) for t in (a, b))
        for column, tolerance, how in checks:
            if column not in a:
                continue
            d = np.abs(a[column].to_numpy(float) - b[column].to_numpy(float))
            d = d[np.isfinite(d)]
            diff = float(d.max() if how == "max" else d.mean()) if len(d) else 0.0
            out.append((f"{table}.{column} ({how})", diff, tolerance, diff <= tolerance))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--people", type=int, default=6)
    parser.add_argument("--photos", type=int, default=3)
    parser.add_argument("--models", nargs="+")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        print(f"no CUDA GPU visible to torch {torch.__version__} ({build}): nothing to check")
        return 0
    if not args.data.is_dir():
        print(f"{args.data}: no such folder (give --data)")
        return 2
    from leam.study.config import StudyConfig
    from leam.study.run import run_study

    models = tuple(args.models or installed_models())
    with tempfile.TemporaryDirectory(prefix="leam-gpu-check-") as tmp:
        data = linked(args.data, args.people, args.photos, Path(tmp) / "data")
        config = StudyConfig(data=str(data), models=models, face="largest", pairs=20, occlusion_seeds=1,
                             forwards="torch")
        tables, seconds = {}, {}
        for device in ("cpu", "cuda"):
            start = time.perf_counter()
            run = run_study(config, Path(tmp) / device, workers=args.workers, device=device)
            seconds[device] = time.perf_counter() - start
            tables[device] = {name: run[name] for name in run}
        explained = int((tables["cpu"]["images"]["role"] == "explained").sum())
        print(f"{torch.cuda.get_device_name(0)}; models {', '.join(models)}; {explained} photo × model maps")
        for device in ("cpu", "cuda"):
            print(f"  {device:>4}: {seconds[device]:7.1f} s, {explained / seconds[device]:6.2f} photo × models/s")
        print(f"  speed-up: {seconds['cpu'] / seconds['cuda']:.2f}x (includes loading models once per run)")
        results = compare(tables["cpu"], tables["cuda"])
        for name, diff, tolerance, ok in results:
            print(f"  {'ok  ' if ok else 'FAIL'} {name}: {diff:.3g} (tolerance {tolerance:g})")
    return 0 if all(ok for *_, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
