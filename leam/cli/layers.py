"""``leam layers``: the layers LEAM can explain, with their output shapes."""

from __future__ import annotations

import argparse

from leam.cli._common import add_model_options, load_model
from leam.maps import layer_shapes


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("layers", help="list a model's hookable layers with output shapes")
    add_model_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model = load_model(args)
    default = set(model.spec.default_layers)
    for name, shape in layer_shapes(model.net, model.spec.input_size):
        mark = "*" if name in default else " "
        print(f"{mark} {name:<28} {' x '.join(map(str, shape))}")
    print("(* = default layers)")
    return 0
