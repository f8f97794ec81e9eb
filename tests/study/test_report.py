"""``leam report`` on a real small study: sections, tables, escaping of hostile names, no remote
resources, no model run, and the page as headless Chromium renders it."""

from __future__ import annotations

import base64
import html
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from leam.report import write_report
from leam.report.html import SECTIONS
from leam.study import stats
from leam.study.store import RunStore, unit_dir_name
from tests.study.conftest import HOSTILE

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def report(small_run: Path) -> Path:
    return write_report(small_run, small_run.parent / "out" / "report.html")


@pytest.fixture(scope="session")
def page(report: Path) -> str:
    return report.read_text(encoding="utf-8")


def test_report_has_every_section_and_writes_its_tables(report: Path, page: str, small_run: Path) -> None:
    for key, title in SECTIONS.items():
        assert f'<section id="{key}"><h2>{html.escape(title)}</h2>' in page
    folder = report.parent / "report_tables"
    for name in ("identities", "similarity", "occlusion", "transfer", "regions", "regions_identity",
                 "regions_variability", "failures", "groups_gender_occlusion_drop", "groups_gender_pairs_bc"):
        assert (folder / f"{name}.csv").is_file() and (folder / f"{name}.md").is_file(), name
    tables = RunStore(small_run).tables()
    written = pd.read_csv(folder / "occlusion.csv")
    pd.testing.assert_frame_equal(written, stats.occlusion_summary(tables["occlusion"]), check_dtype=False)
    md = (folder / "transfer.md").read_text(encoding="utf-8")
    assert md.startswith("# transfer\n\n| source_model | target_model | percent |")
    failures = pd.read_csv(folder / "failures.csv")
    assert set(failures["stage"]) == {"face"} and failures["count"].sum() == 2  # the unreadable file, per model
    assert 'not a "photo".jpg' not in " ".join(failures["reason"])  # reasons are counted without the file name


def test_report_numbers_match_the_statistics(page: str, small_run: Path) -> None:
    tables = RunStore(small_run).tables()
    occ = stats.occlusion_summary(tables["occlusion"])
    row = occ[(occ["model"] == "dlib-resnet") & (occ["percent"] == 1)].iloc[0]
    assert f"<td>{row['map_mean']:.4f}</td><td>{row['random_mean']:.4f}</td>" in page
    baselines = stats.random_baselines(tables["occlusion"])
    matrix = stats.transfer_matrix(stats.transfer_summary(tables["transfer"], baselines), 5)
    assert f"<td>{matrix.loc['facenet', 'dlib-resnet']:.4f}</td>" in page


def test_report_shows_the_compute_time_of_the_units(page: str, small_run: Path) -> None:
    from leam.report.html import compute_table

    timings = RunStore(small_run).timings()
    compute = compute_table(timings).set_index("units")
    assert compute.loc["all", "done"] == (timings["kind"] != "data").sum() == compute.loc["all", "timed"]
    assert compute.loc["all", "unit hours"] == pytest.approx(timings.query("kind != 'data'")["seconds"].sum() / 3600)
    assert "Compute: time recorded by the units" in page and "Sessions: each" in page
    assert f"<td>{compute.loc['all', 'unit hours']:.4f}</td>" in page


def test_user_named_text_is_escaped(page: str) -> None:
    assert HOSTILE not in page and "onerror=alert(1)>" not in page
    assert html.escape(HOSTILE) in page  # shown, as text
    tags = re.findall(r"<img\b[^>]*>", page)
    assert tags and all(t.startswith('<img src="data:image/png;base64,') for t in tags)
    assert "<script" not in page.lower()


def test_report_is_self_contained(page: str) -> None:
    assert not re.search(r"https?://", page)
    assert not re.search(r"""(src|href)\s*=\s*["']?//""", page)  # no protocol-relative resources either
    for uri in re.findall(r'src="data:image/png;base64,([^"]+)"', page):
        with Image.open(io.BytesIO(base64.b64decode(uri))) as im:
            im.verify()


def test_report_never_runs_a_model(small_run: Path, tmp_path: Path, monkeypatch) -> None:
    import torch

    import leam.models

    def refuse(*args, **kwargs):
        raise AssertionError("the report ran a model")

    monkeypatch.setattr(torch.nn.Module, "__call__", refuse)
    monkeypatch.setattr(leam.models, "create_model", refuse)
    assert write_report(small_run, tmp_path / "r.html").is_file()


def test_report_finds_the_maps_where_the_runner_put_them() -> None:
    from leam.study.run import unit_name
    from leam.study.units import Unit

    assert unit_dir_name("identity", "facenet", HOSTILE) == unit_name(Unit("identity", "facenet", HOSTILE))


