"""``leam demo``: explain every photo of a folder ``<identity>/<images>`` against another of the person."""

from __future__ import annotations

import argparse
from pathlib import Path

from leam.cli._common import (
    add_detector_option,
    add_face_option,
    add_map_options,
    add_model_options,
    add_parser_options,
    check_detector,
    load_model,
    load_parser,
    positive_int,
    progress_bar,
    resolve_layer_args,
)
from leam.study.demo import run_demo


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="explain a whole folder <identity>/<image files> into an HTML index")
    p.add_argument("data", metavar="FOLDER", help="photos laid out as <identity>/<image files>")
    add_model_options(p)
    add_parser_options(p)
    p.add_argument("--layers", nargs="+", metavar="LAYER", help="layer names, or 'all'")
    add_map_options(p)
    p.add_argument("--limit", type=positive_int, default=None, metavar="N", help="explain at most N photos")
    add_face_option(p, default="largest")
    add_detector_option(p)
    p.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model = load_model(args)
    check_detector(args.detector, [model])
    layers = resolve_layer_args(model, args.layers)
    parser = load_parser(args)
    with progress_bar("explaining") as progress:
        items = run_demo(model, args.data, args.out, layers, args.direction, args.limit, args.face, progress, parser,
                         detector=args.detector, aggregation=args.aggregate)
    failed = sum(1 for i in items if i.error)
    print(f"explained {len(items) - failed} photos ({failed} failed); open {Path(args.out) / 'index.html'}")
    return 0
