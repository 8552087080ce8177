"""Spread a run over several workers (one per GPU, or replay workers), all on one Optuna storage.

The storage is the only coordinator: each worker takes whole shapes (or contiguous runs of batch
sizes when there are fewer shapes than workers), balanced by estimated cost, and writes its trials
to the shared storage; config files merge under a lock as studies finish, and the parent writes
every file once more from the storage at the end, so no entry depends on a worker's last write.

The parent alone takes Ctrl-C and SIGTERM for the run and passes a stop on to its workers, which
stop as a single process does (tuner.stopping); a worker whose parent dies, even of SIGKILL, stops
too, so no worker goes on with the job (and the GPU) on its own.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tuner.baselines import baseline_folders
from tuner.benchmarkers import Benchmarker, GpuBenchmarker, Measurement, ReplayBenchmarker, RunClock
from tuner.engines import SGLANG, Target
from tuner.space import Config, Problem
from tuner.stopping import (
    TuningError,
    die_with_parent,
    exit_status,
    held_outside_waits,
    ignore_ctrl_c,
    interruptible,
    stopped_by_ctrl_c,
)

_SPAWN = mp.get_context("spawn")


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs, picklable."""

    storage_url: str
    save_path: str
    trials: int
    seed: int | None
    use_prior: bool
    replay: str | None = None
    compile_workers: int | None = None
    sampler: str = "auto"
    # Which search fills which engine's file (tuner.engines.plan_targets): each shape is tuned once per target.
    targets: tuple[Target, ...] = (Target(space="base", engines=(SGLANG,), why="asked for"),)
    baseline: str = "none"  # --baseline: auto, none or a folder of the config files the user already has
    coverage: bool = True  # check the M between the batch sizes after each shape (--no-coverage: not)
    made_by: dict[str, str] | None = None  # the provenance of the entries it writes (tuner.export.write_configs)


def _cost(problems: Sequence[Problem]) -> float:
    """Relative GPU time of a unit: compile cost per study plus time that grows with M * N * K."""
    return sum(1.0 + p.M * p.N * p.K / 2**35 for p in problems)


def split_work(shapes: Sequence[Sequence[Problem]], workers: int) -> list[list[list[Problem]]]:
    """Units of work per worker: longest-processing-time-first over shapes or runs of batch sizes."""
    if workers < 1:
        raise ValueError(f"need at least one worker, but got {workers}.")
    units: list[list[Problem]] = []
    chunks = max(1, math.ceil(workers / len(shapes)))
    for problems in shapes:
        ordered = sorted(problems, key=lambda p: p.M)
        parts = min(chunks, len(ordered))
        bounds = [round(i * len(ordered) / parts) for i in range(parts + 1)]
        units += [ordered[a:b] for a, b in zip(bounds, bounds[1:])]
    plan: list[list[list[Problem]]] = [[] for _ in range(workers)]
    load = [0.0] * workers
    for unit in sorted(units, key=_cost, reverse=True):
        least = load.index(min(load))
        plan[least].append(unit)
        load[least] += _cost(unit)
    return plan


class _Counted:
    """A benchmarker that counts the configs measured through it (for the run's closing line)."""

    def __init__(self, bench: Benchmarker) -> None:
        self._bench = bench
        self.measurements = 0

    def __getattr__(self, name: str) -> Any:  # everything but measure
        return getattr(self._bench, name)

    def measure(self, problem: Problem, config: Config, *, prune_above_us: float | None = None) -> Measurement:
        self.measurements += 1
        return self._bench.measure(problem, config, prune_above_us=prune_above_us)


def _spec_benchmarker(spec: WorkerSpec, device_index: int, clock: RunClock) -> Benchmarker:
    """The benchmarker a spec names: its landscape in replay, else the GPU device_index."""
    if spec.replay is not None:
        return ReplayBenchmarker.from_file(spec.replay)
    return GpuBenchmarker(device_index=device_index, compile_workers=spec.compile_workers, clock=clock)


