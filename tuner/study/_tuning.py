"""Tune shapes: for each (N, K, M) run its study to the budget, then export the best per M.

The library behind `python -m tuner.run`: everything here works the same against a GPU or a
replayed landscape, because timing is an injected Benchmarker.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from tuner.benchmarkers import Benchmarker
from tuner.export import config_file_names, nearest_entry, read_config_file, write_configs
from tuner.samplers import PRIOR_DEVICE, NeighbourhoodSampler, Prior, dedupe, make_sampler, resolve, warm_start_seeds
from tuner.space import SAMPLER, SPLIT_K, Config, Problem, config_of, default_config, search_space
from tuner.stopping import TuningError
from tuner.study._confirm import CONFIRM_DEFAULT_US, CONFIRMED, CONFIRMED_US, confirm
from tuner.study._objective import DECIDING_S, ConfigFailed, Objective
from tuner.study._storage import best, fail_stale_trials, is_timed, latency_of, open_study, study_name, timed_trials

# How many of the sampler's next proposals compile while one config is timed.
COMPILE_AHEAD = 12
# The SMs a Hopper-path seed fills (an H100 SXM's or an H200's; the H100 PCIe has 114).
_SM90_SMS = 132


@dataclass(frozen=True)
class TuneOptions:
    """How hard to search: the budget per study, seeds and warm starts."""

    trials: int = 32
    seed: int | None = None
    prune_ratio: float = 1.5
    neighbour_seeds: int = 2
    prior_seeds: int = 4
    prior: Prior | None = field(default=None, compare=False)
    space: str = "base"
    sampler: str = "auto"  # one of tuner.samplers.SAMPLERS
    deciding_s: float = DECIDING_S  # how long a trial left undecided by another worker is waited for

    def __post_init__(self) -> None:
        search_space(128, self.space)  # an unknown space is a usage error
        if not isinstance(self.trials, int) or self.trials < 1:
            raise ValueError(f"--trials must be a positive int, but got {self.trials!r}.")
        resolve(self.sampler)  # raises for an unknown name


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


def _bests(storage: BaseStorage, names: set[str], name: str, k: int) -> list[Config]:
    """The k fastest completed configs of the named study, if it exists."""
    if name not in names:
        return []
    study = optuna.load_study(study_name=name, storage=storage)
    done = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.value)
    return [config_of(t) for t in done[:k]]


def _tuned_bests(
    storage: BaseStorage, problem: Problem, bench: Benchmarker, batch_sizes: Sequence[int], options: TuneOptions
) -> list[Config]:
    """What this shape's studies already found: the nearest smaller and larger tuned batch sizes' best
    configs in this space, and in a Hopper study the base space's best at this M."""
    names = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    k = options.neighbour_seeds
    others = sorted((m for m in batch_sizes if m != problem.M), key=lambda m: abs(math.log(m / problem.M)))
    configs: list[Config] = []
    for side in (lambda m: m < problem.M, lambda m: m > problem.M):
        for m in (m for m in others if side(m)):
            found = _bests(
                storage,
                names,
                study_name(problem.at(m), bench.device_name, bench.kind, bench.software, options.space),
                k,
            )
            if found:  # a neighbour another process has only begun teaches nothing yet: look further
                configs += found
                break
    if options.space != "base":
        configs += _bests(storage, names, study_name(problem, bench.device_name, bench.kind, bench.software), k)
    return configs


def searchable(problem: Problem, bench: Benchmarker, space: str) -> list[Config]:
    """The configs a study searches: the space's members that fit the device and that bench can measure.

    On a GPU that is the whole space bar tiles too large for shared memory; in replay of a partial
    landscape it is the recorded configs alone, so a search over a recorded subset of the space is
    judged on that subset (see tuner.benchmarkers._replay).
    """
    measurable = bench.measurable(problem)
    configs = [
        c
        for c in search_space(problem.block_k, space)
        if c.fits(bench.shared_memory_limit) and (measurable is None or c in measurable)
    ]
    if not configs:
        raise TuningError(f"{bench.kind} can measure no config of the {space} space for {problem}.")
    return configs


