"""``leam verify``: face-verification accuracy of models on same/different pairs of a folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from leam._paths import check_outputs, claim_outputs
from leam.cli._common import (
    add_detector_option,
    add_face_option,
    add_trust_option,
    check_detector,
    load_choices,
    load_model,
    non_negative_int,
    positive_int,
    progress_bar,
)
from leam.errors import ModelError
from leam.metrics.verification import N_FOLDS
from leam.models import DEFAULT_MODEL, list_models
from leam.models.choice import SPEC, parse_model_args
from leam.report.verification import REPORT_FILES, format_table, write_verification
from leam.study.verification import run_verify


def add_parser(sub: argparse._SubParsersAction) -> None:
    from leam.models.external import PRESETS

    p = sub.add_parser("verify", help="verification accuracy of models on same/different pairs of a folder")
    p.add_argument("data", metavar="FOLDER", help="photos laid out as <identity>/<image files>")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", "--models", nargs="+", default=[DEFAULT_MODEL], metavar="MODEL",
                       help=f"one or more model names (of: {', '.join(list_models())}) or model files as {SPEC}, "
                            "e.g. mine=w600k_r50.onnx:arcface")
    which.add_argument("--model-file", metavar="PATH", default=None, help="an ONNX or TorchScript model file")
    p.add_argument("--preset", choices=list(PRESETS), default=None, help="with --model-file: how to feed it")
    p.add_argument("--weights", default=None, help="weight file of the one --model (default: installed)")
    add_trust_option(p)
    p.add_argument("--pairs", type=positive_int, default=3000, metavar="N",
                   help=f"same-person pairs, and as many different-person pairs (default: 3000; the {N_FOLDS}-fold "
                        f"accuracy needs at least {N_FOLDS} of each)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the pair draw (default: 0)")
    add_face_option(p, default="largest")  # LFW photos often show people behind the subject
    add_detector_option(p)
    p.add_argument("--batch-size", type=positive_int, default=32, metavar="N",
                   help="photos per forward pass (default: 32)")
    p.add_argument("--out", default="verify-out", help="output folder (default: verify-out)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.model_file:
        models = [load_model(args)]
    else:
        choices = parse_model_args(args.model)
        if args.weights and (len(choices) > 1 or choices[0].is_file):
            raise ModelError("--weights goes with a single --model (a registered one; a file holds its weights)")
        if args.preset:
            raise ModelError("--preset goes with --model-file; give a file model's preset as NAME=PATH:PRESET")
        models = [load_choices(args, [c])[0] if c.is_file
                  else load_model(argparse.Namespace(**{**vars(args), "model": c.name})) for c in choices]
    check_detector(args.detector, models)
    outputs = check_outputs([Path(args.out) / name for name in REPORT_FILES])  # nothing replaced (leam._paths)
    with progress_bar("embedding") as progress:
        report = run_verify(models, args.data, args.pairs, args.seed, args.face, args.batch_size, progress,
                            args.detector)
    claim_outputs(outputs)
    paths = write_verification(report, args.out)
    print(format_table(report))
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0
