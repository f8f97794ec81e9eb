"""``leam explore RUN``: a static site to browse a study's people, their photos and maps."""

from __future__ import annotations

import argparse

from leam.cli._common import workers_count


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explore", help="write a static site to browse every identity of a study's run folder")
    p.add_argument("run", metavar="RUN", help="the run folder of `leam study`")
    p.add_argument("--out", metavar="SITE", default=None,
                   help="the folder to write the site in (default: RUN/explore); a later run draws only what changed")
    p.add_argument("--workers", type=workers_count, default=1, metavar="N",
                   help="processes drawing pictures at once: a number, or auto (default: 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from leam.cli._common import progress_bar
    from leam.explore import explore

    with progress_bar("exploring", unit="step") as progress:
        result = explore(args.run, args.out, args.workers, progress)
    print(f"wrote {result.index} ({result.people} people; pictures drawn for {result.drawn} identity × model, "
          f"{result.files} files, in {result.seconds:.1f} s); open it in a browser")
    return 0
