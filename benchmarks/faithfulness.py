"""What deletion and insertion curves cost per photo (``leam.metrics.faithfulness``), on one thread.

Measured side by side in one run: the time to build the curves' images per fill (black, mean, blur,
inpaint), on real aligned chips of ``../shared/data/lfw-demo`` at each model's chip size, with a map-like
ranking (the centre prior: one growing blob) and a random one (scattered pixels), both directions, all of
``FRACTIONS``; the fills interleaved, their order rotating every repeat. Then a model's forward per image
(batch 64, no gradient) and, for a typical setting, how many forwards ``curves`` costs per photo
(``forwards_per_photo``) and what a photo costs in all.

CPU time (``time.process_time``, one thread) is reported: on a shared machine it varies far less than the
wall time.

    python benchmarks/faithfulness.py                          # ~3 minutes on one core
    python benchmarks/faithfulness.py --photos 4 --repeats 5 --model facenet
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from leam.face import align_file  # noqa: E402
from leam.face.templates import ARCFACE_TEMPLATE, DLIB_TEMPLATE, FACENET_TEMPLATE  # noqa: E402
from leam.metrics import faithfulness as F  # noqa: E402

DEMO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lfw-demo"
TEMPLATES = {"arcface 112": ARCFACE_TEMPLATE, "dlib 150": DLIB_TEMPLATE, "facenet 160": FACENET_TEMPLATE}
MEAN = (127.5, 127.5, 127.5)


def chips(template, n: int) -> list[np.ndarray]:
    people = sorted(p for p in DEMO.iterdir() if p.is_dir())
    return [align_file(sorted(p.glob("*.jpg"))[0], template, largest_face=True).chip for p in people[:n]]


def build_times(faces: list[np.ndarray], repeats: int) -> dict[str, dict[str, float]]:
    """Per fill: CPU ms per image (median over repeats) per ranking kind and direction, and over all four."""
    shape = faces[0].shape[:2]
    orders = {"map": F.pixel_order(F.centre_prior(shape)), "random": F.random_order(shape, np.random.default_rng(0))}
    cells = [(kind, d) for kind in orders for d in F.DIRECTIONS]
    per: dict[str, dict[tuple[str, str], list[float]]] = {fill: {c: [] for c in cells} for fill in F.FILLS}
    fills = list(F.FILLS)
    for i in range(repeats + 1):  # the first round warms up
        shift = i % len(fills)
        for fill in fills[shift:] + fills[:shift]:
            for kind, direction in cells:
                start = time.process_time()
                n = sum(len(F.curve_images(chip, orders[kind], F.FRACTIONS, direction, fill, MEAN)) for chip in faces)
                if i:
                    per[fill][(kind, direction)].append((time.process_time() - start) * 1000 / n)
    return {fill: {**{f"{k} {d[:3]}": statistics.median(v) for (k, d), v in by.items()},
                   "all": statistics.median([sum(t) / len(t) for t in zip(*by.values())])}
            for fill, by in per.items()}


def forward_ms(model_name: str, repeats: int) -> tuple[float, tuple[int, int]] | None:
    """CPU ms per image of one model's forward (batch 64, no gradient, one thread) and its chip size, or None."""
    try:
        import torch

        from leam.models import create_model
    except ImportError:
        return None
    torch.set_num_threads(1)
    try:
        model = create_model(model_name)
    except Exception as exc:  # noqa: BLE001 - a benchmark reports what is missing and goes on
        print(f"({model_name}: {exc})")
        return None
    h, w = model.spec.input_size
    batch = np.random.default_rng(0).integers(0, 256, (64, h, w, 3), dtype=np.uint8)
    model.embed(batch[:8])
    times = []
    for _ in range(repeats):
        start = time.process_time()
        model.embed(batch, batch_size=64)
        times.append((time.process_time() - start) * 1000 / 64)
    return statistics.median(times), (h, w)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=2, help="chips per size (one per lfw-demo person)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="dlib-resnet", help="the model whose forward is timed")
    parser.add_argument("--methods", type=int, default=12, help="rankings per photo in the typical setting")
    args = parser.parse_args()

    print(f"images per curve: {len(F.FRACTIONS)} fractions; ranking 'map' = centre prior (one blob), "
          f"'random' = scattered; both directions; {args.photos} lfw-demo chips; CPU ms per image, one thread")
    print("\n| chip | fill | map del | map ins | random del | random ins | all | / black |")
    print("|---|---|---|---|---|---|---|---|")
    costs: dict[str, dict[str, float]] = {}
    for label, template in TEMPLATES.items():
        t = build_times(chips(template, args.photos), args.repeats)
        costs[label] = {fill: v["all"] for fill, v in t.items()}
        for fill, v in t.items():
            cells = " | ".join(f"{v[c]:.2f}" for c in ("map del", "map ins", "random del", "random ins", "all"))
            print(f"| {label} | {fill} | {cells} | {v['all'] / t['black']['all']:.0f}x |")

    timed = forward_ms(args.model, args.repeats)
    n_m = args.methods
    print(f"\nforwards per photo (no gradient; the chip's own embedding given), {n_m} rankings, "
          f"{len(F.FRACTIONS)} fractions, both directions:")
    for fills in (("black",), F.FILLS):
        print(f"  fills {', '.join(fills)}: {F.forwards_per_photo(n_m, fills, base=True)}")
    if timed is not None:
        fwd, size = timed
        print(f"\n{args.model} forward: {fwd:.1f} CPU ms per image (batch 64, one thread)")
        label = next((k for k, v in TEMPLATES.items() if tuple(v.size) == size), None)
        if label:
            n_fill = n_m * 2 * (len(F.FRACTIONS) - 1)
            for fills in (("black",), F.FILLS):
                build = sum(costs[label][f] * n_fill for f in fills) / 1000
                forwards = F.forwards_per_photo(n_m, fills, base=True) * fwd / 1000
                print(f"  per photo, fills {', '.join(fills)}: {forwards:.1f} s forwards + {build:.1f} s images "
                      f"= {forwards + build:.1f} CPU s")


if __name__ == "__main__":
    main()
