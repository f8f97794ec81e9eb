"""Reports over a study's stored results: tables (CSV, Markdown), figures and one HTML page."""

from leam.report.html import write_report

__all__ = ["write_report"]
