"""``leam regions``: which face regions the LEAM maps of a photo pick out."""

from __future__ import annotations

import argparse
from pathlib import Path

from leam._paths import check_outputs, claim_outputs, refuse_repeated_inputs
from leam.cli._common import (
    add_detector_option,
    add_face_option,
    add_map_options,
    add_model_options,
    add_parser_options,
    check_detector,
    load_model,
    load_parser,
    resolve_layer_args,
)
from leam.data.images import load_image
from leam.maps.explain import explain_file
from leam.maps.face_regions import explanation_regions, parse_face
from leam.metrics.regions import DEFAULT_THRESHOLDS, check_thresholds
from leam.report.explanation import (
    PARSE_FILES,
    REGIONS_FILES,
    explanation_files,
    write_explanation,
    write_parse,
    write_regions,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("regions", help="share of the most activated pixels in each face region")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--reference", nargs="+", required=True, metavar="IMAGE", help="other photo(s) of the person")
    add_model_options(p)
    add_parser_options(p)
    p.add_argument("--layers", nargs="+", metavar="LAYER", help="layer names, or 'all' (default: the model's 9)")
    add_map_options(p)
    p.add_argument("--thresholds", nargs="+", type=float, default=list(DEFAULT_THRESHOLDS), metavar="P",
                   help="top-p %% thresholds (default: 1 5 10 25 50 100)")
    add_face_option(p)
    add_detector_option(p)
    p.add_argument("--out", default="leam-regions", help="output folder (default: leam-regions)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_thresholds(args.thresholds, "--thresholds")
    inputs = {"photo": [args.image], "reference": args.reference}
    refuse_repeated_inputs(inputs)
    model = load_model(args)
    check_detector(args.detector, [model])
    parser = load_parser(args)
    layers = resolve_layer_args(model, args.layers)
    out = Path(args.out)
    outputs = check_outputs([*explanation_files(out, layers), *(out / f for f in PARSE_FILES + REGIONS_FILES)], inputs)
    photo = load_image(args.image)
    ex = explain_file(model, args.image, args.reference, layers, args.direction, args.aggregate,
                      largest_face=args.face, photo=photo, detector=args.detector)
    labels = parse_face(parser, photo, ex.aligned)
    result = explanation_regions(ex, labels, args.thresholds)
    claim_outputs(outputs)
    write_explanation(ex, args.out, photo)
    write_parse(labels, ex.aligned, args.out)
    write_regions(ex, result, args.out)
    print(f"aggregate map of {len(layers)} layers, parser {labels.parser}:")
    print((result.pivot("aggregate") * 100).round(1).to_string())
    print(f"(percent; wrote regions.csv and regions.png with the maps to {Path(args.out)}/)")
    return 0
