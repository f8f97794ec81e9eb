"""The scorecard (``leam.report.scorecard``): every verdict of every claim forced on summary frames built by
hand (figures and CIs worked out as literals), the "all models" row, and the scorecard of a real small run in
its report."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from leam.report.claims import ACROSS, ALL, NOT_REPRODUCED, NOT_TESTABLE, PARTLY, REPRODUCED, Score, spearman
from leam.report.scorecard import CLAIMS, COLUMNS, MODEL_PARAMETERS, combined, model_sizes, scorecard, scorecard_body
from leam.report.tables import Spilled
from tests.study.conftest import small_run  # noqa: F401  (the shared small study, a session fixture)

HOSTILE = '<b onmouseover="x">Zoë</b>'


def verdicts(card: pd.DataFrame, claim: str) -> dict[str, str]:
    """{model: verdict} of one claim."""
    rows = card[card["claim"] == claim]
    return dict(zip(rows["model"], rows["verdict"]))


def row(card: pd.DataFrame, claim: str, model: str) -> pd.Series:
    rows = card[(card["claim"] == claim) & (card["model"] == model)]
    assert len(rows) == 1, rows
    return rows.iloc[0]


# ------------------------------------------------------------------------------ summary frames by hand


def similarity(*rows: tuple[str, float, float, float], threshold: float = 1.0, std: float = 0.1,
               n: int = 100) -> pd.DataFrame:
    """(model, same mean, different mean, p) per model, at one threshold, aggregate maps' BC."""
    return pd.DataFrame([{"model": m, "layer": "aggregate", "threshold": threshold, "metric": "bc", "same_mean": s,
                          "same_std": std, "same_n": n, "different_mean": d, "different_std": std, "different_n": n,
                          "difference": s - d, "u": 0.0, "p_value": p} for m, s, d, p in rows])


def occlusion(*rows: tuple[str, float, float, float], percent: float = 1.0, std: float = 0.05,
              n: int = 100) -> pd.DataFrame:
    """(model, LEAM mean drop, random mean drop, Wilcoxon p) per model, aggregate map."""
    return pd.DataFrame([{"model": m, "layer": "aggregate", "percent": percent, "images": n, "map_mean": a,
                          "map_std": std, "random_mean": b, "random_std": std, "random_face_mean": b,
                          "random_face_std": std, "ratio_random": a / b, "ratio_random_face": a / b, "p_random": p,
                          "p_random_face": p} for m, a, b, p in rows])


def regions(*rows: tuple[str, str, str, float, float], std: float = 0.1, n: int = 100) -> pd.DataFrame:
    """(model, layer, class, threshold, mean share) per row."""
    return pd.DataFrame([{"model": m, "layer": layer, "class": c, "measure": "share", "threshold": t, "mean": v,
                          "std": std, "images": n} for m, layer, c, t, v in rows])


def transfer(drops: dict[tuple[str, str], float], random: dict[str, float], std: float = 0.01,
             n: int = 100) -> pd.DataFrame:
    """{(source, target): mean drop} at 1 %, with each target's random baseline."""
    return pd.DataFrame([{"source_model": s, "target_model": t, "percent": 1.0, "drop_mean": d, "drop_std": std,
                          "drop_n": n, "random_mean": random[t], "random_face_mean": random[t],
                          "ratio_random": d / random[t], "ratio_random_face": d / random[t]}
                         for (s, t), d in drops.items()])


def gender(*rows: tuple[str, str, float, str, float, float], n: int = 100) -> pd.DataFrame:
    """(model, group a, mean a, group b, mean b, Mann–Whitney p): the map's drop at 1 %, aggregate map."""
    return pd.DataFrame([{"model": m, "layer": "aggregate", "percent": 1.0, "kind": "map", "group_a": ga,
                          "group_b": gb, "a_mean": a, "a_std": 0.05, "a_n": n, "b_mean": b, "b_std": 0.05, "b_n": n,
                          "difference": a - b, "u": 0.0, "p_value": p} for m, ga, a, gb, b, p in rows])