def tune_problem(
    storage: BaseStorage,
    problem: Problem,
    bench: Benchmarker,
    options: TuneOptions,
    seeds: Sequence[Config],
    progress: tqdm | None = None,
    *,
    existing: Config | None = None,
) -> StudyResult:
    """Run (or resume) one study until options.trials configs were timed, then confirm its pick.

    existing is the entry an existing config file gives this M: always measured in full, and a
    contender of the confirmation round beside SGLang's default.

    Whichever sampler options.sampler names proposes the seeds first.
    """
    space = searchable(problem, bench, options.space)
    seeds = dedupe(seeds, space)
    ranking = options.prior.ranking(problem, bench.device_name) if options.prior else []
    sampler = make_sampler(
        options.sampler, space=space, seeds=seeds, seed=options.seed, batch_size=problem.M, ranking=ranking
    )
    study = open_study(storage, problem, bench, sampler, space=options.space)
    _record_sampler(study, resolve(options.sampler))
    if options.prior is not None and ranking:
        # which device's landscapes the prior came from (another one's where this device has none)
        study.set_user_attr(PRIOR_DEVICE, options.prior.source(problem, bench.device_name))
    fail_stale_trials(study)  # a dead process's claim on the budget is given back (and retried) first
    already = len(timed_trials(study))
    if progress is not None:
        progress.update(min(already, options.trials))
    if already < options.trials:
        bench.prepare(problem, seeds[: options.trials - already])  # compile the seeds all at once

        max_trials = 4 * len(space)  # a sampler that only repeats itself stops here

        def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
            """Progress, and the stop once the budget is spent (one storage read for both)."""
            trials = study.get_trials(deepcopy=False)
            if progress is not None and is_timed(trial):
                progress.update(1)
                found = best(trials)
                if found is not None:
                    status = f"N={problem.N} K={problem.K} M={problem.M} best {found[1]:.1f} us"
                    progress.set_postfix_str(status, refresh=False)  # drawn at the bar's own pace
            if sum(1 for t in trials if is_timed(t)) >= options.trials or len(trials) >= max_trials:
                study.stop()

        lookahead = None
        if isinstance(sampler, NeighbourhoodSampler):  # its next proposals are known: compile them ahead
            lookahead = functools.partial(sampler.candidates, limit=COMPILE_AHEAD)
        objective = Objective(
            problem,
            bench,
            budget=options.trials,
            prune_ratio=options.prune_ratio,
            never_prune=frozenset([existing] if existing is not None else []),
            space=space,
            lookahead=lookahead,
            deciding_s=options.deciding_s,
        )
        study.optimize(objective, callbacks=[after_trial], catch=(ConfigFailed,))
    if CONFIRMED not in study.user_attrs and best(study.get_trials(deepcopy=False)) is not None:
        confirm(study, problem, bench, existing=existing)
    return study_result(study, problem)


def _record_sampler(study: optuna.Study, name: str) -> None:
    """The sampler is part of what the user chose: a study resumed with another one lists both."""
    recorded = study.user_attrs.get(SAMPLER)
    if recorded is None or name not in recorded.split("+"):
        study.set_user_attr(SAMPLER, name if recorded is None else f"{recorded}+{name}")


def study_result(study: optuna.Study, problem: Problem) -> StudyResult:
    """What a finished (or resumed) study found for problem: its confirmed pick, once confirmed.

    Latencies then come from the confirmation round, where pick and default were timed together.
    """
    found = best(study.get_trials(deepcopy=False))
    if found is None:
        raise TuningError(f"no config of the space ran for {problem}; see the trials' failure reasons.")
    attrs = study.user_attrs
    timed = len(timed_trials(study))
    if CONFIRMED in attrs:
        pick = Config.from_sglang(attrs[CONFIRMED])
        return StudyResult(problem, pick, attrs[CONFIRMED_US], attrs[CONFIRM_DEFAULT_US], timed)
    default_us = latency_of(study.get_trials(deepcopy=False), default_config(problem.block_n, problem.block_k))
    return StudyResult(problem, found[0], found[1], default_us, timed)


