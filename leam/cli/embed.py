"""``leam embed``: embeddings of the faces in photos."""

from __future__ import annotations

import argparse
import json

from leam.cli._common import add_detector_option, add_face_option, add_model_options, check_detector, load_model
from leam.face import align_file
from leam.maps.explain import embed_faces


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="print face embeddings")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    add_model_options(p)
    add_face_option(p)
    add_detector_option(p)
    p.add_argument("--json", action="store_true", help='print a JSON list of {"path", "embedding"}')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model = load_model(args)
    check_detector(args.detector, [model])
    faces = [align_file(path, model.spec.template, args.face, args.detector) for path in args.images]
    embeddings = embed_faces(model, faces)
    if args.json:
        print(json.dumps([{"path": p, "embedding": e.tolist()} for p, e in zip(args.images, embeddings)]))
    else:
        for path, e in zip(args.images, embeddings):
            print(path, " ".join(f"{v:.6f}" for v in e))
    return 0
