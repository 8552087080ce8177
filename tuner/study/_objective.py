"""One trial: turn the sampled parameters into a config, time it once, record what happened.

A config already measured in the study is never timed again, failures are recorded with their
reason (never reported to the sampler as a number), slow configs are pruned from their cheap first
estimate, and a wrong result stops the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.benchmarkers import MEASURED, Benchmarker, Measurement, roofline_attrs
from tuner.samplers import distributions
from tuner.space import COMPILE_S, REASON, STATUS, TIMED, US, Config, Problem, config_of, default_config, search_space
from tuner.stopping import TuningError, interruptible, raise_if_held
from tuner.study._storage import best, is_timed

# How long a trial may stay undecided (neither claimed a measurement nor declined one), counted on
# this process's clock from when it first saw the trial so, before it counts as left by a dead process.
DECIDING_S = 10.0
# Waiting for earlier trials to decide: the first pause, doubled up to the last.
_FIRST_PAUSE_S = 0.05
_LAST_PAUSE_S = 1.0
INTERRUPTED = "interrupted"


class ConfigFailed(Exception):
    """The config could not run; caught by the study loop, so the trial is FAIL and the run goes on."""


class WrongResult(TuningError):
    """A config computed a wrong result: a kernel or harness bug, so the run stops."""


class Objective:
    """The callable handed to study.optimize for one problem."""

    def __init__(
        self,
        problem: Problem,
        bench: Benchmarker,
        *,
        budget: int,
        prune_ratio: float = 1.5,
        lookahead: Callable[[Sequence[FrozenTrial]], Sequence[Config]] | None = None,
        space: Sequence[Config] | None = None,
        never_prune: frozenset[Config] = frozenset(),
        deciding_s: float = DECIDING_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.problem = problem
        self.bench = bench
        self.budget = budget
        self.prune_ratio = prune_ratio
        # The configs the sampler will likely propose next, compiled while this one is timed.
        self.lookahead = lookahead
        # Baselines that reports compare with (SGLang's default, an existing file's pick) are
        # always measured in full.
        self.never_prune = never_prune | {default_config(problem.block_n, problem.block_k)}
        self._distributions = distributions(space if space is not None else search_space(problem.block_k))
        # The configs the study searches (None: the base space); a fallback sampler proposing
        # another one, over the product of the parameters' values, gets a trial that times nothing.
        self._space = frozenset(space) if space is not None else None
        # Waiting for other workers' trials: a local clock only (see _earlier_once_decided).
        self.deciding_s = deciding_s
        self._clock = clock
        self._sleep = sleep
        self._first_seen: dict[int, float] = {}  # trial number -> when this process first saw it undecided

    def __call__(self, trial: optuna.Trial) -> float:
        try:
            return self._run(trial)
        except KeyboardInterrupt:
            # Stored as FAIL by Optuna either way; say why, and give back any claim on the budget
            # (the measurement did not finish), so a rerun times exactly the budget.
            trial.set_user_attr(TIMED, False)
            trial.set_user_attr(STATUS, INTERRUPTED)
            trial.set_user_attr(REASON, "stopped by Ctrl-C before its measurement finished")
            raise

    def _run(self, trial: optuna.Trial) -> float:
        raise_if_held()  # before the trial claims a measurement, so an interrupted one costs no budget
        for name, distribution in self._distributions.items():
            trial.suggest_categorical(name, distribution.choices)
        config = config_of(trial)
        limit = self.bench.shared_memory_limit
        if not config.fits(limit):  # only a fallback sampler proposes these; never compiled
            trial.set_user_attr(TIMED, False)
            trial.set_user_attr(STATUS, "out_of_resources")
            trial.set_user_attr(REASON, f"skipped: needs {config.shared_memory_bytes()} B of shared memory > {limit}")
            raise ConfigFailed("does not fit in shared memory")
        if self._space is not None and config not in self._space:
            trial.set_user_attr(TIMED, False)
            trial.set_user_attr(STATUS, "not_searched")
            trial.set_user_attr(
                REASON, "skipped: outside the configs this study searches (in replay, the recorded ones)"
            )
            raise ConfigFailed("outside the searched configs")
        earlier = self._earlier_once_decided(trial)
        for t in earlier:
            if config_of(t) == config and (t.state == TrialState.RUNNING or t.user_attrs.get(STATUS) in MEASURED):
                trial.set_user_attr(TIMED, False)
                trial.set_user_attr(STATUS, "repeat")
                trial.set_user_attr(REASON, f"same config as trial {t.number}")
                raise ConfigFailed(f"repeat of trial {t.number}")
        if sum(1 for t in earlier if is_timed(t)) >= self.budget:  # spent by other workers
            trial.set_user_attr(TIMED, False)
            trial.set_user_attr(STATUS, "over_budget")
            trial.set_user_attr(REASON, f"other workers spent the budget of {self.budget} configs first")
            trial.study.stop()
            raise ConfigFailed("budget spent")

        trial.set_user_attr(TIMED, True)
        if self.lookahead is not None:
            self.bench.prepare(self.problem, self.lookahead(earlier))
        incumbent = best(earlier)
        prune_above = None if incumbent is None or config in self.never_prune else incumbent[1] * self.prune_ratio
        result = self.bench.measure(self.problem, config, prune_above_us=prune_above)
        self._record(trial, result)
        if result.status == "ok":
            return result.us
        if result.status == "pruned":
            trial.report(result.us, step=0)
            raise optuna.TrialPruned(f"first estimate {result.us:.1f} us > {prune_above:.1f} us")
        if result.status == "wrong_result":
            raise WrongResult(f"{config} computes a wrong result on {self.problem}: {result.reason}")
        raise ConfigFailed(f"{result.status}: {result.reason}")

    def _earlier_once_decided(self, trial: optuna.Trial) -> list[FrozenTrial]:
        """The lower-numbered trials, once each has decided whether it measures its config.

        Trials decide in trial-number order, so workers sharing a study never time one config
        twice nor overspend the budget. A trial that stays undecided for deciding_s belongs to a
        dead process (its heartbeat, if it started one, fails it later) and is no longer waited for.

        That time is counted on this process's monotonic clock from when it first saw the trial
        undecided, never from the trial's start: Optuna stamps datetime_start with the clock of
        the host that created the trial, in its local time zone, so comparing it with this
        host's clock would read a skewed or distant host's live trial as dead (and time its
        config twice) or a dead one as live for hours. A local observation needs no two clocks to
        agree, works on every storage, and costs at most deciding_s once per dead trial. The
        storage is read again after pauses that double up to a second, not every few ms.
        """
        pause = _FIRST_PAUSE_S
        while True:
            earlier = [t for t in trial.study.get_trials(deepcopy=False) if t.number < trial.number]
            now = self._clock()
            deciding = [
                t
                for t in earlier
                if t.state == TrialState.RUNNING
                and TIMED not in t.user_attrs
                and now - self._first_seen.setdefault(t.number, now) < self.deciding_s
            ]
            if not deciding:
                return earlier
            with interruptible():
                self._sleep(pause)
            pause = min(2 * pause, _LAST_PAUSE_S)

    def _record(self, trial: optuna.Trial, result: Measurement) -> None:
        trial.set_user_attr(STATUS, result.status)
        if result.reason or result.status not in ("ok", "pruned"):  # every failed trial says why
            trial.set_user_attr(REASON, result.reason or result.status)
        if result.compile_s is not None:
            trial.set_user_attr(COMPILE_S, round(result.compile_s, 3))
        if result.us is not None:
            trial.set_user_attr(US, round(result.us, 3))
            for key, value in roofline_attrs(self.problem, result.us, self.bench.device_name).items():
                trial.set_user_attr(key, value)
