"""Options shared by several commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from leam.errors import ModelError
from leam.models import (
    DEFAULT_MODEL,
    AlignmentTemplate,
    FaceModel,
    create_model,
    list_models,
    model_spec,
    trust_pickles,
)


def positive_int(text: str) -> int:
    """An argparse type: a whole number ≥ 1 (argparse turns the ValueError into one usage line)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number ≥ 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 0, got {text}")
    return value


def workers_count(text: str) -> int:
    """An argparse type for ``--workers``: ``auto`` (``default_workers()``) or a whole number ≥ 1."""
    from leam.study.engines import default_workers

    return default_workers() if text == "auto" else positive_int(text)


def add_model_options(p: argparse.ArgumentParser) -> None:
    from leam.models.external import PRESETS

    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", default=DEFAULT_MODEL, help=f"model name (one of: {', '.join(list_models())})")
    which.add_argument("--model-file", metavar="PATH", default=None,
                       help="an ONNX (.onnx) or TorchScript model file instead of a registered model")
    p.add_argument("--preset", choices=list(PRESETS), default=None,
                   help="with --model-file: input size, colour order, normalisation, alignment (default: "
                        "arcface; arcface-raw for an ONNX graph that normalises its input, as insightface decides)")
    p.add_argument("--weights", default=None, help="path to the model's weight file (default: installed)")
    add_trust_option(p)


def add_trust_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-model-file", action="store_true",
                   help="unpickle --model-file, --weights and --parser-weights .pth files in full (torch.load with "
                        "weights_only=False), e.g. a whole pickled model: this runs any code the file holds, so only "
                        "for files you trust (default: tensors only; anything else is refused unopened)")


@contextmanager
def trusted_if_asked(args: argparse.Namespace, path: str | None) -> Iterator[None]:
    """``trust_pickles()`` around loading ``path`` when ``--trust-model-file`` was given (with a warning)."""
    if not (getattr(args, "trust_model_file", False) and path):
        yield
        return
    print(f"leam: warning: --trust-model-file: {path} may be unpickled in full, which runs any code it holds",
          file=sys.stderr)
    with trust_pickles():
        yield


@contextmanager
def one_line_warnings() -> Iterator[None]:
    """Within the block a ``SlowModelWarning`` (a model file's per-image time) is printed as one line
    ``leam: warning: ...`` on stderr, not in Python's two-line form."""
    import warnings

    from leam.models.external import SlowModelWarning

    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SlowModelWarning)
            yield
    finally:
        for w in caught:  # all are recorded: the others are shown as they would have been
            if issubclass(w.category, SlowModelWarning):
                print(f"leam: warning: {w.message}", file=sys.stderr)
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def load_model(args: argparse.Namespace) -> FaceModel:
    if getattr(args, "model_file", None):
        if args.weights:
            raise ModelError("--weights goes with --model; a --model-file holds its own weights")
        from leam.models.external import load_model_file

        with trusted_if_asked(args, args.model_file), one_line_warnings():
            return load_model_file(args.model_file, args.preset)
    if getattr(args, "preset", None):
        raise ModelError("--preset goes with --model-file; registered models have their own")
    with trusted_if_asked(args, args.weights), one_line_warnings():
        return create_model(args.model, args.weights)


def load_choices(args: argparse.Namespace, choices: list) -> list[FaceModel]:
    """The models of ``--models NAME|NAME=PATH[:PRESET] ...`` (``leam.models.choice``), each file under
    ``--trust-model-file`` when it was given."""
    from leam.models.choice import load_model_choice

    out = []
    for choice in choices:
        with trusted_if_asked(args, choice.path), one_line_warnings():
            out.append(load_model_choice(choice))
    return out


def model_template(args: argparse.Namespace) -> AlignmentTemplate:
    """The alignment template of the chosen model, without loading weights when it is registered."""
    if getattr(args, "model_file", None):
        from leam.models.external import PRESETS

        if args.preset:
            return PRESETS[args.preset].template
        return load_model(args).spec.template
    return model_spec(args.model).template


