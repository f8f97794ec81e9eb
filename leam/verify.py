"""Moved: the maths to ``leam.metrics.verification``, the runner to ``leam.study.verification``, the
outputs to ``leam.report.verification``."""

from leam.face import FACE_CHOICES, choose_face  # noqa: F401
from leam.metrics.verification import (  # noqa: F401
    FAR,
    N_FOLDS,
    VerifyMetrics,
    best_threshold,
    cross_validated_accuracy,
    draw_pairs,
    pair_distances,
    roc_auc,
    roc_curve,
    tar_at_far,
    ten_fold_shortfall,
    verification_metrics,
)
from leam.report.verification import REPORT_FILES, format_table, plot_roc, verification_summary, write_verification
from leam.study.verification import (  # noqa: F401
    ModelResult,
    PairSet,
    PhotoStatus,
    VerifyReport,
    build_pairs,
    embed_photos,
    run_verify,
    spec_distance_threshold,
)

summary_dict = verification_summary  # the old names
write_report = write_verification
__all__ = ["REPORT_FILES", "format_table", "plot_roc", "summary_dict", "write_report"]
