"""The ``leam`` command: one sub-command per module, each a thin wrapper over a plain function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from leam import __version__
from leam._io import shown, text_name
from leam.cli import (
    demo,
    embed,
    explain,
    explore,
    layers,
    models,
    parse,
    person,
    protect,
    protect_eval,
    regions,
    report,
    study,
    verify,
)
from leam.errors import LeamError


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


COMMANDS = (explain, person, regions, parse, embed, layers, models, demo, study, report, explore, verify, protect,
            protect_eval)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="leam", description="LEAM: which parts of a person's face a face-recognition model relies on"
    )
    parser.add_argument("--version", action="version", version=f"leam {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LeamError as exc:
        print(f"leam: error: {shown(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("leam: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # the system refused something (disk full, permissions, ...): one line, no traceback
        where = f"{text_name(str(exc.filename))}: " if exc.filename else ""
        print(f"leam: error: {shown(where)}{exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
