"""``leam protect``: change the few pixels of a person's photos the models rely on, so that they no longer
match the person's other photos; write the protected photos and a report."""

from __future__ import annotations

import argparse

from leam.cli._common import add_detector_option, add_face_option, add_trust_option, positive_int, trusted_if_asked
from leam.errors import LeamError
from leam.models import DEFAULT_MODEL, list_models
from leam.models.choice import SPEC, parse_model_args


def add_protect_options(p: argparse.ArgumentParser, face: str = "largest") -> None:
    """Options of the face choice (default ``face``) and the optimiser, shared with ``leam protect-eval``."""
    from leam.protect.optimise import OBJECTIVES, PRECISIONS

    add_face_option(p, default=face)
    add_detector_option(p)

    p.add_argument("--epsilon", type=float, default=255.0, metavar="E",
                   help="largest change of a masked pixel's channel, grey levels 1-255 (default: 255, any content: "
                        "only the number of pixels is limited)")
    p.add_argument("--steps", type=positive_int, default=50, metavar="N", help="projected gradient steps (default: 50)")
    p.add_argument("--step-size", type=float, default=None, metavar="A",
                   help="mean step in grey levels (default: 2.5 x epsilon / steps; decays linearly to 0)")
    p.add_argument("--objective", choices=OBJECTIVES, default="margin",
                   help="margin: distance to the references over each model's threshold (default); cosine")
    p.add_argument("--precision", choices=PRECISIONS, default="float32",
                   help="of the networks while optimising (default: float32; bfloat16 is ~2x faster on CPUs with "
                        "bf16 units; the evaluation always runs in float32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random start and random masks (default: 0)")
    p.add_argument("--jpeg-quality", type=int, default=95, metavar="Q",
                   help="quality of protected JPEG photos (default: 95, no chroma subsampling)")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N", help="torch threads (default: torch's)")


def set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` (when given) to torch."""
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)


def protect_config(args: argparse.Namespace):
    from leam.protect.core import ProtectConfig

    try:
        return ProtectConfig(epsilon=args.epsilon, steps=args.steps, step_size=args.step_size, seed=args.seed,
                             jpeg_quality=args.jpeg_quality, objective=args.objective,
                             precision=args.precision)
    except ValueError as exc:
        raise LeamError(str(exc)) from None


def method_help(role: str | None = None) -> str:
    """"name: label" of each registered protection method (of ``role``), for the options' help."""
    from leam.protect.methods import list_methods, method_spec

    return "; ".join(f"{m}: {method_spec(m).label}" for m in list_methods(role))


def add_parser(sub: argparse._SubParsersAction) -> None:
    from leam.protect.methods import list_methods

    p = sub.add_parser("protect", help="protect one person's photos against face recognition, guided by LEAM")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="photos of one person (JPEG, PNG, TIFF, BMP, WebP)")
    p.add_argument("--models", nargs="+", default=[DEFAULT_MODEL], metavar="MODEL",
                   help=f"the ensemble to optimise against (default: {DEFAULT_MODEL}; "
                        f"known: {', '.join(list_models())}), and model files as {SPEC}")
    p.add_argument("--budget", type=float, default=1.0, metavar="P",
                   help="pixels to change, percent of the face box (default: 1)")
    p.add_argument("--mask", choices=list_methods("mask"), default="leam",
                   help=f"which pixels to change, and how (default: leam): {method_help('mask')}")
    p.add_argument("--reference", nargs="+", default=None, metavar="PHOTO",
                   help="photos of the person to protect against (default: each photo against the others given)")
    p.add_argument("--baselines", action="store_true",
                   help=f"also the baselines, at the same budget: {method_help('baseline')}")
    p.add_argument("--eval-models", nargs="+", default=None, metavar="MODEL",
                   help="models to evaluate with, names or NAME=PATH[:PRESET] (default: every registered model whose "
                        "weights are installed)")
    add_protect_options(p, face="only")  # as explain and study: a photo of several people names its face
    add_trust_option(p)
    p.add_argument("--out", default="protect-out", help="output folder (default: protect-out)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from leam.protect.api import protect_files
    from leam.report.protect import write_protect_report

    set_threads(args)
    models, evals = parse_model_args(args.models), parse_model_args(args.eval_models or [])
    files = " ".join(dict.fromkeys(c.path for c in models + evals if c.is_file)) or None
    with trusted_if_asked(args, files):
        result = protect_files(args.images, models, args.out, budget=args.budget, mask=args.mask,
                               references=args.reference, baselines=args.baselines, eval_models=evals or None,
                               face=args.face, config=protect_config(args),
                               detector=args.detector)
    page = write_protect_report(result, args.out)
    for line in result.lines():
        print(line)
    print(f"wrote {len(result.outputs)} protected photo(s) to {args.out}/, report {page}")
    return 0