def per_identity(model: str, cvs: dict[str, list[float]]) -> pd.DataFrame:
    """{class: CV per identity} of the aggregate map's top 1 % share."""
    return pd.DataFrame([{"model": model, "identity": f"id{i}", "layer": "aggregate", "class": c, "measure": "share",
                          "threshold": 1.0, "images": 3, "mean": 0.1, "std": 0.1 * v, "cv": v}
                         for c, values in cvs.items() for i, v in enumerate(values)])


# ------------------------------------------------------------------------------------------ claim 1


def test_layers_differ_more_than_models_is_reproduced_else_not() -> None:
    shares = regions(
        ("a", "early", "hair", 1, 0.9), ("a", "early", "nose", 1, 0.1), ("a", "late", "hair", 1, 0.1),
        ("a", "late", "nose", 1, 0.9), ("a", "aggregate", "hair", 1, 0.5), ("a", "aggregate", "nose", 1, 0.5),
        ("b", "early", "hair", 1, 0.5), ("b", "early", "nose", 1, 0.5), ("b", "late", "hair", 1, 0.55),
        ("b", "late", "nose", 1, 0.45), ("b", "aggregate", "hair", 1, 0.4), ("b", "aggregate", "nose", 1, 0.6))
    card = scorecard({"regions": shares})
    # total variation: a's layers 0.8, b's 0.05, the aggregates 0.1
    assert verdicts(card, "1") == {ALL: PARTLY, "a": REPRODUCED, "b": NOT_REPRODUCED}
    assert row(card, "1", "a")["figure"] == pytest.approx(8.0) and row(card, "1", "b")["figure"] == pytest.approx(0.5)


def test_one_model_cannot_show_that_models_agree() -> None:
    shares = regions(("a", "early", "nose", 1, 0.2), ("a", "late", "nose", 1, 0.3), ("a", "aggregate", "nose", 1, 0.3))
    assert verdicts(scorecard({"regions": shares}), "1") == {ALL: NOT_TESTABLE}


# ------------------------------------------------------------------------------------------ claim 2


@pytest.mark.parametrize(("same", "different", "p", "verdict"), [
    (0.45, 0.10, 1e-6, REPRODUCED),  # 4.5×
    (0.45, 0.35, 1e-6, PARTLY),  # 1.29×, CI [1.19, 1.38]
    (0.45, 0.35, 0.2, NOT_REPRODUCED),  # not significant
    (0.30, 0.35, 1e-6, NOT_REPRODUCED),  # the wrong way round
])
def test_bc_verdicts(same: float, different: float, p: float, verdict: str) -> None:
    card = scorecard({"similarity": similarity(("m", same, different, p))})
    assert verdicts(card, "2") == {ALL: verdict, "m": verdict}


def test_bc_ratio_and_its_ci_by_hand() -> None:
    r = row(scorecard({"similarity": similarity(("m", 0.45, 0.35, 1e-6))}), "2", "m")
    se = math.sqrt(0.01**2 + (0.45 / 0.35) ** 2 * 0.01**2) / 0.35  # standard errors 0.1 / √100
    assert r["figure"] == pytest.approx(0.45 / 0.35)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((0.45 / 0.35 - 1.959964 * se, 0.45 / 0.35 + 1.959964 * se))
    assert r["p"] == 1e-6 and r["why"].startswith("same > different, p < 0.05, but")


def test_bc_not_testable_without_pairs_at_the_top_1_percent() -> None:
    assert verdicts(scorecard({}), "2") == {ALL: NOT_TESTABLE}
    card = scorecard({"similarity": similarity(("m", 0.45, 0.1, 1e-6), threshold=5.0)})
    assert verdicts(card, "2") == {ALL: NOT_TESTABLE} and "top 1 %" in row(card, "2", ALL)["why"]
    card = scorecard({"similarity": similarity(("m", 0.45, 0.1, 1e-6), n=1)})
    assert verdicts(card, "2") == {ALL: NOT_TESTABLE, "m": NOT_TESTABLE}


