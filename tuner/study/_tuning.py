"""Tune shapes: for each (N, K, M) run its study to the budget, then export the best per M.

The library behind `python -m tuner.run`: everything here works the same against a GPU or a
replayed landscape, because timing is an injected Benchmarker.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from tuner.benchmarkers import Benchmarker
from tuner.exceptions import TuningError
from tuner.export import config_file_name, nearest_entry, read_config_file, write_configs
from tuner.samplers import NeighbourhoodSampler, Prior, dedupe
from tuner.space import TIMED, Config, Problem, config_of, default_config, search_space
from tuner.study._objective import ConfigFailed, Objective
from tuner.study._storage import best, latency_of, open_study, study_name, timed_trials

# How many of the sampler's next proposals compile while one config is timed.
COMPILE_AHEAD = 12


@dataclass(frozen=True)
class TuneOptions:
    """How hard to search: the budget per study, seeds and warm starts."""

    trials: int = 32
    seed: int | None = None
    prune_ratio: float = 1.5
    neighbour_seeds: int = 2
    prior_seeds: int = 4
    prior: Prior | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.trials, int) or self.trials < 1:
            raise ValueError(f"--trials must be a positive int, but got {self.trials!r}.")


@dataclass(frozen=True)
class StudyResult:
    problem: Problem
    best: Config
    best_us: float
    default_us: float | None
    timed: int

    @property
    def tflops(self) -> float:
        return self.problem.flops / self.best_us / 1e6


def _neighbour_bests(storage: BaseStorage, problem: Problem, bench: Benchmarker, batch_sizes: Sequence[int], k: int):
    """Top-k configs of the nearest smaller and larger batch sizes already tuned for this shape."""
    names = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    others = sorted((m for m in batch_sizes if m != problem.M), key=lambda m: abs(math.log(m / problem.M)))
    configs: list[Config] = []
    for side in (lambda m: m < problem.M, lambda m: m > problem.M):
        for m in (m for m in others if side(m)):
            neighbour = problem.at(m)
            name = study_name(neighbour, bench.device_name, bench.kind, bench.software)
            if name not in names:
                continue
            study = optuna.load_study(study_name=name, storage=storage)
            done = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.value)
            if done:  # a neighbour another process has only begun teaches nothing yet: look further
                configs += [config_of(t) for t in done[:k]]
                break
    return configs


def tune_problem(
    storage: BaseStorage,
    problem: Problem,
    bench: Benchmarker,
    options: TuneOptions,
    seeds: Sequence[Config],
    progress: tqdm | None = None,
    *,
    sampler: optuna.samplers.BaseSampler | None = None,
    never_prune: Sequence[Config] = (),
) -> StudyResult:
    """Run (or resume) one study until options.trials configs were timed; return its best.

    The sampler defaults to the tuner's own, which tries the seeds first; evaluations pass plain
    Optuna samplers (and no seeds) to compare.
    """
    space = [c for c in search_space(problem.block_k) if c.fits(bench.shared_memory_limit)]
    seeds = dedupe(seeds, space)
    if sampler is None:
        sampler = NeighbourhoodSampler(space=space, seeds=seeds, seed=options.seed)
    elif seeds:
        raise ValueError("seeds are the tuner's own sampler's first proposals; give a plain sampler none.")
    study = open_study(storage, problem, bench, sampler)
    already = len(timed_trials(study))
    if progress is not None:
        progress.update(min(already, options.trials))
    if already < options.trials:
        bench.prepare(problem, seeds[: options.trials - already])  # compile the seeds all at once

        max_trials = 4 * len(space)  # a sampler that only repeats itself stops here

        def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
            """Progress, and the stop once the budget is spent (one storage read for both)."""
            trials = study.get_trials(deepcopy=False)
            if progress is not None and trial.user_attrs.get(TIMED):
                progress.update(1)
                found = best(trials)
                if found is not None:
                    status = f"N={problem.N} K={problem.K} M={problem.M} best {found[1]:.1f} us"
                    progress.set_postfix_str(status, refresh=False)  # drawn at the bar's own pace
            if sum(1 for t in trials if t.user_attrs.get(TIMED)) >= options.trials or len(trials) >= max_trials:
                study.stop()

        lookahead = None
        if isinstance(sampler, NeighbourhoodSampler):  # its next proposals are known: compile them ahead
            lookahead = functools.partial(sampler.candidates, limit=COMPILE_AHEAD)
        objective = Objective(
            problem,
            bench,
            budget=options.trials,
            prune_ratio=options.prune_ratio,
            never_prune=frozenset(never_prune),
            lookahead=lookahead,
        )
        study.optimize(objective, callbacks=[after_trial], catch=(ConfigFailed,))
    return study_result(study, problem)


def study_result(study: optuna.Study, problem: Problem) -> StudyResult:
    """What a finished (or resumed) study found for problem."""
    found = best(study.get_trials(deepcopy=False))
    if found is None:
        raise TuningError(f"no config of the space ran for {problem}; see the trials' failure reasons.")
    default_us = latency_of(study, default_config(problem.block_n, problem.block_k))
    return StudyResult(problem, found[0], found[1], default_us, len(timed_trials(study)))


def warm_starts(
    storage: BaseStorage,
    bench: Benchmarker,
    problem: Problem,
    batch_sizes: Sequence[int],
    options: TuneOptions,
    existing: dict[int, Config],
) -> list[Config]:
    """Seeds for one study, most trusted first (see tuner.samplers)."""
    prior = options.prior.ranking(problem, bench.device_name) if options.prior else []
    seeds = [
        *_neighbour_bests(storage, problem, bench, batch_sizes, options.neighbour_seeds),
        nearest_entry(existing, problem.M) if existing else None,
        default_config(problem.block_n, problem.block_k),
        *prior[: options.prior_seeds],
    ]
    return dedupe(seeds, search_space(problem.block_k))


def tune_shape(
    storage: BaseStorage,
    bench: Benchmarker,
    problems: Sequence[Problem],
    options: TuneOptions,
    save_path: str | Path,
    *,
    progress: tqdm | None = None,
) -> tuple[list[StudyResult], Path]:
    """Tune every batch size of one (N, K), smallest first, merging each best into the config file."""
    p0 = problems[0]
    path = Path(save_path) / config_file_name(p0.N, p0.K, bench.device_name, p0.input_type, p0.block_n, p0.block_k)
    existing = read_config_file(path) if path.exists() else {}
    batch_sizes = [p.M for p in problems]
    results = []
    for problem in sorted(problems, key=lambda p: p.M):
        seeds = warm_starts(storage, bench, problem, batch_sizes, options, existing)
        baseline = [nearest_entry(existing, problem.M)] if existing else []
        result = tune_problem(storage, problem, bench, options, seeds, progress, never_prune=baseline)
        write_configs(path, {problem.M: result.best})
        results.append(result)
    return results, path


def format_table(results: Sequence[StudyResult]) -> str:
    """M, best us, TFLOP/s, default-config us and speedup, one line per batch size."""
    lines = [f"{'M':>6} {'best us':>10} {'TFLOP/s':>8} {'default us':>11} {'speedup':>8}  config"]
    for r in sorted(results, key=lambda r: r.problem.M):
        default = f"{r.default_us:>11.1f}" if r.default_us is not None else f"{'-':>11}"
        speedup = f"{r.default_us / r.best_us:>7.2f}x" if r.default_us is not None else f"{'-':>8}"
        lines.append(f"{r.problem.M:>6} {r.best_us:>10.1f} {r.tflops:>8.1f} {default} {speedup}  {r.best.short()}")
    return "\n".join(lines)
