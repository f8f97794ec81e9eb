"""Everything leam shows: pictures of maps (``render``), the files of an explanation (``explanation``),
verify's outputs (``verification``), and every HTML page over one page helper (``page``): the study
report (``html``, with ``tables`` and ``plots``), protect's pages (``protect``) and the demo's index
(``demo``). It reads results only and never imports torch or a model."""

from leam.report.html import write_report

__all__ = ["write_report"]
