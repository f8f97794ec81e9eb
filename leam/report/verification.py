"""The outputs of ``leam verify``: the summary (``summary.json``), the tables (a row per model, per pair,
per photo), the ROC plot, and the plain-text table the command prints. Writers only: the scores are
computed by ``leam.study.verification`` over ``leam.metrics.verification``."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import pandas as pd

from leam._io import text_name, write_file
from leam.metrics.verification import roc_curve, ten_fold_shortfall

if TYPE_CHECKING:  # the report never imports a model
    from leam.study.verification import ModelResult, VerifyReport

REPORT_FILES = ("summary.json", "verify.csv", "pairs.csv", "photos.csv", "roc.png")  # of ``write_verification``


def verification_summary(report: VerifyReport) -> dict:
    """Everything ``summary.json`` holds: the set-up, the counts, each model's scores, the failures."""
    statuses = [p.status for p in report.photos]
    return {
        "data": report.data,
        "seed": report.seed,
        "face": report.face,
        "pairs": {
            "same": len(report.pairs.same),
            "different": len(report.pairs.different),
            "available_same": report.pairs.available_same,
            "scored_same": int(report.scored_same.sum()),
            "scored_different": int(report.scored_different.sum()),
            "left_out_same": int((~report.scored_same).sum()),
            "left_out_different": int((~report.scored_different).sum()),
            "ten_fold_not_computed": ten_fold_shortfall(report.pairs.same_folds[report.scored_same],
                                                        report.pairs.different_folds[report.scored_different]),
        },
        "photos": {
            "used": len(report.photos),
            "ok": statuses.count("ok"),
            **{s: statuses.count(s) for s in ("no_face", "several_faces", "unreadable")},
            "ok_with_several_faces": sum(p.status == "ok" and p.faces_found > 1 for p in report.photos),
        },
        "models": {r.name: {"distance": r.metric, **vars(r.metrics)} for r in report.results},
        "failed_photos": [vars(p) for p in report.failed_photos],
    }


def write_verification(report: VerifyReport, out: str | Path) -> dict[str, Path]:
    """Write ``summary.json``, ``verify.csv`` (a row per model), ``pairs.csv``, ``photos.csv`` and
    ``roc.png`` into ``out``, each whole or not at all; returns their paths by name."""
    out = Path(out)
    paths = {name: out / name for name in REPORT_FILES}
    write_file(paths["summary.json"], (json.dumps(verification_summary(report), indent=2) + "\n").encode())
    rows = [{"model": r.name, "distance": r.metric, **vars(r.metrics)} for r in report.results]
    write_file(paths["verify.csv"], csv_bytes(pd.DataFrame(rows)))
    write_file(paths["photos.csv"], csv_bytes(pd.DataFrame([vars(p) for p in report.photos])))
    write_file(paths["pairs.csv"], csv_bytes(pairs_table(report)))
    write_file(paths["roc.png"], roc_png(report.results))
    return paths


def csv_bytes(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode()


def pairs_table(report: VerifyReport) -> pd.DataFrame:
    """A row per drawn pair: kind, fold, the two photos, whether it was scored, each model's distance."""
    pairs = []
    for kind, idx, folds, scored in (
        ("same", report.pairs.same, report.pairs.same_folds, report.scored_same),
        ("different", report.pairs.different, report.pairs.different_folds, report.scored_different),
    ):
        table = pd.DataFrame({
            "kind": kind,
            "fold": folds,
            "photo_a": [text_name(str(report.pairs.photos[i])) for i in idx[:, 0]],
            "photo_b": [text_name(str(report.pairs.photos[i])) for i in idx[:, 1]],
            "scored": scored,
        })
        for r in report.results:
            table[r.name] = np.nan
            table.loc[scored, r.name] = r.same if kind == "same" else r.different
        pairs.append(table)
    return pd.concat(pairs, ignore_index=True)


def roc_png(results: Sequence[ModelResult]) -> bytes:
    """``plot_roc`` as PNG bytes."""
    buf = io.BytesIO()
    plot_roc(results, buf)
    return buf.getvalue()


def plot_roc(results: Sequence[ModelResult], path: Path | BinaryIO) -> None:
    """TAR against FAR (log scale) for each model, with its AUC in the legend; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for r in results:
        far, tar, _ = roc_curve(r.same, r.different)
        ax.step(np.maximum(far, 0.5 / len(r.different)), tar, where="post", label=f"{r.name} (AUC {r.metrics.auc:.4f})")
    ax.set_xscale("log")
    ax.set(xlabel="false accept rate (different pairs accepted)", ylabel="true accept rate (same pairs accepted)",
           ylim=(0, 1.01), title="verification ROC")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def _plus_minus(value: float | None, spread: float | None) -> str:
    """``value ± spread`` in percent, or "—" when not computed."""
    return "—" if value is None else f"{100 * value:.2f} ± {100 * spread:.2f}"


_FACE_RULE = {"largest": "the largest taken", "central": "the most central taken", "only": "refused"}


def format_table(report: VerifyReport) -> str:
    """The scores as a plain-text table, a row per model, with the pair and photo counts."""
    s = verification_summary(report)
    pct = lambda v: "—" if v is None else f"{100 * v:.2f}"  # noqa: E731
    head = f"{'model':<16} {'pairs s/d':>11} {'10-fold %':>14} {'@spec %':>8} {'AUC':>7} {'TAR@1e-3':>9} " \
           f"{'med same':>9} {'med diff':>9}  distance (spec threshold)"
    lines = [head]
    for r in report.results:
        m = r.metrics
        lines.append(
            f"{r.name:<16} {f'{m.n_same}/{m.n_different}':>11} "
            f"{_plus_minus(m.accuracy_10fold, m.accuracy_10fold_std):>14} {pct(m.accuracy_at_spec):>8} "
            f"{m.auc:>7.4f} {pct(m.tar_at_far):>9} {m.median_same:>9.3f} {m.median_different:>9.3f}  "
            f"{r.metric} ({m.spec_threshold:g})"
        )
    if s["pairs"]["ten_fold_not_computed"]:
        lines.append(f"10-fold accuracy not computed: {s['pairs']['ten_fold_not_computed']}")
    p, ph = s["pairs"], s["photos"]
    lines.append(
        f"pairs drawn: {p['same']} same / {p['different']} different (seed {report.seed}; {p['available_same']} "
        f"same pairs available); left out for want of a face: {p['left_out_same']} same, "
        f"{p['left_out_different']} different"
    )
    lines.append(
        f"photos: {ph['used']} used, {ph['ok']} with a face ({ph['ok_with_several_faces']} with several faces: "
        f"{_FACE_RULE[report.face]}), {ph['no_face']} without a face, "
        f"{ph['several_faces']} with several faces refused, {ph['unreadable']} unreadable"
    )
    return "\n".join(lines)