def tune_units(
    spec: WorkerSpec,
    device_index: int,
    units: Sequence[Sequence[Problem]],
    *,
    progress: bool = False,
    benchmarker: Callable[[RunClock], Benchmarker] | None = None,
):
    """Tune units of work on one device (or in replay): the single-GPU driver and each worker's body.

    benchmarker makes the benchmarker, given the run's clock; by default the one spec names. At
    the start, one line says which studies time fewer configs than --trials (their space holds
    fewer); at the end one line on stdout gives the GPU duty cycle and where the rest of the wall
    time went (see RunClock), and a second the GPU and wall time per measured config: what to cut
    next. In replay the line says where the time went without GPU figures. The progress bar shows
    only when something is left to time. Returns (StudyResults, config files) per unit.
    """
    import optuna
    from tqdm import tqdm

    from tuner.samplers import Prior
    from tuner.stopping import held_outside_waits
    from tuner.study._coverage import THRESHOLD
    from tuner.study._storage import make_storage, study_name, study_states, superseded
    from tuner.study._tuning import TuneOptions, budget, tune_shape

    clock = RunClock()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed configs are recorded, not logged
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if benchmarker is None:
        bench = _spec_benchmarker(spec, device_index, clock)
    else:
        bench = benchmarker(clock)
    counted = _Counted(bench)
    storage = make_storage(spec.storage_url)
    prior = Prior.shipped() if spec.use_prior else None
    if prior is not None and not prior.shapes:
        print("warning: the installed tuner holds no recorded landscapes (tuner/samplers/landscapes/): warm starts "
              "go without a prior from other shapes.", file=sys.stderr)  # fmt: skip
    options = TuneOptions(
        trials=spec.trials,
        seed=spec.seed,
        prior=prior,
        sampler=spec.sampler,
        coverage=THRESHOLD if spec.coverage else None,
    )
    folders = baseline_folders(spec.baseline)
    problems = [problem for unit in units for problem in unit]
    outcome = []
    try:
        budgets, names = {}, {}
        for target in spec.targets:
            if stale := superseded(storage, problems, bench, target.space):
                print(f"note: {len(stale)} of the studies of these problems in the storage were made with other "
                      f"software or another landscape (e.g. {stale[0]}); they are not reused: tuning anew.",
                      file=sys.stderr)  # fmt: skip
            searched = replace(options, space=target.space)
            for p in problems:
                budgets[p, target.space] = budget(p, bench, searched)
                names[p, target.space] = study_name(p, bench.device_name, bench.kind, bench.software, target.space)
        if note := capped_note(budgets, spec.trials):
            print(note, file=sys.stderr)
        states = study_states(storage, names.values())
        done = sum(min(budgets[key], states[names[key]].timed if states[names[key]] else 0) for key in budgets)
        total = sum(budgets.values())
        with held_outside_waits(), tqdm(total=total, initial=done, desc="timed configs", unit="cfg", mininterval=2,
                                        disable=not progress or done == total) as bar:  # fmt: skip
            order = [(unit, target) for unit in units for target in spec.targets]
            for (unit, target), following in zip(order, [*order[1:], None]):
                results, paths = tune_shape(
                    storage, counted, unit, replace(options, space=target.space), spec.save_path, progress=bar,
                    engines=target.engines, clock=clock, baseline_folders=folders, made_by=spec.made_by,
                    next_first=None if following is None else min(following[0], key=lambda p: p.M),
                )  # fmt: skip
                outcome.append((results, paths))
    finally:
        close = getattr(bench, "close", None)
        if close is not None:
            close()
    device = bench.kind == "gpu"
    label = f"GPU {device_index}" if device else f"replay worker {device_index}"
    print(clock.report(clock.elapsed(), label=label, measurements=counted.measurements, device=device), flush=True)
    return outcome


def capped_note(budgets: dict[tuple[Problem, str], int], trials: int) -> str | None:
    """One line for the studies (problem, space) whose searchable space holds fewer distinct configs than --trials."""
    capped = sorted((key for key, n in budgets.items() if n < trials), key=lambda k: (k[0].N, k[0].K, k[0].M, k[1]))
    if not capped:
        return None
    listed = ", ".join(f"M={p.M}: {budgets[p, space]}" for p, space in capped[:6]) + (" ..." if len(capped) > 6 else "")
    return (f"note: {len(capped)} of {len(budgets)} studies can time fewer than --trials {trials} distinct configs "
            f"({listed}); each stops there.")  # fmt: skip


