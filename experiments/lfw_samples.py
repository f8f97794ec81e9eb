"""Two disjoint seeded samples of 50 LFW identities (≥ 4 photos; the first 6 photos of each), as folders of links
with a manifest, under OUT (default .): the replication samples of issue 24 (README, "Faithfulness").

    python experiments/lfw_samples.py OUT
"""
import csv
import random
import sys
from pathlib import Path

LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw"  # ../shared/data/lfw
rows = list(csv.DictReader(open(LFW / "manifest.csv")))
by = {}
for r in rows:
    by.setdefault(r["identity"], []).append(r)
eligible = sorted(i for i, rs in by.items() if len(rs) >= 4)
rng = random.Random(24)
rng.shuffle(eligible)
for name, ids in (("sample-a", eligible[:50]), ("sample-b", eligible[50:100])):
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".") / name
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in sorted(ids):
        (root / i).mkdir(exist_ok=True)
        for r in sorted(by[i], key=lambda r: r["path"])[:6]:
            dst = root / r["path"]
            if not dst.exists():
                dst.symlink_to(LFW / r["path"])
            out.append(r)
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["path", "identity", "gender"])
        w.writeheader()
        w.writerows(out)
    print(name, len(ids), len(out), "eligible", len(eligible))
