"""Moved to ``leam.report.explanation`` (the files of an explanation)."""

from leam._io import write_file as atomic_write_bytes  # noqa: F401 (the old name of the atomic writer)
from leam.report.explanation import *  # noqa: F401,F403
from leam.report.explanation import (  # noqa: F401
    EXPLANATION_FILES,
    explanation_files,
    explanation_summary,
    layer_files,
    write_explanation,
    write_png,
)

summary_dict = explanation_summary  # the old name
