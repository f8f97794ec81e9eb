"""``leam protect-eval``: how well protection holds over a folder, per budget and model, seen and unseen."""

from __future__ import annotations

import argparse
from pathlib import Path

from leam.cli._common import progress_bar
from leam.cli.protect import add_protect_options, method_help, protect_config, set_threads
from leam.models import list_models
from leam.models.choice import SPEC, file_record, parse_model_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    from leam.protect.methods import list_methods
    from leam.protect.study import ENSEMBLES

    p = sub.add_parser("protect-eval", help="measure protection over a folder <identity>/<images> (resumable)")
    p.add_argument("data", metavar="DATA", help="photos as <identity>/<image files>")
    p.add_argument("--models", nargs="+", required=True, metavar="MODEL",
                   help=f"registered models: the ensembles are drawn from them and every photo is evaluated by "
                        f"all of them (known: {', '.join(list_models())}), and model files as {SPEC}")
    p.add_argument("--budgets", nargs="+", type=float, default=[0.5, 1, 2, 5], metavar="P",
                   help="budgets, percent of the face box's pixels (default: 0.5 1 2 5)")
    p.add_argument("--methods", nargs="+", choices=list_methods(), default=["leam", "random", "black", "dense"],
                   help=f"protections to compare (default: leam random black dense): {method_help()}")
    p.add_argument("--ensembles", choices=ENSEMBLES, default="loo",
                   help="loo: each model left out in turn (default); all: every model; both")
    p.add_argument("--identities", type=int, default=None, metavar="N", help="only N identities (sorted by name)")
    p.add_argument("--offset", type=int, default=0, metavar="K", help="skip the first K identities (default: 0)")
    p.add_argument("--photos", type=int, default=1, metavar="N",
                   help="photos protected per identity, the first by name (default: 1); all are references")
    add_protect_options(p)
    p.add_argument("--out", default="protect-eval", help="run folder (default: protect-eval); rerun to resume")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from leam.protect.study import EvalConfig, run_protect_eval
    from leam.report.protect import write_eval_report

    set_threads(args)
    choices = parse_model_args(args.models)
    config = EvalConfig(
        data=str(Path(args.data).resolve()), models=tuple(c.name for c in choices),
        model_files={c.name: file_record(c) for c in choices if c.is_file}, budgets=tuple(args.budgets),
        methods=tuple(dict.fromkeys(args.methods)), ensembles=args.ensembles, identities=args.identities,
        offset=args.offset, photos=args.photos, face=args.face, detector=args.detector,
        protect=protect_config(args),
    )
    with progress_bar("identities", unit="identity") as progress:
        tables = run_protect_eval(config, args.out, progress)
    page = write_eval_report(args.out)
    print(f"{tables['results']['image'].nunique() if len(tables['results']) else 0} photos protected; "
          f"tables in {Path(args.out) / 'tables'}/, report {page}")
    return 0
