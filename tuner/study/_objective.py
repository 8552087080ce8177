"""One trial: turn the sampled parameters into a config, time it once, record what happened.

A config already measured in the study is never timed again, failures are recorded with their
reason (never reported to the sampler as a number), slow configs are pruned from their cheap first
estimate, and a wrong result stops the run.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.benchmarkers import FAILURES, Benchmarker, Measurement, roofline_attrs
from tuner.exceptions import TuningError
from tuner.interrupt import interruptible, raise_if_held
from tuner.samplers import distributions
from tuner.space import COMPILE_S, REASON, STATUS, TIMED, US, Config, Problem, config_of, default_config, search_space
from tuner.study._storage import best

# How long a trial may take from its start to claiming a measurement before it counts as dead.
DECIDING_S = 10.0
# Statuses that mean "this config was measured"; other FAIL trials (interrupted, repeats) were not.
MEASURED = ("ok", "pruned", *FAILURES)


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
        never_prune: frozenset[Config] = frozenset(),
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
        self._distributions = distributions(search_space(problem.block_k))

    def __call__(self, trial: optuna.Trial) -> float:
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
        earlier = self._earlier_once_decided(trial)
        for t in earlier:
            if config_of(t) == config and (t.state == TrialState.RUNNING or t.user_attrs.get(STATUS) in MEASURED):
                trial.set_user_attr(TIMED, False)
                trial.set_user_attr(STATUS, "repeat")
                trial.set_user_attr(REASON, f"same config as trial {t.number}")
                raise ConfigFailed(f"repeat of trial {t.number}")
        if sum(1 for t in earlier if t.user_attrs.get(TIMED)) >= self.budget:  # spent by other workers
            trial.set_user_attr(TIMED, False)
            trial.set_user_attr(STATUS, "over_budget")
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
        twice nor overspend the budget. A trial still undecided DECIDING_S after its start
        belongs to a dead process (its heartbeat will fail it later) and is not waited for.
        """
        while True:
            earlier = [t for t in trial.study.get_trials(deepcopy=False) if t.number < trial.number]
            now = datetime.datetime.now()
            deciding = [t for t in earlier if t.state == TrialState.RUNNING and TIMED not in t.user_attrs
                        and (now - t.datetime_start).total_seconds() < DECIDING_S]  # fmt: skip
            if not deciding:
                return earlier
            with interruptible():
                time.sleep(0.05)

    def _record(self, trial: optuna.Trial, result: Measurement) -> None:
        trial.set_user_attr(STATUS, result.status)
        if result.reason:
            trial.set_user_attr(REASON, result.reason)
        if result.compile_s is not None:
            trial.set_user_attr(COMPILE_S, round(result.compile_s, 3))
        if result.us is not None:
            trial.set_user_attr(US, round(result.us, 3))
            for key, value in roofline_attrs(self.problem, result.us, self.bench.device_name).items():
                trial.set_user_attr(key, value)
