"""``leam explore`` on a real small study: its numbers against a plain NumPy recomputation from the stored
maps, pictures drawn again only when their inputs change, output safety, escaping, the command line."""

from __future__ import annotations

import html
import json
import math
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import ot
import pandas as pd
import pytest

from leam.errors import LeamError
from leam.explore import ExploreResult, explore, maps
from leam.explore.assets import script_json
from leam.explore.jobs import file_stem
from leam.explore.pages import MODEL_COLUMNS
from leam.face.labels import CLASSES, UNLABELLED, UNLABELLED_NAME
from leam.study.checksums import sealed
from leam.study.store import RunStore, unit_dir_name
from tests.explore.conftest import copy_run
from tests.study.conftest import HOSTILE

MODELS = ("dlib-resnet", "facenet")


# ------------------------------------------------------------------------- an independent, slow computation


def stored_photos(run: Path) -> dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray]]]:
    """{(identity, model): [(aggregate map, label map) per explained photo]}, read with plain ``np.load``."""
    images = pd.read_parquet(run / "tables" / "images.parquet")
    out: dict[tuple[str, str], list] = {}
    for r in images[images["role"] == "explained"].itertuples():
        with np.load(run / "parts" / unit_dir_name("identity", r.model, r.identity) / "maps.npz") as z:
            out.setdefault((r.identity, r.model), []).append(
                (z[f"{r.array_index}/aggregate"].astype(np.float64), z[f"{r.array_index}/labels"]))
    return out


def slow_emd(p: np.ndarray, q: np.ndarray, grid: int) -> float:
    """EMD of two distributions summed into grid × grid blocks (bounds at round(k·H/grid)), block by block."""
    h, w = p.shape
    rows = [round(k * h / grid) for k in range(grid + 1)]
    cols = [round(k * w / grid) for k in range(grid + 1)]
    a, b, centres = [], [], []
    for i in range(grid):
        for j in range(grid):
            a.append(p[rows[i]:rows[i + 1], cols[j]:cols[j + 1]].sum())
            b.append(q[rows[i]:rows[i + 1], cols[j]:cols[j + 1]].sum())
            centres.append(((cols[j] + cols[j + 1] - 1) / 2, (rows[i] + rows[i + 1] - 1) / 2))
    c = np.array(centres)
    cost = np.sqrt(((c[:, None, :] - c[None, :, :]) ** 2).sum(-1))
    return float(ot.emd2(np.array(a), np.array(b), cost, numItermax=10_000_000))


