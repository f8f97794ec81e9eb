"""The report's scorecard: each headline claim of the reference study, its figure, the run's figure with a
95 % CI, and a verdict (reproduced / partly / not reproduced / not testable), from the run's summary tables
only (``leam.report.tables.summarise_study``).

One function, ``scorecard``, scores every claim of ``CLAIMS``. A ``Claim`` holds its rules, one sentence per
verdict, beside the judge that applies them, and the report shows the rules under the verdicts. Claims judged
per model get an "all models" row: reproduced if every testable model reproduces the claim, not reproduced if
none does even partly, partly otherwise. The judges, and how they take CIs from the summaries, are in
``leam.report.claims``.

>>> card = scorecard(summaries, model_sizes(manifest))  # doctest: +SKIP
>>> card[card["model"].isin([ALL, ACROSS])][["claim", "verdict"]]  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from leam.report.claims import (
    ACROSS,
    ALL,
    NOT_REPRODUCED,
    NOT_TESTABLE,
    PARTLY,
    REPRODUCED,
    Score,
    Summaries,
    judge_bc,
    judge_gender,
    judge_hair,
    judge_layers_and_models,
    judge_nose,
    judge_occlusion,
    judge_size,
    judge_transfer,
    judge_variability,
)
from leam.report.page import esc, html_table, note

COLUMNS = ["claim", "statement", "model", "reference", "measure", "figure", "ci_low", "ci_high", "p", "detail",
           "verdict", "why"]
COMBINED_RULE = ("all models: reproduced if every testable model reproduces the claim, not reproduced if none "
                 "reproduces it even partly, partly otherwise; not testable if no model is")
# parameters of the registered models' nets (sum of ``numel`` of ``net.parameters()``; tests/report/test_scorecard.py
# checks them against the registry): copied, as the report imports no model
MODEL_PARAMETERS = {"dlib-resnet": 5_614_592, "facenet": 23_467_824, "facenet-keras": 22_779_312,
                    "arcface-mbf": 3_391_680, "sface": 9_631_936, "iresnet18": 24_025_600, "iresnet34": 34_139_328,
                    "iresnet50": 43_590_848, "iresnet100": 65_156_160}


@dataclass(frozen=True)
class Claim:
    """A headline claim, the reference figure, what the run measures, the rule of each verdict, and its judge
    (summaries, model sizes → scores)."""

    id: str
    statement: str
    reference: str
    measure: str
    rules: Mapping[str, str]
    judge: Callable[[Summaries, Mapping[str, float]], list[Score]] = field(repr=False)


def scorecard(summaries: Summaries, sizes: Mapping[str, float] | None = None) -> pd.DataFrame:
    """The scorecard of a run: one row per claim of ``CLAIMS`` and model (``COLUMNS``), each per-model claim
    with an "all models" row first. ``summaries``: ``summarise_study``'s tables by name; ``sizes``: parameters
    per model (``model_sizes``), for the claim that larger models are more robust."""
    rows = []
    for claim in CLAIMS:
        scores = claim.judge(summaries, sizes or {})
        if not any(s.model in (ALL, ACROSS) for s in scores):
            scores = [combined(scores), *scores]
        for s in scores:
            why = s.why or claim.rules.get(s.verdict, "")
            rows.append({"claim": claim.id, "statement": claim.statement, "model": s.model,
                         "reference": claim.reference, "measure": claim.measure, "figure": s.figure,
                         "ci_low": s.ci_low, "ci_high": s.ci_high, "p": s.p, "detail": s.detail,
                         "verdict": s.verdict, "why": why})
    return pd.DataFrame(rows, columns=COLUMNS)


def combined(scores: Sequence[Score]) -> Score:
    """The "all models" row of per-model scores (``COMBINED_RULE``)."""
    testable = [s for s in scores if s.verdict != NOT_TESTABLE]
    detail = "; ".join(f"{s.model}: {_figure_text(s)}{s.verdict}" for s in scores)
    if not testable:
        reasons = "; ".join(dict.fromkeys(f"{s.model}: {s.why}" for s in scores)) or "no model to score"
        return Score(ALL, NOT_TESTABLE, detail, why=reasons)
    counts = {v: sum(s.verdict == v for s in testable) for v in (REPRODUCED, PARTLY, NOT_REPRODUCED)}
    verdict = REPRODUCED if counts[REPRODUCED] == len(testable) else \
        NOT_REPRODUCED if counts[NOT_REPRODUCED] == len(testable) else PARTLY
    said = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    return Score(ALL, verdict, detail, why=f"of {len(testable)} testable models: {said}")


def model_sizes(manifest: Mapping) -> dict[str, float]:
    """Parameters per model of a run (``run.json``): a spec's "parameters" where it records them, else
    ``MODEL_PARAMETERS`` for a registered model; a model file of the user's without a recorded size is left out."""
    config = manifest.get("config", {})
    files, specs = config.get("model_files") or {}, manifest.get("models", {})
    out = {}
    for m in config.get("models", []):
        spec = specs.get(m)
        n = spec.get("parameters") if isinstance(spec, dict) else None
        n = MODEL_PARAMETERS.get(m) if n is None and m not in files else n
        if isinstance(n, (int, float)) and n > 0:
            out[m] = float(n)
    return out


