"""The searcher on the recorded H100 landscape: the issue's target (within 2% at 32 configs) as a regression test."""

from __future__ import annotations

from pathlib import Path

import optuna

from tuner.benchmarkers import ReplayBenchmarker
from tuner.study import TuneOptions, tune_problem, warm_starts

LANDSCAPE = Path(__file__).resolve().parents[2] / "studies" / "landscapes" / "h100_fp8_7168x18432.csv.gz"


def test_every_batch_size_within_2_percent_of_the_exhaustive_optimum():
    # The batch sizes are tuned in order, as tuner.run does, each seeded by its tuned neighbours.
    bench = ReplayBenchmarker.from_file(LANDSCAPE)
    storage = optuna.storages.InMemoryStorage()
    options = TuneOptions(trials=32, seed=0)
    problems = sorted(bench.problems, key=lambda p: p.M)
    ratios = {}
    for problem in problems:
        seeds = warm_starts(storage, bench, problem, [p.M for p in problems], options, existing={})
        result = tune_problem(storage, problem, bench, options, seeds)
        assert result.timed == 32
        ratios[problem.M] = result.best_us / bench.optimum(problem)[1]
    assert set(ratios) == {1, 16, 64, 256, 1024, 4096}
    assert all(ratio <= 1.02 for ratio in ratios.values()), ratios
