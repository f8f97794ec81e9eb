"""An explorer site at scale: its files and size, and its index in headless Chromium (rows, load time, how long a
sort by name and a search take in the page).

    leam explore RUN --out SITE
    python benchmarks/explore_site.py SITE

Needs Debian's chromium at /usr/bin/chromium (as the explorer's browser tests). The page is loaded from a copy
beside it with a small timing script appended; the site itself is left as it is.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
DRIVER = """
var rows = function () { return Array.prototype.filter.call(document.querySelectorAll("#people tbody tr"),
  function (r) { return !r.hidden; }); };
var found = {rows: rows().length};
var heads = document.querySelectorAll("#people thead tr:last-child th");
var t0 = performance.now();
heads[0].click();
found.sort_ms = performance.now() - t0;
var search = document.getElementById("search");
t0 = performance.now(); search.value = "an"; search.dispatchEvent(new Event("input"));
found.search_ms = performance.now() - t0; found.search_rows = rows().length;
found.load_ms = performance.timing.loadEventStart - performance.timing.navigationStart;
document.body.dataset.found = JSON.stringify(found);
"""


def site_size(site: Path) -> tuple[int, int, int]:
    """(files, bytes, bytes on disk) under ``site``."""
    files = size = disk = 0
    for root, _, names in os.walk(site):
        for name in names:
            st = os.stat(os.path.join(root, name))
            files, size, disk = files + 1, size + st.st_size, disk + st.st_blocks * 512
    return files, size, disk


def index_in_chromium(index: Path) -> dict:
    """What ``DRIVER`` finds on a copy of ``index`` loaded in headless Chromium."""
    copy = index.with_name(f"timed-{index.name}")
    copy.write_text(index.read_text(encoding="utf-8").replace(
        "</body>", f"<script>window.addEventListener('load', function () {{ {DRIVER} }});</script></body>"),
        encoding="utf-8")
    try:
        with tempfile.TemporaryDirectory() as profile:
            r = subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                                f"--user-data-dir={profile}", "--window-size=1280,4000", "--virtual-time-budget=5000",
                                "--dump-dom", copy.as_uri()], capture_output=True, text=True, timeout=300)
    finally:
        copy.unlink()
    found = re.search(r'data-found="([^"]*)"', r.stdout)
    if r.returncode != 0 or not found:
        raise SystemExit(f"chromium did not report: {r.stderr[-2000:]}")
    return json.loads(html.unescape(found.group(1)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("site", type=Path, help="a folder `leam explore` wrote")
    args = p.parse_args()
    files, size, disk = site_size(args.site)
    people = len(list((args.site / "people").glob("*.html")))
    print(f"{args.site}: {people} person pages, {files} files, {size / 1e9:.2f} GB ({disk / 1e9:.2f} GB on disk); "
          f"index {(args.site / 'index.html').stat().st_size / 1e6:.1f} MB")
    if not CHROMIUM.is_file():
        print(f"no Chromium at {CHROMIUM}: the index is not timed")
        return
    found = index_in_chromium(args.site / "index.html")
    print(f"index in headless Chromium: {found['rows']} rows, loaded in {found['load_ms']:.0f} ms; sort by name "
          f"{found['sort_ms']:.0f} ms; search 'an' {found['search_ms']:.1f} ms ({found['search_rows']} rows)")


if __name__ == "__main__":
    main()