# ------------------------------------------------------------------------------------------ claim 3


@pytest.mark.parametrize(("share", "everywhere", "verdict"), [
    (0.25, 0.03, REPRODUCED),
    (0.45, 0.03, PARTLY),  # above the range, but the nose is picked out
    (0.02, 0.03, NOT_REPRODUCED),
    (0.45, None, NOT_REPRODUCED),  # no top-100 % share: the chance level is unknown
])
def test_nose_share_verdicts(share: float, everywhere: float | None, verdict: str) -> None:
    rows = [("m", "aggregate", "nose", 1, share)]
    rows += [("m", "aggregate", "nose", 100, everywhere)] if everywhere else []
    card = scorecard({"regions": regions(*rows)})
    assert verdicts(card, "3") == {ALL: verdict, "m": verdict}
    r = row(card, "3", "m")
    assert (r["figure"], r["ci_low"], r["ci_high"]) == pytest.approx((share, share - 0.0196, share + 0.0196), abs=1e-6)


def test_nose_not_testable_without_a_nose() -> None:
    card = scorecard({"regions": regions(("m", "aggregate", "skin", 1, 0.5))})
    assert verdicts(card, "3") == {ALL: NOT_TESTABLE, "m": NOT_TESTABLE}


# ------------------------------------------------------------------------------------------ claim 4


@pytest.mark.parametrize(("leam", "random", "p", "verdict"), [
    (0.1148, 0.0286, 1e-9, REPRODUCED),  # the reference's figures: 4.0×
    (0.0789, 0.0498, 1e-9, PARTLY),  # arcface-mbf on all of LFW: 1.58×
    (0.0789, 0.0498, 0.3, NOT_REPRODUCED),
    (0.02, 0.03, 1e-9, NOT_REPRODUCED),
])
def test_occlusion_verdicts(leam: float, random: float, p: float, verdict: str) -> None:
    card = scorecard({"occlusion": occlusion(("m", leam, random, p), std=0.02)})
    assert verdicts(card, "4") == {ALL: verdict, "m": verdict}
    assert row(card, "4", "m")["figure"] == pytest.approx(leam / random)


def test_occlusion_not_testable_without_1_percent() -> None:
    card = scorecard({"occlusion": occlusion(("m", 0.1, 0.03, 1e-9), percent=2.0)})
    assert verdicts(card, "4") == {ALL: NOT_TESTABLE}


# ---------------------------------------------------------------------------------------- claim 5


def test_transfer_verdicts_per_occluded_model() -> None:
    drops = {("a", "a"): 0.9, ("b", "a"): 0.10, ("c", "a"): 0.10,  # both above a's 0.05 (CI ± 0.002)
             ("a", "b"): 0.10, ("c", "b"): 0.01,  # one of two above b's 0.05
             ("a", "c"): 0.01, ("b", "c"): 0.05}  # none above c's 0.05
    card = scorecard({"transfer": transfer(drops, {"a": 0.05, "b": 0.05, "c": 0.05})})
    assert verdicts(card, "5a") == {ALL: PARTLY, "a": REPRODUCED, "b": PARTLY, "c": NOT_REPRODUCED}
    assert row(card, "5a", "a")["figure"] == pytest.approx(2.0)  # the others' drops ÷ random, the diagonal left out


def test_transfer_not_testable_with_one_model() -> None:
    card = scorecard({"transfer": transfer({("a", "a"): 0.1}, {"a": 0.05})})
    assert verdicts(card, "5a") == {ALL: NOT_TESTABLE} and verdicts(card, "5b") == {ACROSS: NOT_TESTABLE}


