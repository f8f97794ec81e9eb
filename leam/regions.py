"""Moved: the computing half to ``leam.maps.face_regions``, the writers to ``leam.report.explanation``."""

from leam.maps.face_regions import RegionResult, explanation_regions, parse_face  # noqa: F401
from leam.report.explanation import PARSE_FILES, REGIONS_FILES, write_parse, write_regions  # noqa: F401
