"""Tune shapes: for each (N, K, M) run its study to the budget, then export the best per M.

The library behind `python -m tuner.run`: everything here works the same against a GPU or a
replayed landscape, because timing is an injected Benchmarker.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from tuner.baselines import BASELINES, USER_FOLDER, Baseline, ConfigFolder, find_baselines, folders_for
from tuner.benchmarkers import CONFIG_FILES, SAMPLING, STORAGE, Benchmarker, RunClock
from tuner.engines import SGLANG, Engine
from tuner.engines import defaults as engine_defaults
from tuner.export import nearest_entry, read_config_file, write_configs
from tuner.samplers import PRIOR_DEVICE, Prior, dedupe, make_sampler, resolve, same_schedule, warm_start_seeds
from tuner.space import SAMPLER, SPLIT_K, Config, Problem, config_of, default_config, search_space
from tuner.stopping import TuningError
from tuner.study._confirm import (
    CONFIRM_DEFAULT_US,
    CONFIRM_ROUND,
    CONFIRMED,
    CONFIRMED_US,
    confirm,
    confirmation_of,
    contenders,
    is_current,
)
from tuner.study._coverage import BEST_FEW, check_shape, prepare_ahead
from tuner.study._liveness import retire_dead
from tuner.study._search import DECIDING_S, Search
from tuner.study._storage import (
    BUDGET,
    SCHEDULES,
    best,
    is_timed,
    latency_of,
    made_with,
    open_study,
    study_attrs,
    study_name,
)
from tuner.study._store import existing_studies, set_study_attrs


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
    sampler: str = "auto"  # one of tuner.samplers.SAMPLERS; a study resumes with the sampler that made it
    deciding_s: float = DECIDING_S  # how long a trial left undecided by other code is waited for
    coverage: float | None = None  # the coverage check's threshold after each shape (THRESHOLD); None: no check

    def __post_init__(self) -> None:
        search_space(128, self.space)  # an unknown space is a usage error
        if not isinstance(self.trials, int) or self.trials < 1:
            raise ValueError(f"--trials must be a positive int, but got {self.trials!r}.")
        resolve(self.sampler)  # raises for an unknown name
        if self.coverage is not None and not 0 <= self.coverage < 1:
            raise ValueError(f"the coverage threshold must be a fraction from 0 to 1, but got {self.coverage!r}.")


@dataclass(frozen=True)
class StudyResult:
    problem: Problem
    best: Config
    best_us: float
    default_us: float | None
    timed: int
    baseline_us: float | None = None  # the fastest baseline file's pick, where one ran

    @property
    def tflops(self) -> float:
        return self.problem.flops / self.best_us / 1e6


# Study name -> its best completed configs, fastest first: what this process's finished studies
# found, so that the next study's warm starts need not read them back from the storage.
Found = dict[str, list[Config]]


def _bests(storage: BaseStorage, name: str, k: int, found: Found | None) -> list[Config]:
    """The k fastest completed configs of the named study, if it exists: from found, else its own trials."""
    if found is not None and name in found:
        return found[name][:k]
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return []
    done = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.COMPLETE,))
    return [config_of(t) for t in sorted(done, key=lambda t: t.value)[:k]]


def _tuned_bests(
    storage: BaseStorage,
    problem: Problem,
    bench: Benchmarker,
    batch_sizes: Sequence[int],
    options: TuneOptions,
    found: Found | None,
) -> list[Config]:
    """What this shape's studies already found: the nearest smaller and larger tuned batch sizes' best
    configs in this space, and in a Hopper study the base space's best at this M.

    Each study is taken from found, or looked up by its name (its trials alone are read) if one query
    says the storage holds it.
    """
    k = options.neighbour_seeds
    others = sorted((m for m in batch_sizes if m != problem.M), key=lambda m: abs(math.log(m / problem.M)))
    names = {m: study_name(problem.at(m), bench.device_name, bench.kind, bench.software, options.space) for m in others}
    known = set(found or ())
    known |= existing_studies(storage, [name for name in names.values() if name not in known])
    configs: list[Config] = []
    for side in (lambda m: m < problem.M, lambda m: m > problem.M):
        for m in (m for m in others if side(m) and names[m] in known):
            if bests := _bests(storage, names[m], k, found):  # a study another process has only begun: look further
                configs += bests
                break
    if options.space != "base":
        configs += _bests(storage, study_name(problem, bench.device_name, bench.kind, bench.software), k, found)
    return configs


def searchable(problem: Problem, bench: Benchmarker, space: str) -> tuple[Config, ...]:
    """The configs a study searches: the space's members that fit the device and that bench can measure.

    On a GPU that is the whole space bar tiles too large for shared memory; in replay of a partial
    landscape it is the recorded configs alone, so a search over a recorded subset of the space is
    judged on that subset (see tuner.benchmarkers._replay).
    """
    configs = _searchable(problem.block_k, space, bench.shared_memory_limit, bench.measurable(problem))
    if not configs:
        raise TuningError(f"{bench.kind} can measure no config of the {space} space for {problem}.")
    return configs


class _Searched(tuple):
    """The configs a study searches, hashed and compared by identity: the caches keyed on it (its schedules,
    its sampler's distributions) then cost nothing to ask, where hashing 15,360 configs costs milliseconds."""

    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other

    @functools.cached_property
    def members(self) -> frozenset[Config]:
        return frozenset(self)


@functools.lru_cache(maxsize=256)  # asked twice per study: the same configs for every M on a GPU
def _searchable(
    block_k: int, space: str, shared_memory_limit: int | None, measurable: frozenset[Config] | None
) -> _Searched:
    return _Searched(
        c for c in _space(block_k, space) if c.fits(shared_memory_limit) and (measurable is None or c in measurable)
    )


def schedules(configs: Sequence[Config], M: int) -> int:
    """How many distinct schedules configs launch at batch size M: the most configs a study can time.

    Where M fits in one row of tiles every GROUP_SIZE_M launches the same schedule, so the space's
    1280 configs hold 320 distinct ones at M <= 16 (see Config.schedule_key).
    """
    return _schedules(configs if isinstance(configs, tuple) else tuple(configs), M)


@functools.lru_cache(maxsize=256)  # a Hopper space's 15,360 configs took 50 ms a count
def _schedules(configs: tuple[Config, ...], M: int) -> int:
    return len({same_schedule(c, M) for c in configs})


def budget(problem: Problem, bench: Benchmarker, options: TuneOptions) -> int:
    """The configs a study of problem times: --trials, or fewer where its searchable space holds fewer."""
    return min(options.trials, schedules(searchable(problem, bench, options.space), problem.M))


def tune_problem(
    storage: BaseStorage,
    problem: Problem,
    bench: Benchmarker,
    options: TuneOptions,
    seeds: Sequence[Config],
    progress=None,
    *,
    existing: Config | None = None,
    baselines: Mapping[str, Config] | None = None,
    defaults: Sequence[Config] = (),
    outsider: Config | None = None,
    clock: RunClock | None = None,
    found: Found | None = None,
) -> StudyResult:
    """Run (or resume) one study until its budget is timed (see budget), then confirm its pick.

    existing is the entry an existing config file gives this M, baselines each baseline file's
    entry at this M by the file's name (tuner.baselines), defaults what the files' engines run
    without a file (tuner.engines; the first is "the default", SGLang's if none is given): the
    references, timed first and in full, and contenders of the confirmation round, which exports
    none of them unless it is slower than the round's fastest beyond the round's spread. References
    outside the searched configs are not compared, but outsider, the entry the written file holds at
    this M where it lies outside the space (a Hopper entry under --space base), is checked and joins
    the confirmation round, so it is replaced only by a faster config. progress (a tqdm bar) advances by
    one per config timed now. found, if given, gets this study's best configs (see Found).

    A new study is made with the sampler options.sampler names, which proposes the seeds first
    (after the references); a study made earlier resumes with the sampler that made it, so one
    study is one search.
    """
    clock = clock if clock is not None else RunClock()
    space = searchable(problem, bench, options.space)
    cap = schedules(space, problem.M)
    target = min(options.trials, cap)
    name = study_name(problem, bench.device_name, bench.kind, bench.software, options.space)
    with clock.timing(STORAGE):
        attrs = study_attrs(storage, name)
    sampler_name = made_with(attrs) or resolve(options.sampler)
    default = defaults[0] if defaults else default_config(problem.block_n, problem.block_k)
    with clock.timing(SAMPLING):
        references = dedupe([existing, *(baselines or {}).values(), *defaults[1:]], space.members)
        seeds = dedupe([*references, *seeds, default], space.members)  # SGLang's default stays where seeds put it
        ranking = options.prior.ranking(problem, bench.device_name) if options.prior else []
        sampler = make_sampler(
            sampler_name, space=space, seeds=seeds, seed=options.seed, batch_size=problem.M, ranking=ranking
        )
    made = {SAMPLER: sampler_name, SCHEDULES: cap, BUDGET: options.trials}
    if ranking:  # which device's landscapes the prior came from (another one's where this device has none)
        made[PRIOR_DEVICE] = options.prior.source(problem, bench.device_name)
    study = open_study(storage, problem, bench, sampler, space=options.space, attrs=made, clock=clock)
    with clock.timing(STORAGE):
        trials = study.get_trials(deepcopy=False)
    if retire_dead(study, trials, clock=clock):  # a dead process's claim on the budget is given back first
        with clock.timing(STORAGE):
            trials = study.get_trials(deepcopy=False)
    entries = {name: config.as_sglang() for name, config in (baselines or {}).items()}
    if entries and (attrs or {}).get(BASELINES) != entries:  # what the report and the end table compare with
        set_study_attrs(study, {BASELINES: entries}, clock=clock)
    already = sum(1 for t in trials if is_timed(t))
    if already < target:
        if attrs is not None and (attrs.get(BUDGET) or 0) < options.trials:  # a larger --trials extends it
            set_study_attrs(study, {BUDGET: options.trials}, clock=clock)
        bench.prepare(problem, seeds[: target - already])  # compile the seeds all at once
        search = Search(
            study,
            problem,
            bench,
            sampler,
            budget=target,
            space=space,
            prune_ratio=options.prune_ratio,
            never_prune=frozenset([*references, default]),
            deciding_s=options.deciding_s,
            clock=clock,
            on_timed=_progress_of(progress, problem, trials),
        )
        trials = search.run()
    if best(trials) is not None:
        with clock.timing(STORAGE):
            user_attrs = study.user_attrs
        outsiders = [] if outsider is None or outsider in space.members else [outsider]
        if not is_current(user_attrs, contenders(trials, problem, references, default, outsiders)):
            outsiders = [c for c in outsiders if bench.measure(problem, c).status == "ok"]  # checked before the round
            confirm(study, problem, bench, references=[*references, *outsiders], default=default, trials=trials,
                    outsiders=outsiders, clock=clock)  # fmt: skip
    result = study_result(study, problem, trials, default=default)
    if found is not None:
        complete = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
        found[name] = list(dict.fromkeys(config_of(t) for t in complete))[: options.neighbour_seeds]
    return result


def _progress_of(progress, problem: Problem, trials: Sequence[FrozenTrial]) -> Callable[[FrozenTrial], None] | None:
    """What the search calls per timed config: the bar advances, and shows the best latency so far."""
    if progress is None:
        return None
    found = best(trials)
    best_us = found[1] if found is not None else math.inf

    def timed(trial: FrozenTrial) -> None:
        nonlocal best_us
        progress.update(1)
        if trial.state == TrialState.COMPLETE and trial.value < best_us:
            best_us = trial.value
        if best_us < math.inf:
            status = f"N={problem.N} K={problem.K} M={problem.M} best {best_us:.1f} us"
            progress.set_postfix_str(status, refresh=False)  # drawn at the bar's own pace

    return timed


def study_result(
    study: optuna.Study,
    problem: Problem,
    trials: Sequence[FrozenTrial] | None = None,
    *,
    default: Config | None = None,
) -> StudyResult:
    """What a finished (or resumed) study found for problem: its confirmed pick, once confirmed.

    Latencies then come from the confirmation round, where pick and default were timed together.
    trials are the study's as last read (read again if not given); default is the config the file's
    engine runs without a file (SGLang's default unless given).
    """
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    found = best(trials)
    if found is None:
        raise TuningError(f"no config of the space ran for {problem}; see the trials' failure reasons.")
    timed = sum(1 for t in trials if is_timed(t))
    user_attrs = study.user_attrs
    round_ = confirmation_of(user_attrs)
    baseline_us = _baseline_us(user_attrs.get(BASELINES, {}), round_, trials)
    if round_ is not None:
        pick = Config.from_sglang(round_[CONFIRMED])
        return StudyResult(problem, pick, round_[CONFIRMED_US], round_[CONFIRM_DEFAULT_US], timed, baseline_us)
    default = default if default is not None else default_config(problem.block_n, problem.block_k)
    return StudyResult(problem, found[0], found[1], latency_of(trials, default), timed, baseline_us)


def _baseline_us(entries: Mapping[str, dict], round_: Mapping | None, trials: Sequence[FrozenTrial]) -> float | None:
    """The fastest baseline pick's latency: its median in the confirmation round, else its search time."""
    rounds = (round_ or {}).get(CONFIRM_ROUND) or {}
    latencies = []
    for entry in entries.values():
        config = Config.from_sglang(entry)
        times = rounds.get(config.short())
        latencies.append(statistics.median(times) if times else latency_of(trials, config))
    return min((us for us in latencies if us is not None), default=None)


def warm_starts(
    storage: BaseStorage,
    bench: Benchmarker,
    problem: Problem,
    batch_sizes: Sequence[int],
    options: TuneOptions,
    existing: dict[int, Config],
    *,
    found: Found | None = None,
) -> list[Config]:
    """Seeds for one study, most trusted first (see tuner.samplers)."""
    seeds = warm_start_seeds(
        problem,
        tuned=_tuned_bests(storage, problem, bench, batch_sizes, options, found),
        entry=nearest_entry(existing, problem.M) if existing else None,
        ranking=options.prior.ranking(problem, bench.device_name) if options.prior else [],
        prior_seeds=options.prior_seeds,
    )
    if options.space == "hopper" and bench.sm_count is not None:  # the most trusted base config, split
        base = next(c for c in seeds if c is not None and not c.hopper)
        seeds.append(split_seed(problem, base, bench.sm_count))
    return dedupe(seeds, _members(problem.block_k, options.space))


def _given_seeds(bench: Benchmarker, problem: Problem, options: TuneOptions, existing: dict[int, Config]) -> list:
    """The seeds known before any study of the shape ran: an existing file's entry, the default, the prior."""
    return warm_start_seeds(
        problem,
        tuned=[],
        entry=nearest_entry(existing, problem.M) if existing else None,
        ranking=options.prior.ranking(problem, bench.device_name) if options.prior else [],
        prior_seeds=options.prior_seeds,
    )


@functools.cache
def _space(block_k: int, space: str) -> tuple[Config, ...]:
    """search_space, built once per run (each study asks for it several times)."""
    return tuple(search_space(block_k, space))


@functools.cache
def _members(block_k: int, space: str) -> frozenset[Config]:
    """search_space as a set, built once per run: which seeds belong to it."""
    return frozenset(_space(block_k, space))


def split_seed(problem: Problem, base: Config, sm_count: int) -> Config:
    """base on SGLang's Hopper path, with SPLIT_K raised until one wave of programs fills the SMs.

    A narrow N at small M launches a few tiles for the device's sm_count SMs (132 on an H100 SXM or
    an H200, 114 on an H100 PCIe), which is what the Hopper path is for; local search from base
    alone reaches a good SPLIT_K one power of two at a time, spending most of a budget on the way
    (on the recorded Hopper grid, half the points missed 2% at 32 configs). So split the K loop by
    the power of two nearest sm_count / tiles, and swap A and B for M <= 16, where a tile of M rows
    fills little of the MMA's wide side. Computed from the problem and the device only, so it seeds
    the first study of a shape as well as the later ones (in replay, the landscape's device's SMs;
    a device of unknown SM count gets no split seed).
    """
    tiles = math.ceil(problem.M / base.block_m) * math.ceil(problem.N / base.block_n)
    split_k = 2 ** round(math.log2(max(1.0, sm_count / tiles)))
    return replace(base, split_k=min(split_k, SPLIT_K[-1]), swap_ab=problem.M <= 16)


def tune_shape(
    storage: BaseStorage,
    bench: Benchmarker,
    problems: Sequence[Problem],
    options: TuneOptions,
    save_path: str | Path,
    *,
    progress=None,
    engines: Sequence[Engine] = (SGLANG,),
    clock: RunClock | None = None,
    baseline_folders: Sequence[ConfigFolder] = (),
    made_by: Mapping[str, str] | None = None,
    next_first: Problem | None = None,
) -> tuple[list[StudyResult], list[Path]]:
    """Tune every batch size of one (N, K), smallest first, merging each best into the engines' config files,
    with made_by as its provenance (tuner.export.write_configs). next_first, the study the run tunes after
    this shape, has its seeds compiled while this shape's last study is searched (and its check runs).

    The next batch size's seeds that do not depend on this one's result (an existing file's entry,
    the default, the prior) compile while this one is searched. The files of baseline_folders that
    these engines read (or a folder the user named) for this shape and device (tuner.baselines) are
    the studies' baselines, and each engine's default config a reference too: each M's export is
    never slower than what the engines run there now, beyond the confirmation round's spread. With
    options.coverage, the coverage check (tuner.study._coverage) then probes the M between the batch
    sizes and adds the keys the files need; what it will time compiles ahead while the larger batch
    sizes are tuned.
    """
    clock = clock if clock is not None else RunClock()
    p0 = problems[0]
    paths = [Path(save_path) / e.file_name(p0.N, p0.K, bench.device_name, p0.input_type, p0.block_n, p0.block_k)
             for e in engines]  # fmt: skip
    defaults = engine_defaults(engines, p0.block_n, p0.block_k)
    with clock.timing(CONFIG_FILES):
        folders = folders_for(baseline_folders, engines)
        baselines, _ = find_baselines(folders, p0, bench.device_name)  # the run said which, at its start
        for engine, path in zip(engines, paths):
            start_from_baseline(path, engine, baselines)
        existing = read_config_file(paths[0]) if paths[0].exists() else {}
    batch_sizes = [p.M for p in problems]
    seeds_space = _members(p0.block_k, options.space)
    found: Found = {}
    bests: dict[int, list[Config]] = {}  # each tuned M's fastest configs: candidates of the coverage check
    results = []
    ordered = sorted(problems, key=lambda p: p.M)
    for problem, after in zip(ordered, [*ordered[1:], next_first]):
        with clock.timing(SAMPLING):
            seeds = warm_starts(storage, bench, problem, batch_sizes, options, existing, found=found)
            known = existing if after in ordered else {}  # the next shape's own file is read when it starts
            ahead = [] if after is None else dedupe(_given_seeds(bench, after, options, known), seeds_space)
        pick = nearest_entry(existing, problem.M) if existing else None
        held = existing.get(problem.M)  # what this run's entry replaces: kept if faster, even outside the space
        outsider = (
            held if held is not None and all(e.takes_hopper_entries or not held.hopper for e in engines) else None
        )
        picks = {baseline.name: baseline.pick(problem.M) for baseline in baselines}
        # This problem's seeds in place of the last one's lookahead that no compile process took yet.
        bench.prepare(problem, seeds[: options.trials], replace=True)
        if ahead:
            bench.prepare(after, ahead[: options.trials])
        if options.coverage is not None and results:  # behind the next studies' seeds, asked again each study
            prepare_ahead(bench, [r.problem for r in results], {r.problem.M: r.best for r in results}, bests)
        result = tune_problem(
            storage, problem, bench, options, seeds, progress, existing=pick, baselines=picks, defaults=defaults,
            outsider=outsider, clock=clock, found=found,
        )  # fmt: skip
        with clock.timing(CONFIG_FILES):
            for path in paths:
                write_configs(path, {problem.M: result.best}, made_by)
        results.append(result)
        name = study_name(problem, bench.device_name, bench.kind, bench.software, options.space)
        bests[problem.M] = found.get(name, [])[:BEST_FEW]
    if options.coverage is not None:
        check_shape(
            storage, bench, problems, paths, space=options.space, threshold=options.coverage, clock=clock,
            made_by=made_by,
        )  # fmt: skip
    return results, paths


def start_from_baseline(path: Path, engine: Engine, baselines: Sequence[Baseline]) -> None:
    """A new file starts as a copy of the file its engine loads now, so that it replaces that file whole.

    Tuned entries then replace the copies at their batch sizes; the keys the run does not tune (a
    sparse shipped file's, its sentinel keys) keep the entries the engine runs there today, and the
    provenance record says where they came from. A vLLM file takes no Hopper entries.
    """
    if path.exists():
        return
    own = [b for b in baselines if b.folder.label in (engine.name, USER_FOLDER)]
    if not own:
        return
    entries = {M: c for M, c in own[0].entries.items() if engine.takes_hopper_entries or not c.hopper}
    if entries:
        write_configs(path, entries, {"made_by": f"copied from {own[0].path}, the file {engine.name} loads now"})


def format_table(results: Sequence[StudyResult]) -> str:
    """M, best us, TFLOP/s, default-config us and speedup, one line per batch size; where a baseline
    file ran, also its (fastest) pick's us and the speedup over it."""
    with_baseline = any(r.baseline_us is not None for r in results)
    head = f"{'M':>6} {'best us':>10} {'TFLOP/s':>8} {'default us':>11} {'speedup':>8}"
    lines = [head + (f" {'baseline us':>12} {'speedup':>8}" if with_baseline else "") + "  config"]
    for r in sorted(results, key=lambda r: r.problem.M):
        line = f"{r.problem.M:>6} {r.best_us:>10.1f} {r.tflops:>8.1f} {_versus(r.default_us, r.best_us, 11)}"
        if with_baseline:
            line += f" {_versus(r.baseline_us, r.best_us, 12)}"
        lines.append(f"{line}  {r.best.short()}")
    return "\n".join(lines)


def _versus(reference_us: float | None, best_us: float, width: int) -> str:
    """A reference's us and the speedup over it, as two columns ('-' where it did not run)."""
    if reference_us is None:
        return f"{'-':>{width}} {'-':>8}"
    return f"{reference_us:>{width}.1f} {reference_us / best_us:>7.2f}x"
