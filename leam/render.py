"""Moved to ``leam.report.render`` (pictures of maps)."""

from leam.report.render import *  # noqa: F401,F403
from leam.report.render import (  # noqa: F401
    colorize,
    grid_figure,
    label_overlay,
    legend_handles,
    overlay,
    photo_overlay,
    regions_figure,
    shares_bar_chart,
)
