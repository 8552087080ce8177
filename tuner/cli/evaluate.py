"""Measure the samplers in replay: how close to each landscape's optimum does a budget get?

    python -m tuner.evaluate studies/landscapes/*.csv.gz --budgets 16 32 64 --seeds 0 1 2

For every (shape, M) of every landscape, runs each sampler a run can choose (the tuner's local
search, Optuna's TPE, GP and random search) at the same budgets, each with the same warm starts
(prior included unless --no-prior: a prior from the other shapes of the files given, never from
the shape under test), and prints the share of points within 1%, 2% and 5% of the optimum and the
geometric-mean and worst ratio of the latency found to the optimum.

--prior FILE ... learns the prior from other landscapes instead, e.g. the shipped ones that a run on
a GPU uses (tuner/samplers/landscapes/): per device, so a device's landscapes evaluated with another
device's files as the prior measure the prior a run on that device gets when it has none of its own.

--space hopper searches SGLang's Hopper space (SPLIT_K, SWAP_AB) as `tuner.run --space hopper`
does. A study searches only the configs a landscape recorded, so on a landscape of part of the
space (the Hopper check's grid) the optimum and the search are both over that part.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import sys
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import optuna
from tqdm import tqdm

from tuner.benchmarkers import ReplayBenchmarker, read_rows
from tuner.cli._common import count
from tuner.samplers import SAMPLERS, Prior
from tuner.space import SPACES
from tuner.stopping import exit_status, ignore_ctrl_c
from tuner.study import TuneOptions, searchable, tune_problem, warm_starts

STRATEGIES = tuple(name for name in SAMPLERS if name != "auto")  # auto is one of them


@dataclass(frozen=True)
class Outcome:
    strategy: str
    budget: int
    seed: int
    landscape: str
    N: int
    K: int
    M: int
    ratio: float  # found latency / optimum


@cache
def _load(paths: tuple[str, ...]) -> dict[str, ReplayBenchmarker]:
    return {path: ReplayBenchmarker.from_file(path) for path in paths}


@cache
def _prior(paths: tuple[str, ...]) -> Prior:
    return Prior(row for path in paths for row in read_rows(path))


@dataclass(frozen=True)
class Task:
    """One run: the batch sizes of one shape of one landscape, for one strategy, budget and seed."""

    paths: tuple[str, ...]  # every landscape evaluated
    path: str
    shape: tuple[int, int]
    batch_sizes: tuple[int, ...]
    strategy: str
    budget: int
    seed: int
    space: str = "base"
    use_prior: bool = True
    prior_paths: tuple[str, ...] | None = None  # the prior's landscapes, if not those evaluated


def evaluate_shape(task: Task) -> list[Outcome]:
    """The given batch sizes of one shape, in the order the tuner runs them, for one strategy/budget/seed."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    bench = _load(task.paths)[task.path]
    prior = _prior(task.paths if task.prior_paths is None else task.prior_paths)
    path, (N, K), strategy, budget, seed = task.path, task.shape, task.strategy, task.budget, task.seed
    problems = sorted(
        (p for p in bench.problems if (p.N, p.K) == (N, K) and p.M in task.batch_sizes), key=lambda p: p.M
    )
    options = TuneOptions(
        trials=budget, seed=seed, prior=prior if task.use_prior else None, sampler=strategy, space=task.space
    )
    storage = optuna.storages.InMemoryStorage()
    outcomes = []
    for problem in problems:
        seeds = warm_starts(storage, bench, problem, [p.M for p in problems], options, existing={})
        result = tune_problem(storage, problem, bench, options, seeds)
        _, optimum = bench.optimum(problem, among=searchable(problem, bench, task.space))  # the space's optimum
        found = bench.latency(problem, result.best)
        outcomes.append(Outcome(strategy, budget, seed, path, N, K, problem.M, found / optimum))
    return outcomes


def summarize(outcomes: Sequence[Outcome]) -> str:
    """One line per (strategy, budget): shares within 1/2/5% of the optimum, geomean and worst ratio."""
    groups: dict[tuple[str, int], list[float]] = defaultdict(list)
    for o in outcomes:
        groups[o.strategy, o.budget].append(o.ratio)
    lines = [
        f"{'strategy':>8} {'budget':>6} {'points':>6} {'<=1%':>6} {'<=2%':>6} {'<=5%':>6} {'geomean':>8} {'worst':>7}"
    ]
    for (strategy, budget), ratios in sorted(groups.items(), key=lambda kv: (STRATEGIES.index(kv[0][0]), kv[0][1])):
        share = {t: sum(r <= 1 + t for r in ratios) / len(ratios) for t in (0.01, 0.02, 0.05)}
        geomean = math.exp(sum(map(math.log, ratios)) / len(ratios))
        lines.append(
            f"{strategy:>8} {budget:>6} {len(ratios):>6} {share[0.01]:>6.0%} {share[0.02]:>6.0%} "
            f"{share[0.05]:>6.0%} {geomean:>8.4f} {max(ratios):>7.3f}"
        )
    return "\n".join(lines)


