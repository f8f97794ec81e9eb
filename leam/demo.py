"""Moved: the runner to ``leam.study.demo``, the index page to ``leam.report.demo``."""

from leam.report.demo import IDENTITY_CHART, write_index  # noqa: F401
from leam.study.demo import (  # noqa: F401
    ROOT_FILES,
    DemoItem,
    demo_outputs,
    explain_item,
    plan_demo,
    run_demo,
    summarise_regions,
)