def _figure_text(s: Score) -> str:
    if not math.isfinite(s.figure):
        return ""
    ci = f" [{s.ci_low:.3g}, {s.ci_high:.3g}]" if math.isfinite(s.ci_low) else ""
    return f"{s.figure:.3g}{ci} "


# ----------------------------------------------------------------------------------------- claims


def _rules(reproduced: str, not_reproduced: str, not_testable: str, partly: str = "—") -> dict[str, str]:
    return {REPRODUCED: reproduced, PARTLY: partly, NOT_REPRODUCED: not_reproduced, NOT_TESTABLE: not_testable}


CLAIMS: tuple[Claim, ...] = (
    Claim("1", "Layers differ in focus while models agree overall", "qualitative",
          "region shares of the top 1 % pixels: mean total-variation distance between a model's single layers ÷ "
          "that between the models' aggregate maps (descriptive, no CI)",
          _rules("the model's layers differ from each other more than the models' aggregate maps do (ratio > 1)",
                 "they differ no more (ratio ≤ 1)", "fewer than two models, or than two single layers, with "
                 "region shares of the top 1 % pixels"), judge_layers_and_models),
    Claim("2", "Maps of the same person overlap more than maps of different people",
          "BC 0.32–0.57 same vs 0.04–0.13 different (3–8×)",
          "BC of aggregate maps at the top 1 %: same ÷ different identities (CI: delta method); p: Mann–Whitney",
          _rules("same > different, p < 0.05, and the ratio's CI reaches 3–8×", "same ≤ different, or p ≥ 0.05",
                 "no BC of pairs at the top 1 %, or fewer than two pairs of a kind",
                 "same > different, p < 0.05, but the ratio's CI lies outside 3–8×"), judge_bc),
    Claim("3", "The nose holds a large share of the top pixels", "nose 18.9–29.7 % of the top 1 %",
          "nose's share of the aggregate map's top 1 % pixels",
          _rules("the share's CI overlaps 18.9–29.7 %", "neither", "no nose share at the top 1 % (no such "
                 "threshold, or fewer than two photos)", "the CI lies outside 18.9–29.7 %, but the share is above "
                 "the nose's share of all pixels (top 100 %; the difference's CI above 0)"), judge_nose),
    Claim("4", "Occluding the map's top pixels lowers the cosine more than random pixels",
          "drop at 1 %: 0.1148 LEAM vs 0.0286 random (4.0×)",
          "drop of cosine similarity at 1 % occlusion, aggregate map: LEAM ÷ random (CI: delta method); p: Wilcoxon",
          _rules("LEAM > random, p < 0.05, and the ratio's CI holds 4.0", "LEAM ≤ random, or p ≥ 0.05",
                 "no occlusion at 1 %, or fewer than two photos", "LEAM > random, p < 0.05, but the ratio's CI "
                 "excludes 4.0"), judge_occlusion),
    Claim("5a", "Maps transfer across models", "other models' maps lower a model's cosine more than random",
          "per occluded model, at 1 %: how many other models' maps give a mean drop whose CI lies above its random "
          "baseline (figure: their mean drop ÷ random)",
          _rules("every other model's maps", "none", "no transfer (one model, or transfer switched off), or no "
                 "random baseline", "some, not all"), judge_transfer),
    Claim("5b", "Larger models are more robust", "smaller drop for larger models",
          "Spearman ρ over models of parameters with the mean drop at 1 % under every model's maps; p: exact "
          "permutation",
          _rules("ρ < 0 and p < 0.05", "ρ ≥ 0, or p ≥ 0.05", "no transfer, or sizes known for fewer than five "
                 "models (no ordering of fewer reaches p < 0.05)"), judge_size),
    Claim("6", "Occlusion lowers the cosine more on women's photos", "drop larger on women's photos",
          "drop at 1 % occlusion, aggregate map: women − men (CI: Welch); p: Mann–Whitney",
          _rules("women > men and p < 0.05", "women ≤ men, or p ≥ 0.05", "no gender attribute (manifest column "
                 "gender or sex, F/M), or fewer than two photos of women or of men"), judge_gender),
    Claim("7", "Maps vary within a person", "within-person CV above 80 % for some regions",
          "per region: mean over identities of the coefficient of variation of the aggregate map's top 1 % share "
          "over the person's photos (the region whose CI reaches highest)",
          _rules("some region's CI lies above 80 %", "no region's CI lies above 80 %",
                 "no identity with two or more photos and a share of the top 1 %"), judge_variability),
    Claim("8", "The earliest layers attend to hair", "qualitative",
          "hair's share of the top 1 % pixels: the earliest third of a model's layers − the later layers",
          _rules("the difference's CI lies above 0", "the CI reaches 0 or below",
                 "the face parser labels no hair (e.g. landmarks), or fewer than two single layers"), judge_hair),
)


