"""The coverage check in replay: how far a file is off between its keys, before and after the check, and what it times.

    PYTHONPATH=. python benchmarks/coverage_replay.py                      # synthetic dense landscapes
    PYTHONPATH=. python benchmarks/coverage_replay.py dense_576x7168.csv.gz --trials 32

For each shape of each dense landscape (benchmarks/dense_sweep_plan.py and `tuner.sweep --configs`
record one; without files, tests/tuner/synthetic.py's dense_us over the whole space for four
DeepSeek-V3 shapes), tunes SGLang's batch sizes that the landscape holds, in replay, into a
temporary storage, then runs the coverage check, and prints per shape: the probe M; how many the
loader's pick serves within 2% of the best config the check timed there, before and after; the
same against the landscape's own optimum at every recorded M (the configs it recorded), the worst
M; the keys added; and what the check timed (screen and deciding-round timings), from which a live
run's cost follows at a few ms per quick timing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import optuna

from tests.tuner.synthetic import DEVICE, dense_us
from tuner.benchmarkers import ReplayBenchmarker, Row
from tuner.export import nearest_entry, read_config_file
from tuner.space import DEFAULT_BATCH_SIZES, Problem, search_space
from tuner.study import THRESHOLD, TuneOptions, dense_batch_sizes, make_storage, stored_coverage, study_name, tune_shape

SYNTHETIC_SHAPES = ((576, 7168), (4608, 7168), (7168, 18432), (24576, 7168))


class _Counted:
    """A benchmarker that counts what the check's probes time: screens and deciding rounds."""

    def __init__(self, bench: ReplayBenchmarker) -> None:
        self._bench = bench
        self.screens = self.screen_timings = self.rounds = self.round_timings = 0

    def __getattr__(self, name: str):
        return getattr(self._bench, name)

    def probe(self, problem, configs, *, rounds, quick=False):
        if rounds == 1:
            self.screens, self.screen_timings = self.screens + 1, self.screen_timings + len(configs)
        else:
            self.rounds, self.round_timings = self.rounds + 1, self.round_timings + len(configs) * rounds
        return self._bench.probe(problem, configs, rounds=rounds, quick=quick)


def _synthetic(shapes: Sequence[tuple[int, int]]) -> ReplayBenchmarker:
    rows = []
    for N, K in shapes:
        for M in dense_batch_sizes():
            problem = Problem(N=N, K=K, M=M)
            for config in search_space(128):
                us = dense_us(problem, config)
                rows.append(Row(DEVICE, problem, config, "ok" if us is not None else "out_of_resources", us))
    return ReplayBenchmarker(rows)


def _within(bench: ReplayBenchmarker, entries, problems: Sequence[Problem]) -> tuple[int, float, int]:
    """Points of problems whose loader's pick is within the threshold of the landscape's optimum, the worst."""
    ratios = [(bench.latency(p, nearest_entry(entries, p.M)) / bench.optimum(p)[1], p.M) for p in problems]
    worst = max(ratios)
    return sum(r <= 1 + THRESHOLD for r, _ in ratios), worst[0], worst[1]


def evaluate(bench: ReplayBenchmarker, trials: int, seed: int) -> list[str]:
    """One line per shape of bench's landscape (see the module's docstring)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    lines = []
    shapes = dict.fromkeys(p.at(1) for p in bench.problems)
    for shape in shapes:
        recorded = [p for p in bench.problems if p.at(1) == shape]
        problems = [p for p in recorded if p.M in DEFAULT_BATCH_SIZES]
        with tempfile.TemporaryDirectory() as folder:
            storage = make_storage(f"sqlite:///{folder}/s.db")
            files = {}
            for name, coverage in (("off", None), ("on", THRESHOLD)):
                counted = _Counted(bench)
                options = TuneOptions(trials=trials, seed=seed, coverage=coverage)
                _, paths = tune_shape(storage, counted, problems, options, Path(folder) / name)
                files[name] = read_config_file(paths[0])
            names = {p.M: study_name(p, bench.device_name, bench.kind, bench.software) for p in problems}
            checked = stored_coverage(storage, problems, names, replay=True)
        before, after = _within(bench, files["off"], recorded), _within(bench, files["on"], recorded)
        probes = checked.probes if checked is not None else []
        lines.append(
            f"N={shape.N} K={shape.K}: {len(probes)} probe M; within 2% of the best timed: "
            f"{sum(p.served_before for p in probes)} before, {sum(p.served for p in probes)} after; of the "
            f"landscape's optimum at its {len(recorded)} M: {before[0]} before (worst {before[1]:.3f}x at M="
            f"{before[2]}), {after[0]} after (worst {after[1]:.3f}x at M={after[2]}); keys added: "
            f"{', '.join(map(str, checked.added if checked else [])) or 'none'}; timed: {counted.screens} screens "
            f"({counted.screen_timings} timings), {counted.rounds} deciding rounds ({counted.round_timings} timings)"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("landscapes", nargs="*", help="dense landscape files (default: synthetic ones)")
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    benches = [ReplayBenchmarker.from_file(path) for path in args.landscapes] or [_synthetic(SYNTHETIC_SHAPES)]
    for path, bench in zip(args.landscapes or ["synthetic dense_us, whole space"], benches):
        print(f"{path} ({bench.device_name}), {args.trials} configs per study, seed {args.seed}:")
        for line in evaluate(bench, args.trials, args.seed):
            print(f"  {line}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
