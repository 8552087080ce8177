"""Summarize tuner.compare CSVs: one label's latency over the best of others, per shape and overall.

    python benchmarks/summarize_compare.py benchmarks/results/compare_*.csv --label after --against before
    python benchmarks/summarize_compare.py ... --label after --against sglang vllm default

For every (file, M) where the label and at least one of --against were timed, the ratio of the
label's latency to the fastest of --against (below 1: the label is faster). Printed per file: the
worst and best ratio and where, and the share of M within --tolerance; then over all files: that
share, the geometric mean, and each point beyond the tolerance.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path


def ratios(path: Path, label: str, against: list[str]) -> dict[int, tuple[float, str]]:
    """M -> (label's us / the fastest of against, which one that was), where both were timed."""
    by_m: dict[int, dict[str, float]] = {}
    for row in csv.DictReader(path.open()):
        by_m.setdefault(int(row["M"]), {})[row["label"]] = float(row["us"])
    out = {}
    for M, us in sorted(by_m.items()):
        timed = {name: us[name] for name in against if name in us}
        if label in us and timed:
            best = min(timed, key=timed.get)
            out[M] = (us[label] / timed[best], best)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path, help="CSVs of python -m tuner.compare --out")
    parser.add_argument("--label", required=True, help="the contender judged, e.g. after or tuned")
    parser.add_argument("--against", nargs="+", required=True, help="the labels it must match: their best")
    parser.add_argument("--tolerance", type=float, default=0.01, help="a ratio up to 1 + this counts as matching")
    args = parser.parse_args()
    every = []
    print(f"{args.label} / best of ({', '.join(args.against)}); within {args.tolerance:.0%} counts as matching")
    for path in args.files:
        found = ratios(path, args.label, args.against)
        if not found:
            print(f"{path.name}: no M with both timed")
            continue
        worst = max(found, key=lambda M: found[M][0])
        best = min(found, key=lambda M: found[M][0])
        within = sum(r <= 1 + args.tolerance for r, _ in found.values())
        print(f"{path.name}: worst {found[worst][0]:.3f} (M={worst}, vs {found[worst][1]}), "
              f"best {found[best][0]:.3f} (M={best}), {within}/{len(found)} within")  # fmt: skip
        every += [(path.name, M, r, vs) for M, (r, vs) in found.items()]
    if not every:
        return
    within = sum(r <= 1 + args.tolerance for _, _, r, _ in every)
    geomean = math.exp(sum(math.log(r) for _, _, r, _ in every) / len(every))
    print(f"all: {within}/{len(every)} points within ({within / len(every):.1%}), geomean {geomean:.3f}")
    for name, M, r, vs in every:
        if r > 1 + args.tolerance:
            print(f"  beyond: {name} M={M}: {r:.3f} vs {vs}")


if __name__ == "__main__":
    main()