def five_models(drops: list[float]) -> tuple[dict, dict]:
    models = ["m1", "m2", "m3", "m4", "m5"]
    table = transfer({(s, t): d for t, d in zip(models, drops) for s in models}, dict.fromkeys(models, 0.01))
    return {"transfer": table}, {m: (i + 1) * 1e6 for i, m in enumerate(models)}


def test_larger_models_more_robust_verdicts() -> None:
    summaries, sizes = five_models([0.5, 0.4, 0.3, 0.2, 0.1])  # the larger, the smaller the drop
    r = row(scorecard(summaries, sizes), "5b", ACROSS)
    assert (r["verdict"], r["figure"], r["p"]) == (REPRODUCED, pytest.approx(-1.0), pytest.approx(2 / 120))
    summaries, sizes = five_models([0.1, 0.2, 0.3, 0.4, 0.5])
    assert row(scorecard(summaries, sizes), "5b", ACROSS)["verdict"] == NOT_REPRODUCED
    summaries, sizes = five_models([0.5, 0.4, 0.3, 0.1, 0.2])  # ρ = −0.9, exact p = 10/120
    r = row(scorecard(summaries, sizes), "5b", ACROSS)
    assert r["verdict"] == NOT_REPRODUCED and r["p"] > 0.05
    del sizes["m5"]  # four sizes: no ordering of four reaches p < 0.05
    assert row(scorecard(summaries, sizes), "5b", ACROSS)["verdict"] == NOT_TESTABLE


def test_spearman_exact_p_by_hand() -> None:
    assert spearman([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]) == (pytest.approx(-1.0), pytest.approx(2 / 120))
    rho, p = spearman([1, 2, 3, 4, 5], [5, 4, 3, 1, 2])
    # |ρ| ≥ 0.9 for the two perfect orders and the 4 + 4 permutations one swap of neighbours at an end away
    assert rho == pytest.approx(-0.9) and p == pytest.approx(10 / 120)
    assert all(math.isnan(v) for v in spearman([1, 2, 3, 4, 5], [0.1] * 5))
    x, y = np.arange(12.0), np.random.default_rng(0).random(12)
    assert spearman(x, y) == pytest.approx(tuple(scipy_stats.spearmanr(x, y)))  # above 8 values: scipy's


# ------------------------------------------------------------------------------------------ claim 6


@pytest.mark.parametrize(("rows", "verdict"), [
    ([("m", "F", 0.09, "M", 0.076, 1e-14)], REPRODUCED),
    ([("m", "Male", 0.076, "female", 0.09, 1e-14)], REPRODUCED),  # women second: sorted by value
    ([("m", "F", 0.0153, "M", 0.0187, 3e-10)], NOT_REPRODUCED),  # more on men's photos
    ([("m", "F", 0.0964, "M", 0.0985, 0.74)], NOT_REPRODUCED),
    ([("m", "x", 0.09, "y", 0.07, 1e-9)], NOT_TESTABLE),  # values not read as women / men
])
def test_gender_verdicts(rows: list, verdict: str) -> None:
    card = scorecard({"groups_gender_occlusion_drop": gender(*rows)})
    assert verdicts(card, "6") == {ALL: verdict, "m": verdict}


def test_gender_difference_and_ci_by_hand() -> None:
    r = row(scorecard({"groups_Sex_occlusion_drop": gender(("m", "F", 0.09, "M", 0.076, 1e-14))}), "6", "m")
    half = 1.959964 * math.hypot(0.005, 0.005)
    assert (r["figure"], r["ci_low"], r["ci_high"], r["p"]) == pytest.approx((0.014, 0.014 - half, 0.014 + half, 1e-14))


def test_gender_not_testable_without_the_attribute() -> None:
    card = scorecard({"groups_age_occlusion_drop": gender(("m", "F", 0.09, "M", 0.076, 1e-14))})
    assert verdicts(card, "6") == {ALL: NOT_TESTABLE} and "gender" in row(card, "6", ALL)["why"]


# ------------------------------------------------------------------------------------------ claim 7


