"""Which map choices make LEAM's top pixels matter most? (issue 5: settle the default direction and
find the layers, aggregation and reference that maximise the occlusion drop.)

Runs one study per choice over a dataset (resumable: each is a ``leam study`` run folder under
``--out``), occluding the top-p % pixels of every layer's map and of the aggregate, then prints the
drop at each p and its ratio to random pixels and to random pixels inside the face::

    python experiments/map_choices.py ../shared/data/lfw-demo --out map-choices
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from leam.cli.study import phase_bars
from leam.study.config import StudyConfig
from leam.study.run import run_study
from leam.study.stats import occlusion_summary

CHOICES = {  # name: (direction, reference, aggregation)
    "loss/baseline/mean": ("loss", "baseline", "mean"),
    "similarity/baseline/mean": ("similarity", "baseline", "mean"),
    "loss/mean/mean": ("loss", "mean", "mean"),
    "similarity/mean/mean": ("similarity", "mean", "mean"),
    "loss/baseline/max": ("loss", "baseline", "max"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("--models", nargs="+", default=["dlib-resnet", "facenet", "facenet-keras"])
    ap.add_argument("--choices", nargs="+", default=list(CHOICES), choices=list(CHOICES))
    ap.add_argument("--face", default="central")
    ap.add_argument("--seeds", type=int, default=2, help="random masks per photo, p and kind")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", default="map-choices")
    args = ap.parse_args()

    frames = []
    for name in args.choices:
        direction, reference, aggregation = CHOICES[name]
        config = StudyConfig(
            data=str(Path(args.data).resolve()), models=tuple(args.models), direction=direction,
            reference=reference, aggregation=aggregation, face=args.face, occlusion_seeds=args.seeds,
            occlusion_layers=("all",), transfer=False, pairs=0, pair_thresholds=(1,),
        )
        print(f"== {name}", flush=True)
        with phase_bars() as progress:
            tables = run_study(config, Path(args.out) / name.replace("/", "_"), workers=args.workers, progress=progress)
        frames.append(occlusion_summary(tables["occlusion"]).assign(choice=name))
    summary = pd.concat(frames, ignore_index=True)
    summary.to_csv(Path(args.out) / "summary.csv", index=False)
    cols = ["model", "choice", "layer", "percent", "images", "map_mean", "random_mean", "random_face_mean",
            "ratio_random", "ratio_random_face"]
    pd.set_option("display.width", 200)
    pd.set_option("display.max_rows", 1000)
    at1 = summary[summary["percent"] == 1.0].sort_values(["model", "ratio_random_face"], ascending=[True, False])
    print("\nTop-1 % occlusion, best choices first (per model):")
    print(at1[cols].groupby("model").head(8).round(4).to_string(index=False))
    agg = summary[summary["layer"] == "aggregate"].pivot_table(
        index=["model", "choice"], columns="percent", values="ratio_random_face", sort=False)
    print("\nAggregate map, drop / random-in-face drop, per p:")
    print(agg.round(3).to_string())


if __name__ == "__main__":
    main()
