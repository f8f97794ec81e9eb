"""The study engine's layout: no import loop between the study's modules (the lazy imports inside functions
included), each kind of unit found through one table, and the CLI's bars over run_study's progress callback."""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import leam.study
from leam.cli.study import phase_bars
from leam.study.config import StudyConfig
from leam.study.units import Unit
from leam.study.worker import UNIT_KINDS, plan

STUDY = Path(leam.study.__file__).parent


def study_imports(path: Path) -> set[str]:
    """The ``leam.study`` modules ``path`` imports anywhere in it (at the top or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n.split(".")[2] for n in names if n.startswith("leam.study.") and n.count(".") == 2}
    return found - {path.stem}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A path ``[a, b, ..., a]`` through ``graph`` if it has a cycle."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*path, node, nxt][[*path, node].index(nxt):]
            if nxt not in state and (cycle := visit(nxt, [*path, node])):
                return cycle
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node, [])):
            return cycle
    return None


def test_the_study_modules_import_each_other_without_a_loop() -> None:
    graph = {p.stem: study_imports(p) for p in STUDY.glob("*.py")}
    assert "run" not in graph["engines"] and "engines" not in graph["worker"] and "run" not in graph["worker"]
    assert {"worker", "engines"} <= graph["run"] and "worker" in graph["engines"]
    assert find_cycle(graph) is None


def test_find_cycle_finds_one() -> None:  # the check above can fail
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("first", ["engines", "run", "worker"])
def test_each_study_module_imports_first_in_a_fresh_interpreter(first: str) -> None:
    modules = [first, *sorted({p.stem for p in STUDY.glob("*.py")} - {first, "__init__"})]
    code = "; ".join(f"import leam.study.{m}" for m in modules)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_plan_has_one_phase_per_kind_in_the_tables_order() -> None:
    two = StudyConfig(data="d", models=("a", "b"))
    phases = plan(two, ["x", "y"])
    assert [p[0].kind for p in phases] == ["identity", "transfer", "pairs"]
    assert list(UNIT_KINDS) == ["identity", "transfer", "pairs", "population", "faithfulness"]
    assert phases[0] == [Unit("identity", m, i) for m in ("a", "b") for i in ("x", "y")]
    assert phases[2] == [Unit("pairs", "a"), Unit("pairs", "b")]
    assert [p[0].kind for p in plan(StudyConfig(data="d", models=("a", "b"), transfer=False), ["x"])] == [
        "identity", "pairs"]
    assert [p[0].kind for p in plan(StudyConfig(data="d", models=("a",)), ["x"])] == ["identity", "pairs"]
    assert plan(StudyConfig(data="d", models=("a",)), []) == [[], [Unit("pairs", "a")]]


def test_plan_samples_identities_with_enough_photos_for_faithfulness() -> None:
    data = {"one": [1], "two": [1, 2], "three": [1, 2, 3], "four": [1, 2, 3, 4], "five": [1] * 5}
    config = StudyConfig(data="d", models=("a", "b"), faithfulness=True, faithfulness_identities=2)
    phases = plan(config, data)
    assert [p[0].kind for p in phases] == ["identity", "transfer", "pairs", "population", "faithfulness"]
    assert phases[3] == [Unit("population", "a"), Unit("population", "b")]
    chosen = [u.identity for u in phases[4] if u.model == "a"]
    assert len(chosen) == 2 and set(chosen) <= {"three", "four", "five"}  # a consensus needs two more photos
    assert [u.identity for u in phases[4] if u.model == "b"] == chosen  # the same people for every model
    assert plan(replace(config, seed=1), data)[4] != phases[4] or len({tuple(plan(replace(config, seed=s), data)[4])
                                                                       for s in range(8)}) > 1
    everyone = plan(replace(config, faithfulness_identities=10), data)[4]
    assert [u.identity for u in everyone if u.model == "a"] == ["three", "four", "five"]  # in the data's order
    mean = plan(replace(config, reference="mean", faithfulness_identities=10), data)[4]
    assert [u.identity for u in mean if u.model == "a"] == ["two", "three", "four", "five"]


def test_phase_bars_draws_one_bar_per_phase(capsys) -> None:
    with phase_bars() as progress:
        for done in range(3):
            progress(UNIT_KINDS["identity"].label, done, 2)
        progress(UNIT_KINDS["pairs"].label, 0, 1)
        progress(UNIT_KINDS["pairs"].label, 1, 1)
    err = capsys.readouterr().err
    assert "identities × models: 100%" in err and "2/2" in err
    assert "map pairs: 100%" in err and "1/1" in err