def resolve_layer_args(model: FaceModel, layers: list[str] | None) -> list[str]:
    """``None`` → the model's default layers; ``["all"]`` → every explainable layer."""
    if not layers:
        return list(model.spec.default_layers)
    if layers == ["all"]:
        from leam.maps import layer_shapes

        return [name for name, _ in layer_shapes(model.net, model.spec.input_size)]
    return layers


def add_face_option(p: argparse.ArgumentParser, default: str = "only") -> None:
    """``--face only|largest|central``: which face of a photo with several; ``--largest-face`` is kept as a
    hidden alias of ``--face largest`` (the two are not given together)."""
    from leam.face.detect import FACE_CHOICES

    which = p.add_mutually_exclusive_group()
    which.add_argument("--face", choices=FACE_CHOICES, default=default,
                       help=f"of several faces in a photo: only (refuse the photo), largest, or central (the one "
                            f"nearest the photo's centre, as LFW centres its subject); default: {default}")
    which.add_argument("--largest-face", dest="face", action="store_const", const="largest", help=argparse.SUPPRESS)


def add_detector_option(p: argparse.ArgumentParser) -> None:
    """``--detector dlib|scrfd``: which face detector finds the faces and their landmarks (default dlib)."""
    from leam.face import DETECTORS

    p.add_argument("--detector", choices=DETECTORS, default="dlib",
                   help="face detector: dlib (HOG + 5-point landmarks; default) or scrfd (insightface's SCRFD-500M, "
                        "five keypoints fitted to arcface_dst; 112x112 ArcFace-aligned models only)")


def check_detector(detector: str, models: Sequence[FaceModel]) -> None:
    """Refuse, before any photo is read, a detector that cannot align the faces of one of ``models``."""
    from leam.face import detector_template

    for m in models:
        detector_template(m.spec.template, detector)


def add_map_options(p: argparse.ArgumentParser, resumed: bool = False) -> None:
    """``--direction`` and ``--aggregate``: which gradient weighs the activations and how the layers' maps are
    combined (defaults: ``leam.maps.DEFAULT_DIRECTION`` and ``DEFAULT_AGGREGATION``; with ``resumed``, None: the
    command takes a resumed run's own)."""
    from leam.maps import AGGREGATIONS, DEFAULT_AGGREGATION, DEFAULT_DIRECTION, DIRECTIONS

    when = "a resumed run's own, else " if resumed else ""
    p.add_argument("--direction", choices=DIRECTIONS, default=None if resumed else DEFAULT_DIRECTION,
                   help=f"'loss': ReLU of d(1-cos)/dA, as the reference study; 'similarity': ReLU of d cos/dA "
                        f"(default: {when}{DEFAULT_DIRECTION})")
    p.add_argument("--aggregate", choices=AGGREGATIONS, default=None if resumed else DEFAULT_AGGREGATION,
                   help=f"how the layers' maps are combined: mean (the reference study's), max, or early (the mean "
                        f"of the first three layers) (default: {when}{DEFAULT_AGGREGATION})")


def add_parser_options(p: argparse.ArgumentParser) -> None:
    from leam.parse import DEFAULT_PARSER, list_parsers

    p.add_argument("--parser", default=DEFAULT_PARSER, help=f"face parser (one of: {', '.join(list_parsers())})")
    p.add_argument("--parser-weights", default=None, help="weight file for parsers that need one (e.g. bisenet)")


def load_parser(args: argparse.Namespace):
    from leam.parse import create_parser

    with trusted_if_asked(args, args.parser_weights):
        return create_parser(args.parser, args.parser_weights)


@contextmanager
def progress_bar(desc: str, unit: str = "photo") -> Iterator[Callable[[int, int], None]]:
    """A tqdm bar (stderr) driven by a library function's ``progress(done, total)`` callback; closed on
    every path. ``with progress_bar("explaining") as progress: run_demo(..., progress=progress)``."""
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=desc, unit=unit)
        bar.total = total
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()