def test_variability_verdicts_also_from_a_spilled_table(tmp_path: Path) -> None:
    high = per_identity("a", {"nose": [1.2, 1.3, 1.1, 1.25], "skin": [0.1, 0.2, 0.1, 0.2]})
    low = per_identity("b", {"nose": [0.3, 0.9, 0.4, 1.6], "skin": [0.1, 0.2, 0.1, 0.2]})  # mean 0.8: CI reaches below
    both = pd.concat([high, low], ignore_index=True)
    both.to_parquet(tmp_path / "per.parquet", index=False)
    card = scorecard({"regions_identity": Spilled(tmp_path / "per.parquet", len(both))})
    assert verdicts(card, "7") == {ALL: PARTLY, "a": REPRODUCED, "b": NOT_REPRODUCED}
    r = row(card, "7", "a")
    half = 1.959964 * np.std([1.2, 1.3, 1.1, 1.25], ddof=1) / 2
    assert (r["figure"], r["ci_low"], r["ci_high"]) == pytest.approx((1.2125, 1.2125 - half, 1.2125 + half))
    assert r["detail"].startswith("nose:")


def test_variability_not_testable_without_identities() -> None:
    assert verdicts(scorecard({"regions_identity": per_identity("a", {"nose": [1.5]})}), "7") == {
        ALL: NOT_TESTABLE, "a": NOT_TESTABLE}


# ------------------------------------------------------------------------------------------ claim 8


@pytest.mark.parametrize(("hair", "verdict"), [
    ([0.4, 0.3, 0.1, 0.1, 0.05, 0.05], REPRODUCED),  # earliest two 0.35 vs later four 0.075
    ([0.1, 0.12, 0.1, 0.1, 0.1, 0.1], NOT_REPRODUCED),  # 0.11 vs 0.1: the CI (± 0.017) reaches below 0
    ([0.05, 0.05, 0.1, 0.2, 0.3, 0.4], NOT_REPRODUCED),
])
def test_hair_verdicts(hair: list[float], verdict: str) -> None:
    rows = [("m", f"layer{i}", "hair", 1, v) for i, v in enumerate(hair)] + [("m", "aggregate", "hair", 1, 0.2)]
    card = scorecard({"regions": regions(*rows)})
    assert verdicts(card, "8") == {ALL: verdict, "m": verdict}
    r = row(card, "8", "m")
    half = 1.959964 * math.hypot(math.sqrt(2) * 0.01 / 2, math.sqrt(4) * 0.01 / 4)
    d = np.mean(hair[:2]) - np.mean(hair[2:])
    assert (r["figure"], r["ci_low"], r["ci_high"]) == pytest.approx((d, d - half, d + half))


def test_hair_not_testable_with_a_parser_without_hair() -> None:
    card = scorecard({"regions": regions(("m", "layer0", "nose", 1, 0.3), ("m", "layer1", "nose", 1, 0.2))})
    assert verdicts(card, "8") == {ALL: NOT_TESTABLE} and "hair" in row(card, "8", ALL)["why"]
    card = scorecard({"regions": regions(("m", "layer0", "hair", 1, 0.3), ("m", "layer1", "hair", 1, 0.2), n=1)})
    assert verdicts(card, "8") == {ALL: NOT_TESTABLE, "m": NOT_TESTABLE}  # one photo: no CI


# ------------------------------------------------------------------------------------- the whole card


@pytest.mark.parametrize(("given", "verdict"), [
    ([REPRODUCED, REPRODUCED, NOT_TESTABLE], REPRODUCED),
    ([REPRODUCED, NOT_REPRODUCED], PARTLY),
    ([PARTLY, PARTLY], PARTLY),
    ([NOT_REPRODUCED, NOT_TESTABLE], NOT_REPRODUCED),
    ([NOT_TESTABLE, NOT_TESTABLE], NOT_TESTABLE),
])
def test_the_all_models_row(given: list[str], verdict: str) -> None:
    scores = [Score(f"m{i}", v, why="no rows" if v == NOT_TESTABLE else "") for i, v in enumerate(given)]
    assert combined(scores).verdict == verdict


