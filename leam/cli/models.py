"""``leam models``: registered models and whether their weights are installed."""

from __future__ import annotations

import argparse

from leam.models import PRESETS, default_weights_path, list_models, model_spec


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list registered models and their weight status")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for name in list_models():
        spec = model_spec(name)
        path = default_weights_path(name)
        status = f"weights found: {path}" if path else f"weights missing: {spec.weights_hint}"
        print(f"{name}: {spec.description}\n    {status}")
        if spec.license:
            print(f"    licence: {spec.license}")
    print("any ONNX or TorchScript file: --model-file PATH --preset NAME, with presets:")
    for preset in PRESETS.values():
        print(f"  {preset.name}: {preset.description}")
    return 0
