"""Summarize tuner.compare CSVs: one label's latency over the best of others, per shape and overall.

    python benchmarks/summarize_compare.py benchmarks/results/compare_*.csv --label after --against before
    python benchmarks/summarize_compare.py ... --label after --against sglang vllm default

For every (file, M) where the label and at least one of --against were timed, the ratio of the
label's latency to the fastest of --against (below 1: the label is faster). Printed per file: the
worst and best ratio and where, and the share of M within --tolerance; then over all files: that
share, the geometric mean, and each point beyond the tolerance (marked where the label ran the very config
it is compared with); then the harness's own noise: how far apart one config's timings came where
several labels ran it.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
from pathlib import Path


def _timings(path: Path) -> dict[int, dict[str, tuple[float, str]]]:
    """M -> label -> (us, config) of one CSV."""
    by_m: dict[int, dict[str, tuple[float, str]]] = {}
    for row in csv.DictReader(path.open()):
        by_m.setdefault(int(row["M"]), {})[row["label"]] = (float(row["us"]), row["config"])
    return by_m


def ratios(path: Path, label: str, against: list[str]) -> dict[int, tuple[float, str, bool]]:
    """M -> (label's us / the fastest of against, which one that was, whether both ran the same config)."""
    out = {}
    for M, timed in sorted(_timings(path).items()):
        rivals = {name: timed[name] for name in against if name in timed}
        if label in timed and rivals:
            best = min(rivals, key=lambda name: rivals[name][0])
            out[M] = (timed[label][0] / rivals[best][0], best, timed[label][1] == rivals[best][1])
    return out


def same_config_spreads(paths: list[Path]) -> list[float]:
    """For each (file, M) where several labels ran one config, its slowest timing over its fastest, less 1.

    The harness times such a config once per label, so this is its noise, measured on its own data.
    """
    spreads = []
    for path in paths:
        for timed in _timings(path).values():
            by_config: dict[str, list[float]] = {}
            for us, config in timed.values():
                by_config.setdefault(config, []).append(us)
            spreads += [max(us) / min(us) - 1 for us in by_config.values() if len(us) > 1]
    return spreads


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
        within = sum(r <= 1 + args.tolerance for r, _, _ in found.values())
        print(f"{path.name}: worst {found[worst][0]:.3f} (M={worst}, vs {found[worst][1]}), "
              f"best {found[best][0]:.3f} (M={best}), {within}/{len(found)} within")  # fmt: skip
        every += [(path.name, M, r, vs, same) for M, (r, vs, same) in found.items()]
    if not every:
        return
    within = sum(r <= 1 + args.tolerance for _, _, r, _, _ in every)
    geomean = math.exp(sum(math.log(r) for _, _, r, _, _ in every) / len(every))
    print(f"all: {within}/{len(every)} points within ({within / len(every):.1%}), geomean {geomean:.3f}")
    for name, M, r, vs, same in every:
        if r > 1 + args.tolerance:
            print(f"  beyond: {name} M={M}: {r:.3f} vs {vs}" + (" (the same config)" if same else ""))
    spreads = sorted(same_config_spreads(args.files))
    if spreads:
        print(f"noise: {len(spreads)} times one config ran under several labels; their timings differed by "
              f"{statistics.median(spreads):.1%} at the median, {spreads[-1]:.1%} at most")  # fmt: skip


if __name__ == "__main__":
    main()