def slow_shares(values: np.ndarray, labels: list[np.ndarray]) -> dict[str, float]:
    """Mean over photos of the share of ``values``' top 1 % pixels (ties: the earlier pixel) in each class."""
    flat = values.ravel()
    k = -(-flat.size // 100)
    top = sorted(range(flat.size), key=lambda n: (-flat[n], n))[:k]
    out: dict[str, float] = {}
    for lab in labels:
        picked = lab.ravel()[top]
        for v in np.unique(np.concatenate([lab.ravel() for lab in labels])):
            name = UNLABELLED_NAME if v == UNLABELLED else CLASSES[v]
            out[name] = out.get(name, 0.0) + float((picked == v).sum()) / k / len(labels)
    return out


def slow_numbers(run: Path) -> dict[tuple[str, str], dict]:
    photos = stored_photos(run)
    out = {}
    for (identity, model), mine in photos.items():
        consensus = sum(m for m, _ in mine) / len(mine)
        others = [m for (i, mm), theirs in photos.items() if mm == model and i != identity for m, _ in theirs]
        prior = sum(others) / len(others)
        p, q = consensus / consensus.sum(), prior / prior.sum()
        out[(identity, model)] = {"bc": float(np.sqrt(p * q).sum()), "emd": slow_emd(p, q, maps.EMD_GRID),
                                  "shares": slow_shares(consensus, [lab for _, lab in mine]),
                                  "prior_shares": slow_shares(prior, [lab for _, lab in mine])}
    return out


class Rows(HTMLParser):
    """The people table of ``index.html``: per row, its person's name and {(model index, column): data-v}."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict] = []
        self.in_body = False
        self.count: dict[int, int] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tbody":
            self.in_body = True
        elif tag == "tr" and self.in_body and "data-m" in a:
            self.rows.append({"values": {}, "name": None, "general": []})
            self.count = {}
        elif tag == "td" and self.in_body and self.rows:
            row = self.rows[-1]
            if "data-model" in a:
                k = int(a["data-model"])
                col = MODEL_COLUMNS[self.count.get(k, 0)][0]
                self.count[k] = self.count.get(k, 0) + 1
                row["values"][(k, col)] = a.get("data-v")
            elif "data-v" in a:
                row["general"].append(a["data-v"])
        elif tag == "a" and self.in_body and self.rows and self.rows[-1]["name"] is None:
            self.rows[-1]["href"] = a["href"]
            self.rows[-1]["name"] = ""

    def handle_data(self, data):
        if self.rows and self.rows[-1]["name"] == "":
            self.rows[-1]["name"] = data

    def handle_endtag(self, tag):
        if tag == "tbody":
            self.in_body = False


def index_rows(site: ExploreResult) -> list[dict]:
    parser = Rows()
    parser.feed(site.index.read_text(encoding="utf-8"))
    return parser.rows


# --------------------------------------------------------------------------------------------------- tests


def test_distances_match_a_plain_numpy_recomputation(site: ExploreResult, small_run: Path) -> None:
    slow = slow_numbers(small_run)
    rows = index_rows(site)
    assert {r["name"] for r in rows} == {HOSTILE, "Arnoldo_Aleman"}
    for r in rows:
        for k, model in enumerate(MODELS):
            want = slow[(r["name"], model)]
            assert float(r["values"][(k, "emd")]) == pytest.approx(want["emd"], rel=1e-9, abs=1e-9)
            assert float(r["values"][(k, "bc")]) == pytest.approx(want["bc"], rel=1e-12)
    # the default order: most unusual first (the mean over models of the percentile rank of EMD)
    unusual = [float(r["general"][-1]) for r in rows]
    assert unusual == sorted(unusual, reverse=True)
    emd = {(r["name"], k): float(r["values"][(k, "emd")]) for r in rows for k in range(2)}
    for r in rows:
        other = next(o["name"] for o in rows if o["name"] != r["name"])
        ranks = [1.0 if emd[(r["name"], k)] > emd[(other, k)] else 0.5 if emd[(r["name"], k)] < emd[(other, k)]
                 else 0.75 for k in range(2)]
        assert float(r["general"][-1]) == pytest.approx(np.mean(ranks))


def test_region_shares_of_the_consensus_match_a_loop_over_photos(small_run: Path) -> None:
    slow = slow_numbers(small_run)
    store = RunStore(small_run)
    images = store.tables()["images"]
    for (identity, model), want in slow.items():
        rows = images[(images["identity"] == identity) & (images["model"] == model) & (images["role"] == "explained")]
        explained = tuple(int(i) for i in rows["array_index"])
        total = None
        for other in images["identity"].unique():
            o = images[(images["identity"] == other) & (images["model"] == model) & (images["role"] == "explained")]
            with store.unit_arrays(unit_dir_name("identity", model, other)) as z:
                s = maps.sums(z, tuple(int(i) for i in o["array_index"]))
            total = s if total is None else maps.Sums(total.count + s.count, total.maps + s.maps)
        with store.unit_arrays(unit_dir_name("identity", model, identity)) as z:
            _, consensus, prior = maps.consensus_and_prior(z, explained, total)
            person = maps.person(z, explained, consensus, prior)
        assert person.photos == len(explained) == 2
        assert set(person.shares) == set(want["shares"])
        for c, (mine, theirs) in person.shares.items():
            assert mine == pytest.approx(want["shares"][c], abs=1e-12), c
            assert theirs == pytest.approx(want["prior_shares"][c], abs=1e-12), c
        assert sum(m for m, _ in person.shares.values()) == pytest.approx(1.0)
        assert (person.emd, person.bc) == (pytest.approx(want["emd"], rel=1e-9), pytest.approx(want["bc"]))


def test_variability_and_occlusion_match_the_tables(site: ExploreResult, small_run: Path) -> None:
    tables = RunStore(small_run).tables()
    regions, occlusion = tables["regions"], tables["occlusion"]
    for r in index_rows(site):
        for k, model in enumerate(MODELS):
            t = regions[(regions["identity"] == r["name"]) & (regions["model"] == model)
                        & (regions["layer"] == "aggregate") & (regions["measure"] == "share")
                        & (regions["threshold"] == 1.0)]
            per_class = t.groupby("class")["value"]
            want = per_class.std(ddof=1).sum() / per_class.mean().sum()
            assert float(r["values"][(k, "variability")]) == pytest.approx(want, rel=1e-12)
            o = occlusion[(occlusion["identity"] == r["name"]) & (occlusion["model"] == model)
                          & (occlusion["layer"] == "aggregate") & (occlusion["percent"] == 1.0)]
            gain = o[o["kind"] == "map"]["drop"].mean() - o[o["kind"] == "random"]["drop"].mean()
            assert float(r["values"][(k, "gain")]) == pytest.approx(gain, rel=1e-12)


def test_pages_show_every_photo_lazily_from_files(site: ExploreResult, small_run: Path) -> None:
    people = sorted((site.site / "people").glob("*.html"))
    assert len(people) == site.people == 2
    images = RunStore(small_run).tables()["images"]
    for page in people:
        text = page.read_text(encoding="utf-8")
        tags = re.findall(r"<img\b[^>]*>", text)
        assert tags and all('loading="lazy"' in t for t in tags)
        assert "data:image" not in text and not re.search(r"https?://|//cdn", text)
        for src in re.findall(r'src="([^"]+)"', text):
            assert (page.parent / src).resolve().is_file(), src
    hostile = next(p for p in people if "Arnoldo" not in p.name)
    text = hostile.read_text(encoding="utf-8")
    photos = images[images["identity"] == HOSTILE]
    for image in photos["image"].unique():
        assert html.escape(image) in text
    assert "<script>" in text and HOSTILE not in text and "onerror=alert(1)>" not in text
    assert html.escape(HOSTILE) in text
    assert 'not a &quot;photo&quot;.jpg' in text  # the person's failure, escaped
    assert re.fullmatch(r"[A-Za-z0-9._-]+\.html", hostile.name)


def test_index_escapes_user_named_text(site: ExploreResult) -> None:
    text = site.index.read_text(encoding="utf-8")
    assert HOSTILE not in text and "onerror=alert(1)>" not in text and html.escape(HOSTILE) in text
    meta = re.search(r'<script type="application/json" id="explore-meta">(.*?)</script>', text, re.S)
    assert json.loads(meta.group(1))["models"] == list(MODELS)
    assert "At a glance" in text and '<select data-attr="0">' in text and '<option value="F">F</option>' in text


def test_script_json_cannot_close_its_script() -> None:
    value = {"name": '</script><script>alert(1)</script><!-- & \u2028', "n": [1, 2.5]}
    text = script_json(value)
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == value


def test_a_second_run_draws_nothing_and_a_redone_unit_only_its_own(small_run: Path, tmp_path: Path) -> None:
    run = copy_run(small_run, tmp_path / "run")
    out = tmp_path / "site"
    first = explore(run, out)
    assert first.drawn == 4 and first.files > 0
    times = {p: p.stat().st_mtime_ns for p in (out / "img").rglob("*.*")}
    again = explore(run, out)
    assert (again.drawn, again.files) == (0, 0)
    assert {p: p.stat().st_mtime_ns for p in times} == times
    # the unit redone with the same maps (a new done marker): only its pictures are drawn again
    unit = unit_dir_name("identity", "facenet", HOSTILE)
    done_path = run / "parts" / unit / "done.json"
    done = json.loads(done_path.read_bytes())
    done["seconds"] = done.get("seconds", 0) + 1
    done_path.write_bytes(sealed(done))
    touched = explore(run, out)
    assert touched.drawn == 1
    changed = {p for p, t in times.items() if p.stat().st_mtime_ns != t}
    folder = out / "img" / first_folder(HOSTILE, "facenet")
    assert changed and all(folder in p.parents for p in changed)
    assert {p.name for p in changed} == {p.name for p in folder.iterdir() if p.name != ".leam-output"}


def test_an_interrupted_run_leaves_only_the_rest_to_draw(site: ExploreResult, small_run: Path, tmp_path: Path,
                                                         monkeypatch) -> None:
    """Stopped after two of the second pass's four jobs (the manifest saved after each job here), a run's
    successor draws the other two only, and the site is byte for byte an uninterrupted run's."""
    monkeypatch.setattr("leam.explore.plan.CHECKPOINT_SECONDS", 0.0)
    out = tmp_path / "site"

    def stop(done: int, total: int) -> None:
        if done == 4 + 2:  # the first pass's 4 steps, then 2 jobs of the second
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        explore(small_run, out, progress=stop)
    assert not (out / "index.html").exists()
    rest = explore(small_run, out)
    assert rest.drawn == 2
    files = sorted(p.relative_to(site.site) for p in site.site.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    for f in files:
        if f.name != ".leam-output":
            assert (site.site / f).read_bytes() == (out / f).read_bytes(), f


def first_folder(identity: str, model: str) -> str:
    return f"{file_stem(identity)}/{file_stem(model)}"


def test_changed_maps_redraw_the_other_peoples_difference(small_run: Path, tmp_path: Path) -> None:
    """A unit redone with other maps moves every other person's prior: their difference pictures are drawn
    again (their photos are not), and the numbers follow the maps."""
    run = copy_run(small_run, tmp_path / "run")
    out = tmp_path / "site"
    explore(run, out)
    before = {r["name"]: r for r in index_rows(explore(run, out))}
    store = RunStore(run)
    unit = unit_dir_name("identity", "dlib-resnet", "Arnoldo_Aleman")
    names = ("images", "regions", "occlusion", "failures")
    tables = {n: t for n in names if (t := store.unit_table(unit, n)) is not None}
    with store.unit_arrays(unit) as z:
        arrays = {k: z[k] for k in z.files}
    for k in [k for k in arrays if k.endswith("/aggregate")]:
        arrays[k] = (arrays[k].astype(np.float64) ** 3).astype(np.float16)  # other maps, same photos
    info = {k: v for k, v in store.marker(unit).items() if k not in ("files", "sha256", "checksum")}
    store.write_unit(unit, tables, arrays, info)
    other = out / "img" / first_folder(HOSTILE, "dlib-resnet")
    times = {p.name: p.stat().st_mtime_ns for p in other.iterdir()}
    result = explore(run, out)
    assert result.drawn == 2  # Arnoldo's dlib-resnet pictures, and the other person's difference under dlib-resnet
    redrawn = {name for name, t in times.items() if (other / name).stat().st_mtime_ns != t}
    assert redrawn == {"difference.png"}
    after = {r["name"]: r for r in index_rows(result)}
    assert after[HOSTILE]["values"][(0, "emd")] != before[HOSTILE]["values"][(0, "emd")]
    assert after[HOSTILE]["values"][(1, "emd")] == before[HOSTILE]["values"][(1, "emd")]


def test_parallel_workers_write_the_same_site(site: ExploreResult, small_run: Path, tmp_path: Path) -> None:
    two = explore(small_run, tmp_path / "site", workers=2)
    files = sorted(p.relative_to(site.site) for p in site.site.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(two.site) for p in two.site.rglob("*") if p.is_file())
    for f in files:
        if f.name != ".leam-output":
            assert (site.site / f).read_bytes() == (two.site / f).read_bytes(), f


def test_refuses_to_overwrite_what_leam_did_not_write(small_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "site"
    out.mkdir()
    (out / "index.html").write_text("mine")
    with pytest.raises(LeamError, match="leam did not write"):
        explore(small_run, out)
    assert sorted(p.name for p in out.iterdir()) == ["index.html"] and (out / "index.html").read_text() == "mine"
    other = tmp_path / "other"
    page = other / "people" / f"{file_stem('Arnoldo_Aleman')}.html"
    page.parent.mkdir(parents=True)
    page.write_text("mine")
    with pytest.raises(LeamError, match="leam did not write"):
        explore(small_run, other)
    assert not (other / "img").exists() and page.read_text() == "mine"
    (tmp_path / "file").write_text("x")
    with pytest.raises(LeamError, match="is a file"):
        explore(small_run, tmp_path / "file")


def test_explorer_never_runs_a_model(small_run: Path, tmp_path: Path, monkeypatch) -> None:
    import torch

    import leam.models

    def refuse(*args, **kwargs):
        raise AssertionError("the explorer ran a model")

    monkeypatch.setattr(torch.nn.Module, "__call__", refuse)
    monkeypatch.setattr(leam.models, "create_model", refuse)
    assert explore(small_run, tmp_path / "site").index.is_file()


def test_explorer_never_imports_torch(small_run: Path, tmp_path: Path) -> None:
    """Not even through POT, which loads torch as a backend when it is installed."""
    code = ("import sys; from leam.explore import explore; explore(sys.argv[1], sys.argv[2]); "
            "print(sorted(m for m in ('torch', 'leam.models', 'leam.maps') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(small_run), str(tmp_path / "site")], capture_output=True,
                         text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
    assert "POT_BACKEND_DISABLE_PYTORCH" not in os.environ


def test_cli_explore(small_run: Path, tmp_path: Path, capsys) -> None:
    from leam.cli.main import main

    assert main(["explore", str(small_run), "--out", str(tmp_path / "s"), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "s/index.html" in out and "2 people" in out
    assert main(["explore", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no run.json" in err


def test_prior_and_difference_by_hand() -> None:
    total = maps.Sums(3, np.array([[3.0, 0.0], [0.0, 3.0]]))
    own = maps.Sums(1, np.array([[1.0, 0.0], [0.0, 0.0]]))
    np.testing.assert_array_equal(maps.prior(total, own), [[1.0, 0.0], [0.0, 1.5]])
    assert maps.prior(total, total) is None
    # as distributions: [[1, 0], [0, 0]] vs [[0.4, 0], [0, 0.6]] differ by [[0.6, 0], [0, -0.6]]; scaled to ±1
    np.testing.assert_allclose(maps.difference(own.maps, maps.prior(total, own)), [[1.0, 0.0], [0.0, -1.0]])
    assert all(math.isnan(v) for v in maps.distances(np.ones((4, 4)), None))


def test_a_person_with_failures_only_and_a_run_without_attributes(small_run: Path, tmp_path: Path) -> None:
    """Tables written by hand: a person whose every photo failed is listed with a page that says so; without
    attributes there are no attribute filters."""
    run = copy_run(small_run, tmp_path / "run")
    tables = RunStore(run).tables()
    ghost = pd.DataFrame([{"model": "facenet", "identity": "Ghost", "image": "Ghost/1.jpg", "stage": "face",
                           "reason": "no face found"}])
    pd.concat([tables["failures"], ghost], ignore_index=True).to_parquet(run / "tables" / "failures.parquet")
    tables["images"].drop(columns="attr_gender").to_parquet(run / "tables" / "images.parquet")
    (run / "tables" / "checksums.json").unlink()  # tables written by hand: none of leam's checksums
    result = explore(run, tmp_path / "site")
    rows = index_rows(result)
    assert [r["name"] for r in rows][-1] == "Ghost" and rows[-1]["general"][-1] == ""  # no maps: last
    page = (result.site / "people" / f"{file_stem('Ghost')}.html").read_text(encoding="utf-8")
    assert page.count("No maps of this person under this model") == 2 and "no face found" in page
    assert "<select data-attr" not in result.index.read_text(encoding="utf-8")