def _worker(spec: WorkerSpec, device_index: int, units: Sequence[Sequence[Problem]], parent_pid: int) -> None:
    """One worker process: it stops on the SIGTERM its parent passes on, or sends it when the parent dies.

    Ctrl-C reaches every process of the terminal: the parent alone takes it, and passes it on as
    SIGTERM, which a worker takes as a single process takes Ctrl-C (at its next safe point, a second
    one at once). The parent started it with Ctrl-C blocked, so none is taken before it is ignored.
    """
    ignore_ctrl_c()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    die_with_parent(parent_pid, signal.SIGTERM)
    try:
        tune_units(spec, device_index, units)
    except BaseException as error:
        if stopped_by_ctrl_c(error):
            sys.exit(exit_status(error))
        if isinstance(error, TuningError):  # as the single-process run reports it: one line
            print(f"failed: {type(error).__name__}: {error}", file=sys.stderr)
            sys.exit(1)
        raise


def run_workers(spec: WorkerSpec, devices: Sequence[int], shapes: Sequence[Sequence[Problem]]) -> list[int]:
    """Run one process per device over its share of the work; returns their exit codes.

    Ctrl-C or SIGTERM while they run is passed on to every worker (see _worker), and once they have
    all stopped it is raised here as in a single process (KeyboardInterrupt, or Terminated), so the
    command reports it as usual; a further one while they stop is passed on too, to act at once.
    """
    plan = split_work(shapes, len(devices))
    if spec.replay is None and spec.compile_workers is None:
        spec = replace(spec, compile_workers=max(1, (os.cpu_count() or 2) // len(devices) - 1))
    processes: list[Any] = []
    try:
        with held_outside_waits():
            for device, units in zip(devices, plan):
                if not units:
                    continue
                process = _SPAWN.Process(
                    target=_worker, args=(spec, device, units, os.getpid()), name=f"tuner-worker-{device}"
                )
                blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # until the worker ignores it
                try:
                    process.start()
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
                processes.append(process)
            _join(processes)
    except KeyboardInterrupt:
        _stop(processes)
        raise
    return [process.exitcode for process in processes]


def _join(processes: Sequence[Any]) -> None:
    """Wait for every process to end; Ctrl-C or SIGTERM cuts the wait short (a KeyboardInterrupt)."""
    with interruptible():
        for process in processes:
            process.join()


def _stop(processes: Sequence[Any]) -> None:
    """Stop the workers that still run, and wait for them: each stops at its next safe point."""
    while alive := [process for process in processes if process.is_alive()]:
        for process in alive:
            os.kill(process.pid, signal.SIGTERM)
        try:
            with held_outside_waits():
                _join(alive)
        except KeyboardInterrupt:  # another stop: passed on, and the workers act on it at once
            continue


def collect(
    spec: WorkerSpec, device_name: str, kind: str, software: dict[str, str], shapes: Sequence[Sequence[Problem]]
):
    """Read every shape's results back from the storage and write its config file once more.

    The keys the workers' coverage checks added are written too (tuner.study._coverage keeps them
    on the studies). software is what the workers' studies are keyed on (their benchmarker's),
    known to the caller.
    """
    import optuna

    from tuner.export import write_configs
    from tuner.study._coverage import added_by, stored_coverage
    from tuner.study._storage import make_storage, study_name
    from tuner.study._tuning import study_result

    storage = make_storage(spec.storage_url)  # each study is looked up by its name
    outcome = []
    for problems in shapes:
        p = problems[0]
        for target in spec.targets:
            results = []
            names = {q.M: study_name(q, device_name, kind, software, target.space) for q in problems}
            for problem in problems:
                study = optuna.load_study(study_name=names[problem.M], storage=storage)
                default = target.defaults(p.block_n, p.block_k)[0]
                results.append(study_result(study, problem, default=default))
            coverage = stored_coverage(storage, problems, names) if spec.coverage else None
            files = [e.file_name(p.N, p.K, device_name, p.input_type, p.block_n, p.block_k) for e in target.engines]
            paths = [Path(spec.save_path) / name for name in files]
            for path in paths:
                if coverage is not None and coverage.added:  # first, so that a tuned M's own entry wins
                    write_configs(path, coverage.added, added_by(spec.made_by))
                write_configs(path, {r.problem.M: r.best for r in results}, spec.made_by)
            outcome.append((results, paths))
    return outcome
