"""``leam person``: what sets one person apart — the consensus of a folder of their photos, a study's population
prior, the specific map between them, and the face regions of each."""

from __future__ import annotations

import argparse
from pathlib import Path

from leam._paths import check_outputs, claim_outputs
from leam.cli._common import (
    add_detector_option,
    add_face_option,
    add_map_options,
    add_parser_options,
    check_detector,
    load_parser,
    resolve_layer_args,
    trusted_if_asked,
)
from leam.metrics.regions import check_thresholds

FILES = ("consensus.png", "prior.png", "specific.png", "regions.csv")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("person", help="what sets one person apart: consensus, a study's prior, the specific map")
    p.add_argument("folder", metavar="FOLDER", help="a folder of photos of one person (at least 2 with a face)")
    p.add_argument("--prior", required=True, metavar="RUN",
                   help="a `leam study` run of the same model, layers, direction and aggregation: its population "
                        "prior (with --faithfulness: its population unit and its validation of the specific map)")
    p.add_argument("--model", default=None, help="one of the run's models (default: its only one)")
    add_parser_options(p)
    p.add_argument("--layers", nargs="+", metavar="LAYER", help="layer names, or 'all' (default: the model's 9)")
    add_map_options(p)
    p.add_argument("--thresholds", nargs="+", type=float, default=[1.0, 5.0, 10.0], metavar="P",
                   help="top-p %% thresholds of the region shares (default: 1 5 10)")
    add_face_option(p)
    add_detector_option(p)
    p.add_argument("--out", default="leam-person", help="output folder (default: leam-person)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from leam.study.person import check_run_matches, explain_person, folder_photos, run_model, run_prior

    check_thresholds(args.thresholds, "--thresholds")
    photos = folder_photos(args.folder)
    manifest, name = run_model(args.prior, args.model)
    model = _load_run_model(args, manifest, name)
    check_detector(args.detector, [model])
    layers = resolve_layer_args(model, args.layers)
    check_run_matches(args.prior, manifest, model, layers, args.direction, args.aggregate, args.detector)
    out = Path(args.out)
    outputs = check_outputs([out / f for f in FILES], {"photo": photos}, run=args.prior)
    prior = run_prior(args.prior, name)
    result = explain_person(model, photos, prior, load_parser(args), layers, args.direction, args.aggregate,
                            args.thresholds, args.face, args.detector)
    claim_outputs(outputs)
    write_person(result, out)
    _summary(result, name, out)
    return 0


def _load_run_model(args: argparse.Namespace, manifest: dict, name: str):
    """The run's model ``name``: registered, or the file its run recorded (refused if it changed since)."""
    record = (manifest["config"].get("model_files") or {}).get(name)
    if record is None:
        from leam.cli._common import one_line_warnings
        from leam.models import create_model

        with one_line_warnings():
            return create_model(name)
    from leam.models.choice import choice_from_record, load_model_choice

    with trusted_if_asked(args, record.get("path")):
        return load_model_choice(choice_from_record(name, record), record)


def write_person(result, out: Path) -> None:
    """consensus.png, prior.png and specific.png (each over the person's mean aligned face) and regions.csv."""
    from leam._io import write_file
    from leam.report.explanation import write_png
    from leam.report.render import overlay

    for file, values in zip(FILES, (result.consensus, result.prior.values, result.specific)):
        write_png(out / file, overlay(result.mean_face.round().astype("uint8"), values))
    write_file(out / "regions.csv", result.shares.to_csv(index=False).encode())


def _summary(result, model: str, out: Path) -> None:
    p = float(result.shares["threshold"].min())
    print(f"{len(result.photos)} photos of the person under {model}; prior: {result.prior.source}")
    for _, why in result.skipped:
        print(f"  skipped: {why}")
    top = result.shares[result.shares["threshold"] == p]
    for name in ("consensus", "prior", "specific"):
        best = top[top["map"] == name].nlargest(3, "share")
        print(f"  {name:9s} top {p:g} %: " + ", ".join(f"{r.region} {100 * r.share:.0f}%" for r in best.itertuples()))
    if not result.specific.any():
        print("the consensus lies nowhere above the prior: the specific map is empty")
    if result.prior.verdict is None:
        print("the specific map is not validated (the run has no faithfulness phase of this model): read it as "
              "consensus − prior, not as what sets this person apart")
    else:
        print(result.prior.verdict)
    print(f"wrote {', '.join(FILES)} to {out}/")