def test_a_run_with_no_tables_is_not_testable_on_every_claim() -> None:
    card = scorecard({"identities": pd.DataFrame()})
    assert list(card.columns) == COLUMNS and list(card["claim"]) == [c.id for c in CLAIMS]
    assert set(card["verdict"]) == {NOT_TESTABLE} and card["why"].str.len().min() > 10


def test_every_claim_has_a_rule_for_every_verdict_it_gives() -> None:
    for claim in CLAIMS:
        assert {REPRODUCED, NOT_REPRODUCED, NOT_TESTABLE} <= {v for v, rule in claim.rules.items() if rule != "—"}


def test_the_section_escapes_model_names() -> None:
    body = scorecard_body(scorecard({"similarity": similarity((HOSTILE, 0.45, 0.1, 1e-6))}))
    assert HOSTILE not in body and "&lt;b onmouseover=&quot;x&quot;&gt;Zoë&lt;/b&gt;" in body
    assert "The rules: what each verdict takes" in body


def test_model_sizes_from_run_json() -> None:
    manifest = {"config": {"models": ["facenet", "mine", "sface"], "model_files": {"mine": {"path": "m.onnx"}}},
                "models": {"facenet": {}, "mine": {}, "sface": {"parameters": 7}}}
    assert model_sizes(manifest) == {"facenet": MODEL_PARAMETERS["facenet"], "sface": 7.0}


def test_model_parameters_are_the_registry_nets() -> None:
    """The copied sizes equal the nets' parameter counts (the IResNets built on the meta device, no weights)."""
    import torch

    from leam.errors import LeamError
    from leam.models import create_model
    from leam.models.iresnet import DEPTHS, IResNet

    for name, count in MODEL_PARAMETERS.items():
        if name.startswith("iresnet"):
            with torch.device("meta"):
                net = IResNet(DEPTHS[int(name.removeprefix("iresnet"))])
        else:
            try:
                net = create_model(name).net
            except LeamError:
                continue  # weights not installed here
        assert sum(p.numel() for p in net.parameters()) == count, name


# ----------------------------------------------------------------------------------------- a real run


def test_scorecard_of_a_real_small_run(small_run: Path, tmp_path: Path) -> None:  # noqa: F811
    """Two models, two people, a gender column, the landmarks parser: the scorecard's figures are the summaries'
    and it opens the report, written beside it as scorecard.csv/.md."""
    from leam.report import write_report
    from leam.report.tables import summarise_study
    from leam.study.store import RunStore

    store = RunStore(small_run)
    summaries = summarise_study(store.tables(), tmp_path)
    card = scorecard(summaries, model_sizes(store.read_manifest()))
    assert verdicts(card, "8") == {ALL: NOT_TESTABLE}  # landmarks label no hair
    assert verdicts(card, "5b") == {ACROSS: NOT_TESTABLE}  # two models
    assert set(verdicts(card, "6")) == {ALL, "dlib-resnet", "facenet"}  # the manifest's gender column
    occ = summaries["occlusion"].query("layer == 'aggregate' and percent == 1").set_index("model")
    for model in ("dlib-resnet", "facenet"):
        got = row(card, "4", model)
        assert got["figure"] == pytest.approx(occ.loc[model, "map_mean"] / occ.loc[model, "random_mean"])
        assert got["p"] == occ.loc[model, "p_random"]

    page = write_report(small_run, tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert page.index('<section id="scorecard">') < page.index('<section id="glance">')
    written = pd.read_csv(tmp_path / "out" / "report_tables" / "scorecard.csv", keep_default_na=False)
    assert list(written["verdict"]) == list(card["verdict"])
    assert (tmp_path / "out" / "report_tables" / "scorecard.md").read_text(encoding="utf-8").startswith("# scorecard")