def describe(paths: Sequence[str], shapes: int, points: int, batch_sizes: Sequence[int], args) -> str:
    """What an evaluation will run, in one line, so that minutes of work do not start silently."""
    repeats = len(args.strategies) * len(args.budgets) * len(args.seeds)
    prior = _prior_source(args, shapes)
    return (
        f"evaluating {', '.join(paths)}: {count(points, 'point')} of {count(shapes, 'shape')} at M = "
        f"{' '.join(map(str, batch_sizes))}; {args.space} space, {prior}; strategies {' '.join(args.strategies)}, "
        f"budgets {' '.join(map(str, args.budgets))}, seeds {' '.join(map(str, args.seeds))}: "
        f"{count(shapes * repeats, 'run')}, {count(points * repeats, 'study', 'studies')}"
    )


def _prior_source(args, shapes: int) -> str:
    """Where the evaluation's warm starts learn from, in words."""
    if args.no_prior:
        return "no prior"
    if args.prior:
        return f"prior from {' '.join(args.prior)}"
    return "no prior (one shape: no other shape to learn from)" if shapes == 1 else "prior from the other shapes"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tuner.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # a flag is spelled out, never taken from its prefix
    )
    parser.add_argument("landscapes", nargs="+", help="landscape CSV files (.csv or .csv.gz)")
    parser.add_argument(
        "--budgets", type=int, nargs="+", default=[16, 32, 64], metavar="T",
        help="configs timed per study, one evaluation each (default: 16 32 64)",
    )  # fmt: skip
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], metavar="S",
        help="sampler seeds, one run each per budget and strategy (default: 0 1 2)",
    )  # fmt: skip
    parser.add_argument(
        "--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES),
        help=f"the samplers compared (default: all, {' '.join(STRATEGIES)})",
    )  # fmt: skip
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="only these M (default: all)")
    parser.add_argument("--space", choices=SPACES, default="base", help="the space searched (default: %(default)s)")
    priors = parser.add_mutually_exclusive_group()
    priors.add_argument("--no-prior", action="store_true", help="no warm starts from the other shapes' landscapes")
    priors.add_argument("--prior", nargs="+", metavar="FILE", help="learn the prior from these landscapes instead")
    parser.add_argument(
        "--processes", type=int, default=2, help="runs in parallel, one process each (default: %(default)s)"
    )
    parser.add_argument("--details", default=None, help="also write one CSV row per (point, run) here")
    args = parser.parse_args(argv)
    try:
        paths = tuple(args.landscapes)
        benches = _load(paths)
        prior_paths = None if args.prior is None else tuple(args.prior)
        if prior_paths is not None:
            _prior(prior_paths)  # read here, so that a malformed file is a usage error before any worker starts
        recorded = {p.M for bench in benches.values() for p in bench.problems}
        batch_sizes = tuple(sorted(recorded if args.batch_sizes is None else set(args.batch_sizes)))
        if not set(batch_sizes) <= recorded:
            missing = sorted(set(batch_sizes) - recorded)
            raise ValueError(f"--batch-sizes {missing} are in no landscape; they hold M = {sorted(recorded)}.")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    tasks = [
        Task(paths, path, shape, batch_sizes, strategy, budget, seed, args.space, not args.no_prior, prior_paths)
        for path, bench in benches.items()
        for shape in dict.fromkeys((p.N, p.K) for p in bench.problems if p.M in batch_sizes)
        for strategy in args.strategies
        for budget in args.budgets
        for seed in args.seeds
    ]
    points = sum(1 for bench in benches.values() for p in bench.problems if p.M in batch_sizes)
    shapes = len(tasks) // (len(args.strategies) * len(args.budgets) * len(args.seeds))
    print(describe(paths, shapes, points, batch_sizes, args), file=sys.stderr, flush=True)  # stdout: the table alone
    try:
        with mp.get_context("spawn").Pool(args.processes, initializer=ignore_ctrl_c) as pool:
            runs = pool.imap_unordered(evaluate_shape, tasks)
            outcomes = [o for chunk in tqdm(runs, total=len(tasks), desc="runs", unit="run") for o in chunk]
    except KeyboardInterrupt as error:  # the pool's processes leave Ctrl-C to this one, which ends them
        print("\ninterrupted: nothing was written.", file=sys.stderr)
        return exit_status(error)
    if args.details:
        with open(args.details, "w") as f:
            f.write("strategy,budget,seed,landscape,N,K,M,ratio\n")
            for o in sorted(outcomes, key=lambda o: (o.strategy, o.budget, o.seed, o.N, o.K, o.M)):
                f.write(f"{o.strategy},{o.budget},{o.seed},{o.landscape},{o.N},{o.K},{o.M},{o.ratio:.5f}\n")
    print(summarize(outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