def warm_starts(
    storage: BaseStorage,
    bench: Benchmarker,
    problem: Problem,
    batch_sizes: Sequence[int],
    options: TuneOptions,
    existing: dict[int, Config],
) -> list[Config]:
    """Seeds for one study, most trusted first (see tuner.samplers)."""
    seeds = warm_start_seeds(
        problem,
        tuned=_tuned_bests(storage, problem, bench, batch_sizes, options),
        entry=nearest_entry(existing, problem.M) if existing else None,
        ranking=options.prior.ranking(problem, bench.device_name) if options.prior else [],
        prior_seeds=options.prior_seeds,
    )
    if options.space == "hopper":  # the most trusted base config (the default, if nothing else), split
        base = next(c for c in seeds if c is not None and not c.hopper)
        seeds.append(split_seed(problem, base))
    return dedupe(seeds, search_space(problem.block_k, options.space))


def split_seed(problem: Problem, base: Config) -> Config:
    """base on SGLang's Hopper path, with SPLIT_K raised until one wave of programs fills the SMs.

    A narrow N at small M launches a few tiles for 132 SMs, which is what the Hopper path is for;
    local search from base alone reaches a good SPLIT_K one power of two at a time, spending most
    of a budget on the way (on the recorded Hopper grid, half the points missed 2% at 32 configs).
    So split the K loop by the power of two nearest 132 / tiles (the SMs of an H100 SXM or H200;
    SGLang's Hopper kernel runs on SM90 alone), and swap A and B for M <= 16, where a tile of M rows
    fills little of the MMA's wide side. Computed from the problem only, so it seeds the first study
    of a shape as well as the later ones.
    """
    tiles = math.ceil(problem.M / base.block_m) * math.ceil(problem.N / base.block_n)
    split_k = 2 ** round(math.log2(max(1.0, _SM90_SMS / tiles)))
    return replace(base, split_k=min(split_k, SPLIT_K[-1]), swap_ab=problem.M <= 16)


def tune_shape(
    storage: BaseStorage,
    bench: Benchmarker,
    problems: Sequence[Problem],
    options: TuneOptions,
    save_path: str | Path,
    *,
    progress: tqdm | None = None,
    file_format: str = "sglang",
) -> tuple[list[StudyResult], list[Path]]:
    """Tune every batch size of one (N, K), smallest first, merging each best into the config file(s)."""
    p0 = problems[0]
    names = config_file_names(
        p0.N, p0.K, bench.device_name, p0.input_type, p0.block_n, p0.block_k, file_format=file_format
    )
    paths = [Path(save_path) / name for name in names]
    existing = read_config_file(paths[0]) if paths[0].exists() else {}
    batch_sizes = [p.M for p in problems]
    results = []
    for problem in sorted(problems, key=lambda p: p.M):
        seeds = warm_starts(storage, bench, problem, batch_sizes, options, existing)
        pick = nearest_entry(existing, problem.M) if existing else None
        result = tune_problem(storage, problem, bench, options, seeds, progress, existing=pick)
        for path in paths:
            write_configs(path, {problem.M: result.best})
        results.append(result)
    return results, paths


def format_table(results: Sequence[StudyResult]) -> str:
    """M, best us, TFLOP/s, default-config us and speedup, one line per batch size."""
    lines = [f"{'M':>6} {'best us':>10} {'TFLOP/s':>8} {'default us':>11} {'speedup':>8}  config"]
    for r in sorted(results, key=lambda r: r.problem.M):
        default = f"{r.default_us:>11.1f}" if r.default_us is not None else f"{'-':>11}"
        speedup = f"{r.default_us / r.best_us:>7.2f}x" if r.default_us is not None else f"{'-':>8}"
        lines.append(f"{r.problem.M:>6} {r.best_us:>10.1f} {r.tflops:>8.1f} {default} {speedup}  {r.best.short()}")
    return "\n".join(lines)