def test_report_of_a_run_with_one_model_and_no_attributes(small_run: Path, tmp_path: Path) -> None:
    """Sections that need two models or attributes say why they are empty instead of failing."""
    store = RunStore(small_run)
    run = tmp_path / "run"
    shutil.copytree(small_run, run, ignore=shutil.ignore_patterns("parts"))
    tables = store.tables()
    keep = {name: t[t["model"] == "dlib-resnet"] if "model" in t else t.iloc[0:0] for name, t in tables.items()}
    keep["images"] = keep["images"].drop(columns="attr_gender")
    for name, t in keep.items():
        t.to_parquet(run / "tables" / f"{name}.parquet", index=False)
    (run / "tables" / "checksums.json").unlink()  # tables written by hand: none of leam's checksums
    page = write_report(run, tmp_path / "one.html").read_text(encoding="utf-8")
    assert "No transfer results in this run" in page and "no groups to compare" in page


def test_cli_report(small_run: Path, tmp_path: Path, capsys) -> None:
    from leam.cli.main import main

    assert main(["report", str(small_run), "--out", str(tmp_path / "cli.html")]) == 0
    assert (tmp_path / "cli.html").is_file() and (tmp_path / "report_tables" / "similarity.csv").is_file()
    assert main(["report", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no run.json" in err


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="headless browser test needs Debian's chromium at /usr/bin/chromium")
def test_report_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    base = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--enable-logging=stderr", "--v=0"]
    url = report.resolve().as_uri()
    shot = tmp_path / "shot.png"
    runs = [
        subprocess.run([*base, f"--user-data-dir={tmp_path / 'profile1'}", f"--screenshot={shot}",
                        "--window-size=1280,2000", url], capture_output=True, text=True, timeout=120),
        subprocess.run([*base, f"--user-data-dir={tmp_path / 'profile2'}", "--dump-dom", url],
                       capture_output=True, text=True, timeout=120),
    ]
    for r in runs:
        assert r.returncode == 0, r.stderr[-2000:]
        console = [line for line in r.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
        assert not console, console
    dom = runs[1].stdout
    for title in SECTIONS.values():
        assert f"<h2>{html.escape(title)}</h2>" in dom
    assert len(re.findall(r'<img src="data:image/png;base64,', dom)) >= 8
    as_text = HOSTILE.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")  # how the DOM serialises text
    assert as_text in dom and HOSTILE not in dom  # still text after parsing: no element made of it
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.shape[:2] == (2000, 1280)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100  # text and figures, not a blank page


def test_group_bars_draw_user_named_groups_literally() -> None:
    """An attribute value with "$" (mathtext in matplotlib) is drawn as text, not parsed."""
    from leam.report import plots

    split = pd.DataFrame({"model": "m", "percent": [1.0, 1.0], "kind": ["map", "random"], "group_a": "$\\oops{$",
                          "group_b": "a_$b", "a_mean": [0.1, 0.05], "a_std": 0.01, "a_n": 5, "b_mean": [0.2, 0.04],
                          "b_std": 0.02, "b_n": 4})
    png = plots.png_bytes(plots.group_bars(split, "percent", ["map", "random"], "kind", "by $weird$ name"))
    assert png.startswith(b"\x89PNG")


def test_group_bars_draw_every_group_of_an_attribute_with_three_values() -> None:
    """Three values give three rows (pairs of groups) per x; each group is drawn once per series."""
    from leam.report import plots
    from leam.study import stats as S

    rng = np.random.default_rng(0)
    n = 30
    occ = pd.DataFrame({"model": "m", "identity": [f"p{i}" for i in range(n)], "image": [f"i{i}" for i in range(n)],
                        "layer": "aggregate", "percent": 1.0, "kind": "map", "drop": rng.random(n),
                        "attr_age": ["young", "middle", "old"] * (n // 3)})
    occ = pd.concat([occ, occ.assign(kind="random", drop=rng.random(n) / 2)], ignore_index=True)
    split = S.group_split(occ, "drop", "attr_age", ["model", "percent", "kind"])
    assert len(split) == 6  # 3 pairs of groups × 2 kinds
    fig = plots.group_bars(split, "percent", ["map", "random"], "kind", "by age")
    bars = fig.axes[0].patches
    assert len(bars) == 6  # 2 kinds × 3 groups, each once
    want = occ.groupby(["kind", "attr_age"])["drop"].mean()
    got = sorted(round(b.get_height(), 9) for b in bars)
    assert got == sorted(round(v, 9) for v in want.to_numpy())
