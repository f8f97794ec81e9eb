"""``leam study``: identities × photos × models × layers over a whole folder, resumable."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pandas as pd

from leam._io import shown
from leam.cli._common import (
    add_detector_option,
    add_face_option,
    add_map_options,
    non_negative_int,
    positive_int,
    progress_bar,
    workers_count,
)
from leam.errors import LeamError
from leam.metrics.regions import DEFAULT_THRESHOLDS
from leam.models import DEFAULT_MODEL, list_models
from leam.models.choice import SPEC, file_record, parse_model_args
from leam.models.inference import FORWARDS
from leam.study.config import DEFAULT_FILLS, FILLS, REFERENCES, StudyConfig
from leam.study.engines import ENGINES
from leam.study.run import default_forwards, default_map, run_study


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="run (or resume) a study over a folder <identity>/<images>")
    p.add_argument("data", metavar="DATA", help="photos as <identity>/<image files>, optionally with manifest.csv")
    p.add_argument("--models", nargs="+", default=[DEFAULT_MODEL], metavar="MODEL",
                   help=f"registered models (default: {DEFAULT_MODEL}; known: {', '.join(list_models())}) and model "
                        f"files as {SPEC}, e.g. mine=w600k_r50.onnx:arcface (ONNX or TorchScript)")
    p.add_argument("--layers", nargs="+", default=[], metavar="MODEL=L1,L2",
                   help="layers per model, e.g. dlib-resnet=stem,stage2.block1 (default: each model's 9)")
    p.add_argument("--reference", choices=REFERENCES, default="baseline",
                   help="baseline: each identity's first photo; mean: the mean of the other photos")
    add_map_options(p, resumed=True)
    p.add_argument("--parser", default="landmarks", help="face parser for the region statistics")
    p.add_argument("--thresholds", nargs="+", type=float, default=list(DEFAULT_THRESHOLDS), metavar="P")
    p.add_argument("--occlusion-percents", nargs="+", type=float, default=[0.5, 1, 2, 5], metavar="P",
                   help="black out the map's top-p %% pixels (and as many random ones) for these p")
    p.add_argument("--occlusion-seeds", type=positive_int, default=5, help="random masks per photo and p")
    p.add_argument("--occlusion-layers", nargs="+", default=["aggregate"], metavar="LAYER",
                   help="maps whose top pixels are occluded: layer names, 'aggregate' (default) or 'all'")
    p.add_argument("--pairs", type=non_negative_int, default=200,
                   help="same-identity map pairs per model (and as many different); 0: none")
    p.add_argument("--no-transfer", action="store_true", help="skip occluding each model with the others' maps")
    add_face_option(p)
    add_detector_option(p)
    p.add_argument("--faithfulness", action="store_true",
                   help="deletion and insertion curves of LEAM's maps, rival methods and baselines (adding it to a "
                        "finished run adds only this phase)")
    p.add_argument("--fills", nargs="+", choices=FILLS, default=list(DEFAULT_FILLS), metavar="FILL",
                   help=f"what deleted pixels show: {', '.join(FILLS)} (default: {' '.join(DEFAULT_FILLS)}; "
                        "inpaint costs ~0.1-1 s per image)")
    p.add_argument("--faithfulness-identities", type=positive_int, default=50, metavar="N",
                   help="identities scored per model, a seeded sample of those with enough photos (default 50)")
    p.add_argument("--faithfulness-photos", type=positive_int, default=1, metavar="N",
                   help="explained photos scored per sampled identity (default 1)")
    p.add_argument("--forwards", choices=FORWARDS, default=None,
                   help="what computes the forwards that need no gradient (occlusion, transfer, faithfulness curves; "
                        "LEAM's maps are always PyTorch's): onnxruntime (the net exported to ONNX, checked against "
                        "PyTorch) or torch; default: the run's own when resuming, else onnxruntime when installed")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--workers", type=workers_count, default="auto", metavar="N|auto",
                   help="units run side by side in N processes, each on one core (default auto: one per core, "
                        "at most 8; each holds its own models)")
    p.add_argument("--engine", choices=ENGINES, default="local",
                   help="local: this machine's processes; ray: a Ray task per unit (pip install 'leam[ray]')")
    p.add_argument("--address", default=None,
                   help="with --engine ray: a Ray cluster's address (e.g. auto); default: start Ray here")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, or auto (cuda when there is a GPU)")
    p.add_argument("--out", default="leam-study", help="run folder (default: leam-study); rerun to resume")
    p.set_defaults(func=run)


def parse_layers(specs: list[str]) -> dict[str, tuple[str, ...]]:
    """``["M=a,b", ...]`` → ``{"M": ("a", "b")}``; the names are checked by ``StudyConfig.check`` (none
    empty) and against the model by ``run_study``."""
    out = {}
    for spec in specs:
        model, sep, names = spec.partition("=")
        if not sep or not names:
            raise LeamError(f"--layers expects MODEL=L1,L2,..., got {spec!r}")
        if model in out:
            raise LeamError(f"--layers: {model} given twice; give each model's layers once, as {model}=L1,L2")
        out[model] = tuple(names.split(","))
    return out


def study_config(args: argparse.Namespace) -> StudyConfig:
    """The study's settings from ``leam study``'s arguments."""
    choices = parse_model_args(args.models)
    direction, aggregation = default_map(args.out)
    return StudyConfig(
        data=str(Path(args.data).resolve()),
        models=tuple(c.name for c in choices),
        model_files={c.name: file_record(c) for c in choices if c.is_file},
        layers=parse_layers(args.layers),
        reference=args.reference,
        direction=args.direction or direction,
        aggregation=args.aggregate or aggregation,
        parser=args.parser,
        thresholds=tuple(args.thresholds),
        occlusion_percents=tuple(args.occlusion_percents),
        occlusion_seeds=args.occlusion_seeds,
        occlusion_layers=tuple(args.occlusion_layers),
        pairs=args.pairs,
        transfer=not args.no_transfer,
        face=args.face,
        detector=args.detector,
        seed=args.seed,
        faithfulness=args.faithfulness,
        fills=tuple(args.fills),
        faithfulness_identities=args.faithfulness_identities,
        faithfulness_photos=args.faithfulness_photos,
        forwards=args.forwards or default_forwards(args.out),
    )


def run(args: argparse.Namespace) -> int:
    config = study_config(args)
    with first_interrupt_only(), phase_bars() as progress:
        tables = run_study(config, args.out, workers=args.workers, engine=args.engine, address=args.address,
                           device=args.device, progress=progress,
                           notify=lambda line: print(shown(line), file=sys.stderr))
    images = tables["images"]
    explained = int((images["role"] == "explained").sum()) if len(images) else 0
    print(shown(f"{explained} photo × model maps, {failure_summary(tables['failures'])}; tables in "
                f"{Path(args.out) / 'tables'}/ (run `leam report {args.out}` for the report)"))
    return 0


@contextmanager
def phase_bars() -> Iterator[Callable[[str, int, int], None]]:
    """A ``progress(label, done, total)`` callback for ``run_study`` drawing one bar per phase (``progress_bar``),
    each closed when the next phase starts, and the last on every path."""
    with ExitStack() as bars:
        current, update = None, None

        def progress(label: str, done: int, total: int) -> None:
            nonlocal current, update
            if label != current:
                bars.close()
                current, update = label, bars.enter_context(progress_bar(label, unit="unit"))
            update(done, total)

        yield progress


def failure_summary(failures: pd.DataFrame, top: int = 3) -> str:
    """How many failures, and the most common reasons with their counts: a problem that hits every photo
    (a broken model or parser) shows at once."""
    if not len(failures):
        return "0 failures recorded"
    counts = failures.groupby(["stage", "reason"], sort=True).size().sort_values(ascending=False, kind="stable")
    common = "; ".join(f"{n} × {stage}: {_short(reason)}" for (stage, reason), n in counts.head(top).items())
    rest = f"; {len(counts) - top} other reasons" if len(counts) > top else ""
    return f"{len(failures)} failures recorded ({common}{rest})"


def _short(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@contextmanager
def first_interrupt_only() -> Iterator[None]:
    """Within the block the first Ctrl-C (SIGINT) or SIGTERM raises ``KeyboardInterrupt`` and every later
    one is ignored: stopping (cancelling units, ending the workers) then runs to its end and the command
    exits with one line (status 130), however often it is signalled. The handlers are restored after a
    block that was not interrupted."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stops = (signal.SIGINT, signal.SIGTERM)
    hit = []

    def interrupted(_signum: int, _frame: object) -> None:
        hit.append(True)
        for s in stops:
            signal.signal(s, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, interrupted) for s in stops}
    try:
        yield
    finally:
        if not hit:  # after a signal the command is ending: later ones stay ignored
            for s, handler in previous.items():
                signal.signal(s, handler)