# -------------------------------------------------------------------------------------- the page


INTRO = ("Each headline claim of the reference study, scored on this run's summary tables by one function "
         "(leam.report.scorecard). Figures are at the reference study's top 1 % of pixels and 1 % occlusion. "
         "95 % CIs: mean ± 1.96 standard errors; ratios and differences of two means by the delta method, the two "
         "taken as independent (conservative for paired samples). A claim scored per model has an “all models” "
         "row: " + COMBINED_RULE + ". The rule of every verdict is in the last table; the rows are in "
         "report_tables/scorecard.csv.")


def scorecard_body(card: pd.DataFrame) -> str:
    """The scorecard section's HTML (without its heading): the verdict per claim, per model, and the rules."""
    if card.empty:
        return note("Nothing to score.")
    head = card[card["model"].isin([ALL, ACROSS])]
    per_model = card[~card["model"].isin([ALL, ACROSS])]
    rules = pd.DataFrame([{"claim": c.id, "measure": c.measure, **c.rules} for c in CLAIMS])
    return "\n".join([
        f"<p>{esc(INTRO)}</p>",
        html_table(head[["claim", "statement", "reference", "verdict", "detail", "why"]].rename(
            columns={"detail": "this run", "why": "why"}), "Verdict per claim"),
        html_table(per_model[["claim", "model", "figure", "ci_low", "ci_high", "p", "detail", "verdict", "why"]],
                   "Per model"),
        html_table(rules, "The rules: what each verdict takes"),
    ])
