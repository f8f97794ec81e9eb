"""``leam report RUN``: a study's stored results as one self-contained HTML page and tables."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write the HTML report (and CSV/Markdown tables) of a study's run folder")
    p.add_argument("run", metavar="RUN", help="the run folder of `leam study`")
    p.add_argument("--out", default=None, help="the HTML file to write (default: RUN/report.html); "
                                               "tables go to report_tables/ beside it")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from leam.report import write_report

    path = write_report(args.run, args.out)
    print(f"wrote {path} (tables in {path.parent / 'report_tables'})")
    return 0
