"""``leam explain``: LEAM maps of one photo against reference photos of the same person."""

from __future__ import annotations

import argparse
from pathlib import Path

from leam._paths import check_outputs, claim_outputs, refuse_repeated_inputs
from leam.cli._common import (
    add_detector_option,
    add_face_option,
    add_map_options,
    add_model_options,
    check_detector,
    load_model,
    resolve_layer_args,
)
from leam.data.images import load_image
from leam.maps.explain import explain_file
from leam.report.explanation import explanation_files, write_explanation


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="write LEAM maps of a photo against reference photos")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--reference", nargs="+", required=True, metavar="IMAGE",
                   help="other photo(s) of the same person; several → their mean embedding")
    add_model_options(p)
    p.add_argument("--layers", nargs="+", metavar="LAYER", help="layer names, or 'all' (default: the model's 9)")
    add_map_options(p)
    add_face_option(p)
    add_detector_option(p)
    p.add_argument("--out", default="leam-out", help="output folder (default: leam-out)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    inputs = {"photo": [args.image], "reference": args.reference}
    refuse_repeated_inputs(inputs)
    model = load_model(args)
    check_detector(args.detector, [model])
    layers = resolve_layer_args(model, args.layers)
    outputs = check_outputs(explanation_files(args.out, layers), inputs)
    photo = load_image(args.image)
    ex = explain_file(model, args.image, args.reference, layers, args.direction, args.aggregate, args.face,
                      photo, args.detector)
    claim_outputs(outputs)
    write_explanation(ex, args.out, photo)
    print(f"cosine similarity to the reference: {ex.cosine:.4f}")
    print(f"wrote {len(layers)} layer maps and the aggregate to {Path(args.out)}/ (see grid.png)")
    return 0
