"""The specific map on a person's page: drawn beside the consensus and the prior from the run's population unit,
with its validation numbers, and labelled "not validated" (never "what sets this person apart") where the
faithfulness phase did not validate it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from leam.explore import explore, render
from leam.explore.jobs import Job, file_stem, population_unit
from leam.explore.pages import _specific, specific_view
from leam.study import faithfulness_stats
from leam.study.run_tables import scan_of
from leam.study.store import RunStore
from tests.study.conftest import HOSTILE, faithful_run  # noqa: F401  (the fixture)

MODEL = "dlib-resnet"


@pytest.fixture(scope="module")
def faithful_site(faithful_run: Path, tmp_path_factory):  # noqa: F811
    return explore(faithful_run, tmp_path_factory.mktemp("explore") / "site")


def test_each_page_draws_the_stored_specific_map_beside_consensus_and_prior(faithful_run, faithful_site):  # noqa: F811
    population = RunStore(faithful_run).unit_arrays(population_unit(MODEL))
    for k, person in enumerate(str(p) for p in population["people"]):
        folder = faithful_site.site / "img" / file_stem(person) / file_stem(MODEL)
        page = (faithful_site.site / "people" / f"{file_stem(person)}.html").read_text(encoding="utf-8")
        for name in (render.CONSENSUS, render.PRIOR, render.SPECIFIC):
            assert f"{file_stem(person)}/{file_stem(MODEL)}/{name}" in page
        drawn = Image.open(folder / render.SPECIFIC)
        expected = Image.open(io.BytesIO(render.map_png(population[f"specific/{k}"])))
        assert np.array_equal(np.asarray(drawn), np.asarray(expected))
        assert Image.open(folder / render.PRIOR).size == drawn.size


def test_an_unvalidated_map_is_said_so_and_never_called_what_sets_the_person_apart(faithful_run, faithful_site):  # noqa: F811
    tables = RunStore(faithful_run).tables()
    validation = faithfulness_stats.specific_validation_of(scan_of(tables, "faithfulness"))
    assert len(validation) and not validation["holds"].any()  # two photos: nothing can pass Holm's p < 0.05
    person = str(RunStore(faithful_run).unit_arrays(population_unit(MODEL))["people"][0])
    page = (faithful_site.site / "people" / f"{file_stem(person)}.html").read_text(encoding="utf-8")
    assert "consensus − prior (not validated)" in page and "not shown as what sets this person apart" in page
    assert "What sets this person apart" not in page and "the specific map is not validated" in page
    assert "Holm p" in page and f"<td>{validation['p_holm'].iloc[-1]:.4f}</td>" in page


def test_the_validation_is_the_reports(faithful_run):  # noqa: F811
    tables = RunStore(faithful_run).tables()
    report = faithfulness_stats.summarise(scan_of(tables, "faithfulness"), tables.get("specificity"))
    pd.testing.assert_frame_equal(faithfulness_stats.specific_validation_of(scan_of(tables, "faithfulness")),
                                  report["faithfulness_specific"])


def test_a_second_run_draws_nothing(faithful_run, faithful_site, tmp_path):  # noqa: F811
    again = explore(faithful_run, faithful_site.site)
    assert again.drawn == 0 and again.files == 0


def test_a_run_without_the_population_unit_shows_no_specific_map(site) -> None:
    page = next((site.site / "people").glob("*.html")).read_text(encoding="utf-8")
    assert render.PRIOR not in page and "not validated" not in page and "sets this person apart" not in page
    assert not list(site.site.glob(f"img/*/*/{render.SPECIFIC}"))


def _validation(model: str, holds: dict[str, tuple[bool, bool]]) -> pd.DataFrame:
    rows = [{"test": test, "model": model, "fill": fill, "n": 30, "mean_diff": -0.01, "ci_low": -0.02,
             "ci_high": -0.005, "p_wilcoxon": 0.001, "p_holm": 0.003 if ok else 0.4, "holds": ok}
            for fill, oks in holds.items() for (test, *_), ok in zip(faithfulness_stats.SPECIFIC_TESTS, oks)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("holds", "title"), [
    ({"black": (True, True), "blur": (True, True)}, "What sets this person apart</h3>"),
    ({"black": (True, True), "blur": (True, False)}, "What sets this person apart (validated under some fills only)"),
    ({"black": (True, False), "blur": (False, True)}, "Consensus − prior (not validated)"),
])
def test_the_label_follows_the_validation(holds, title) -> None:
    validation = _validation(HOSTILE, holds)
    view = specific_view(HOSTILE, validation, faithfulness_stats.specific_verdicts(validation)[HOSTILE])
    block = _specific(Job("p", HOSTILE, (1, 2)), view, (112, 112))
    assert title in block
    assert HOSTILE not in block and "&lt;img src=x onerror=alert(1)&gt;" in block  # the model's name escaped
    if "not validated" in title:
        assert "sets this person apart</h3>" not in block and "not shown as what sets this person apart" in block


def test_a_model_without_validation_rows_is_not_validated() -> None:
    view = specific_view("m", pd.DataFrame(), None)
    assert view.validated == "" and "not validated" in view.sentence
    assert "Consensus − prior (not validated)" in _specific(Job("p", "m", (1,)), view, (112, 112))


def test_the_specific_pictures_load_in_chromium(faithful_site, tmp_path) -> None:
    from tests.explore.test_browser import CHROMIUM, PERSON_DRIVER, run_page

    if not CHROMIUM.is_file():
        pytest.skip("headless browser test needs Debian's chromium at /usr/bin/chromium")
    page = next((faithful_site.site / "people").glob("*.html"))
    eager = page.with_name("eager.html")
    eager.write_text(page.read_text(encoding="utf-8").replace('loading="lazy"', 'loading="eager"'), encoding="utf-8")
    try:
        _, found = run_page(eager, PERSON_DRIVER, tmp_path / "profile")
    finally:
        eager.unlink()
    shown = {src.rsplit("/", 1)[-1]: (w, h) for src, w, h, _ in found["images"]}
    for name in (render.CONSENSUS, render.PRIOR, render.SPECIFIC):
        assert shown[name] == (150, 150), found["images"]
