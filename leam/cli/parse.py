"""``leam parse``: the face-region label map of a photo, in a model's aligned frame."""

from __future__ import annotations

import argparse
from pathlib import Path

from leam._paths import check_outputs, claim_outputs
from leam.cli._common import (
    add_detector_option,
    add_face_option,
    add_model_options,
    add_parser_options,
    load_parser,
    model_template,
)
from leam.data.images import load_image
from leam.face import align_file, detector_template
from leam.maps.face_regions import parse_face
from leam.report.explanation import PARSE_FILES, write_parse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("parse", help="write a photo's face-region label map and overlay")
    p.add_argument("image", metavar="IMAGE")
    add_parser_options(p)
    add_model_options(p)
    add_face_option(p)
    add_detector_option(p)
    p.add_argument("--out", default="leam-parse", help="output folder (default: leam-parse)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    template = model_template(args)
    detector_template(template, args.detector)  # refused before any photo is read
    outputs = check_outputs([Path(args.out) / f for f in PARSE_FILES], {"photo": [args.image]})
    photo = load_image(args.image)
    face = align_file(args.image, template, args.face, args.detector)
    labels = parse_face(load_parser(args), photo, face)
    claim_outputs(outputs)
    write_parse(labels, face, args.out)
    counts = {c: int(labels.mask(c).sum()) for c in labels.categories}
    total = labels.labels.size
    print(f"parser {labels.parser}, aligned frame {template.name} ({template.size[1]}x{template.size[0]}):")
    for c, n in counts.items():
        print(f"  {c:<12} {100 * n / total:5.1f}% of the chip")
    print(f"wrote labels.png, labels_rgb.png, parse_overlay.png, legend.json to {Path(args.out)}/")
    return 0
