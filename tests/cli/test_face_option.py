"""One face-choice flag: ``--face only|largest|central`` in every command that picks a face of a photo, with
``--largest-face`` kept as a hidden alias of ``--face largest`` (one definition: ``add_face_option``)."""

from __future__ import annotations

import argparse

import pytest

from leam.cli.main import build_parser

DEFAULTS = {"explain": "only", "person": "only", "regions": "only", "parse": "only", "embed": "only", "study": "only",
            "demo": "largest", "verify": "largest", "protect": "only", "protect-eval": "largest"}


def commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def minimal_argv(name: str) -> list[str]:
    """``name`` with its required arguments, each given as ``x``."""
    argv = [name]
    for action in commands()[name]._actions:
        if not action.option_strings and action.dest != "help":
            argv.append("x")
        elif action.required:
            argv += [action.option_strings[0], "x"]
    return argv


def test_the_commands_with_a_face_choice() -> None:
    with_face = {name for name, p in commands().items() if any("--face" in a.option_strings for a in p._actions)}
    assert with_face == set(DEFAULTS)


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_face_option_and_its_alias(name: str, capsys) -> None:
    parse = build_parser().parse_args
    assert parse(minimal_argv(name)).face == DEFAULTS[name]
    for choice in ("only", "largest", "central"):
        assert parse([*minimal_argv(name), "--face", choice]).face == choice
    assert parse([*minimal_argv(name), "--largest-face"]).face == "largest"
    for wrong in (["--face", "biggest"], ["--face", "central", "--largest-face"]):
        with pytest.raises(SystemExit) as exit_:
            parse([*minimal_argv(name), *wrong])
        assert exit_.value.code == 2
    help_text = commands()[name].format_help()
    assert "--face {only,largest,central}" in help_text and "--largest-face" not in help_text
