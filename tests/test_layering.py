"""The layering, proved the way the hook tests prove hygiene: data flows photo → face → model → maps →
statistics → store → report, and nothing downstream of the models reaches back up to them.

A fresh interpreter imports each module below in turn, with a watcher on the import system that
notes, for every forbidden module (torch, the model registry, the parsers, the map engine), the chain
of leam modules being imported when it was first loaded. Imports only ever add to ``sys.modules``, so
when none is loaded after all of them, none is loaded by any one of them alone; a failure names the
module that pulled it in and the chain it came through.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# The bottom layers and everything downstream of the models: none may load a model or torch.
TORCH_FREE = (
    "leam",
    "leam._io",
    "leam._paths",
    "leam.face.templates",
    "leam.face.labels",
    "leam.face.align",
    "leam.face",
    "leam.face.scrfd",
    "leam.data.images",
    "leam.data.folders",
    "leam.data.dataset",
    "leam.metrics.regions",
    "leam.metrics.similarity",
    "leam.metrics.occlusion",
    "leam.study.stats",
    "leam.study.store",
    "leam.report",
    "leam.report.html",
    "leam.report.examples",
    "leam.report.tables",
    "leam.report.plots",
    "leam.report.page",
    "leam.report.render",
    "leam.report.verification",
    "leam.metrics.verification",
    "leam.metrics.faithfulness",
    "leam.metrics.paired",
    "leam.study.faithfulness_stats",
    "leam.report.faithfulness",
    "leam.report.claims",
    "leam.report.scorecard",
    "leam.explore",
    "leam.explore.jobs",
    "leam.explore.people",
    "leam.explore.maps",
    "leam.explore.render",
    "leam.explore.plan",
    "leam.explore.tasks",
    "leam.explore.assets",
    "leam.explore.pages",
    "leam.explore.site",
)
FORBIDDEN = ("torch", "leam.models", "leam.parse", "leam.maps")

_WATCH = r"""
import importlib, json, sys, traceback

FORBIDDEN = tuple(sys.argv[1].split(","))


class Watch:
    # Notes the leam modules being imported when a forbidden module is first looked for.
    def __init__(self):
        self.chains = {}

    def find_spec(self, name, path=None, target=None):
        root = next((f for f in FORBIDDEN if name == f or name.startswith(f + ".")), None)
        if root and root not in self.chains:
            names = [f.f_globals.get("__name__", "") for f, _ in traceback.walk_stack(None)]
            chain = []
            for n in reversed(names):
                if n.startswith("leam") and n not in chain:
                    chain.append(n)
            self.chains[root] = chain + [name]
        return None


watch = Watch()
sys.meta_path.insert(0, watch)
found = {}
for module in sys.argv[2:]:
    before = set(watch.chains)
    importlib.import_module(module)
    found[module] = {root: watch.chains[root] for root in set(watch.chains) - before}
print(json.dumps(found))
"""


def forbidden_imports(modules: tuple[str, ...], forbidden: tuple[str, ...] = FORBIDDEN) -> dict[str, dict]:
    """{module: {forbidden root: import chain}} for each of ``modules`` imported in turn in one fresh
    interpreter: the forbidden modules each one loaded first, with the chain of leam modules they came through."""
    out = subprocess.run([sys.executable, "-c", _WATCH, ",".join(forbidden), *modules],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def loaded() -> dict[str, dict]:
    return forbidden_imports(TORCH_FREE)


@pytest.mark.parametrize("module", TORCH_FREE)
def test_module_loads_no_model_and_no_torch(loaded, module):
    chains = {root: " → ".join(chain) for root, chain in loaded[module].items()}
    assert not chains, f"import {module} loads {', '.join(chains)}: " + "; ".join(chains.values())


def test_the_watch_sees_a_model_load_torch():
    """The check can fail: importing the model registry loads torch, and the chain names the registry."""
    found = forbidden_imports(("leam.face", "leam.models"))
    assert found["leam.face"] == {}
    chain = found["leam.models"]["torch"]
    assert chain[0] == "leam.models" and chain[-1].split(".")[0] == "torch", chain


def test_the_public_names_resolve_from_the_package() -> None:
    """``from leam import explain_file`` and the other re-exported names load their module on first use."""
    import leam

    for name in leam.__all__:
        assert getattr(leam, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        leam.nope  # noqa: B018
