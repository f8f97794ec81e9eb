"""Moved to ``leam.report.protect`` (the pages of ``leam protect`` and ``leam protect-eval``)."""

from leam.report.protect import *  # noqa: F401,F403
from leam.report.protect import write_eval_report, write_protect_report  # noqa: F401
