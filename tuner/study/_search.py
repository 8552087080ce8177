"""One study's search: propose a config, claim it in trial-number order, time it once, record what happened.

A config already measured in the study is never timed again, failures are recorded with their
reason (never reported to the sampler as a number), slow configs are pruned from their cheap first
estimate, a wrong result stops the run, and so does a GPU that fails a config known to run.

Workers sharing a study (several GPUs, several hosts) coordinate through the storage alone: a trial
decides whether it measures its config (its claim on the budget, user attribute `timed`) only once
every lower-numbered trial has decided, so no config is timed twice and the budget is met exactly.

What the storage costs per trial: one read of the study's trials (one small query where nothing
changed but this process's own trials, see _store.StudyRows), which the sampler sees as it was read
(a Snapshot); one write that creates the trial with its config and its claim, where no other process
created a trial since that read; one write with its result. Optuna's own loop (study.optimize)
committed each parameter and attribute on its own, some 23 commits per trial, and read the trials
through its ORM 4.7 times.
"""

from __future__ import annotations

import copy
import datetime
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.benchmarkers import (
    COMPILE_FAILURES,
    COMPILE_TRIES,
    FAILURES,
    MEASURED,
    SAMPLING,
    STORAGE,
    WORKER_WAITS,
    Benchmarker,
    Measurement,
    RunClock,
    compile_failed,
    roofline_attrs,
)
from tuner.samplers import trial_config
from tuner.space import (
    BLOCK_SIZE_M,
    BLOCK_SIZE_N,
    COMPILE_S,
    NUM_STAGES,
    REASON,
    STATUS,
    TIMED,
    US,
    Config,
    Problem,
    config_of,
    default_config,
)
from tuner.stopping import TuningError, interruptible, raise_if_held, stopped_by
from tuner.study._liveness import OWNER, Heartbeats, died_here, has_owner, owner, retire_dead
from tuner.study._rows import new_trial
from tuner.study._storage import best, is_timed
from tuner.study._store import StudyRows

# How long a trial of other code (one without an owner and heartbeats, see _liveness) may stay
# undecided, counted on this process's clock from when it first saw the trial so, before it counts
# as left by a dead process.
DECIDING_S = 10.0
# Waiting for earlier trials to decide: the first pause, doubled up to the last.
_FIRST_PAUSE_S = 0.05
_LAST_PAUSE_S = 1.0
# How many of the sampler's next proposals compile while one config is timed.
COMPILE_AHEAD = 12
# Live timing failures in a row after which the GPU, not the configs, is taken to be at fault.
CONSECUTIVE_FAILURES = 5
INTERRUPTED = "interrupted"
GPU_FAILURE = "gpu_failure"


class WrongResult(TuningError):
    """A config computed a wrong result: a kernel or harness bug, so the run stops."""


class GpuFailure(TuningError):
    """The GPU failed a config known to run (or failed config after config): the run stops, nothing is lost."""


@dataclass(frozen=True)
class _Decline:
    """Why a trial measures nothing: its status and reason (never counted against the budget)."""

    status: str
    reason: str

    def attrs(self) -> dict[str, Any]:
        return {TIMED: False, STATUS: self.status, REASON: self.reason}


class Snapshot:
    """The study as one read left it: what a sampler sees while it proposes one config.

    Optuna's samplers read the study's trials several times per proposal (TPE through its
    per-trial cache, GP and the tuner's samplers directly), each read a query of an RDB storage.
    GP also shares its proposal with other processes through the new trial's system attributes;
    here the trial does not exist yet (it is created with the proposal as its parameters, which
    is what other processes read), so that write is left out.
    """

    def __init__(self, study: optuna.Study, trials: list[FrozenTrial]) -> None:
        self._study = study
        self._trials = trials

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        return self._get_trials(deepcopy, states)

    def _get_trials(self, deepcopy: bool = True, states: Any = None, use_cache: bool = False) -> list[FrozenTrial]:
        trials = self._trials if states is None else [t for t in self._trials if t.state in states]
        return copy.deepcopy(trials) if deepcopy else list(trials)

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()

    @property
    def _storage(self) -> Any:
        return _WithoutProposalWrites(self._study._storage)


_PROPOSAL = -1  # the trial id a proposal is made for: the trial is created afterwards


class _WithoutProposalWrites:
    def __init__(self, storage: Any) -> None:
        self._storage = storage

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        if trial_id != _PROPOSAL:
            self._storage.set_trial_system_attr(trial_id, key, value)


class Search:
    """Runs one study's trials until budget configs are timed (or nothing new is left to propose)."""

    def __init__(
        self,
        study: optuna.Study,
        problem: Problem,
        bench: Benchmarker,
        sampler: optuna.samplers.BaseSampler,
        *,
        budget: int,
        space: Sequence[Config],
        prune_ratio: float = 1.5,
        never_prune: frozenset[Config] = frozenset(),
        deciding_s: float = DECIDING_S,
        clock: RunClock | None = None,
        on_timed: Callable[[FrozenTrial], None] | None = None,
        now: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.study = study
        self.problem = problem
        self.bench = bench
        self.sampler = sampler
        self.budget = budget
        self.prune_ratio = prune_ratio
        # Baselines that reports compare with (SGLang's default, an existing file's pick) are
        # always measured in full.
        self.never_prune = never_prune | {default_config(problem.block_n, problem.block_k)}
        self._space = frozenset(space)
        self._distributions = sampler.distributions
        # A sampler that proposes only configs already tried stops the study here at the latest.
        self._max_trials = 4 * len(self._space)
        self.deciding_s = deciding_s
        self.clock = clock if clock is not None else RunClock()
        self._on_timed = on_timed
        self._now = now
        self._sleep = sleep
        self._first_seen: dict[int, float] = {}  # trial number -> when this process first saw it undecided
        self._owner = {OWNER: owner()}
        self._rows = StudyRows(study, self.clock)
        self._beats = Heartbeats(self._rows)
        self._failures = 0  # live timing failures in a row (see _check_gpu)

    # --- the loop ------------------------------------------------------------------------------
    def run(self) -> list[FrozenTrial]:
        """Trials until the budget is spent; returns the study's trials as last read."""
        with self._beats:  # its thread ends with the search
            while self.step():
                pass
        return self._read()

    def step(self) -> bool:
        """One trial: a waiting one if the study holds any, else the sampler's next; False once done."""
        raise_if_held()  # before the next trial claims anything, so Ctrl-C costs no budget
        trials = self._read()
        if sum(1 for t in trials if is_timed(t)) >= self.budget or len(trials) >= self._max_trials:
            return False
        waiting = next((t for t in trials if t.state == TrialState.WAITING), None)
        if waiting is not None:
            self._take(waiting)
            return True
        return self._new(trials)

    def _read(self) -> list[FrozenTrial]:
        return self._rows.read()

    def _new(self, trials: list[FrozenTrial]) -> bool:
        """One new trial of the sampler's next config; False if it has nothing new to propose.

        The trial is created only once every trial before it has decided whether it measures, and
        only if no other process created a trial since the read: it decides as it is created, and a
        race it lost (another process's trial came first, maybe of the same config) leaves no trial;
        the next step proposes anew from a new read. A storage that cannot refuse a creation
        (Optuna's public calls) creates it regardless, and it decides once every earlier trial has.
        """
        config = self._propose(trials)
        decline = self._outside(config)
        if decline is not None:  # a fallback sampler's proposal from outside the space: recorded, never timed
            self._create(config, decline.attrs(), TrialState.FAIL)
            return True
        waited = not self._all_decided(trials)
        earlier = self._earlier_once_decided(len(trials)) if waited else trials
        decline = self._decide(config, earlier)
        if decline is not None:
            # Among the decided trials the sampler saw, a repeat means every schedule is measured or
            # being measured; after a wait, the trials it saw decided since: propose anew.
            return waited
        trial = self._create(config, {TIMED: True}, TrialState.RUNNING, expect=len(trials))
        if trial is None:  # another process created a trial since the read: nothing was written
            return True
        if trial.number == len(trials):  # decided in order
            self._measure(trial, config, earlier)
        else:
            self._settle(trial, config, claimed=True)
        return True

    def _take(self, waiting: FrozenTrial) -> None:
        """Run a waiting trial (a dead trial's retry, or an enqueued config) if no other process took it."""
        # Optuna's enqueue_trial keeps the config in a system attribute until the trial runs.
        fixed = None if waiting.params else waiting.system_attrs.get("fixed_params")
        config = config_of(waiting) if fixed is None else Config.from_sglang(fixed)
        params = {} if fixed is None else config.params(tuple(self._distributions))
        params = {k: v for k, v in params.items() if v in self._distributions[k].choices}
        trial = self._rows.take(waiting, params=params, distributions=self._distributions, system_attrs=self._owner)
        if trial is None:
            return
        decline = self._outside(config) if config is not None else _Decline("not_searched", "no complete config")
        if decline is not None:
            self._end(trial, decline.attrs(), TrialState.FAIL)
            return
        self._settle(trial, config, claimed=False)

    def _settle(self, trial: FrozenTrial, config: Config, *, claimed: bool) -> None:
        """Decide trial once every earlier trial has, write the decision if it is not written yet, run it."""
        with self._beats.alive(trial._trial_id):
            try:
                earlier = self._earlier_once_decided(trial.number)
                decline = self._decide(config, earlier)
            except BaseException as error:
                why = stopped_by(error) if isinstance(error, KeyboardInterrupt) else f"{type(error).__name__}"
                self._end(trial, _Decline(INTERRUPTED, f"{why} before it decided").attrs(), TrialState.FAIL)
                raise
            if decline is not None:
                self._end(trial, decline.attrs(), TrialState.FAIL)
                return
            if not claimed:
                try:
                    trial = self._rows.update(trial, user_attrs={TIMED: True})
                except optuna.exceptions.UpdateFinishedTrialError:
                    self._ended_elsewhere(trial)
                    return
        self._measure(trial, config, earlier)

    # --- proposing and deciding ----------------------------------------------------------------
    def _propose(self, trials: list[FrozenTrial]) -> Config:
        """The sampler's next config, proposed from the trials as read (the trial is created after)."""
        with self.clock.timing(SAMPLING):
            view = Snapshot(self.study, trials)
            now = datetime.datetime.now()
            proposal = FrozenTrial(
                number=len(trials), state=TrialState.RUNNING, value=None, values=None, datetime_start=now,
                datetime_complete=None, params={}, distributions={}, user_attrs={}, system_attrs={},
                intermediate_values={}, trial_id=_PROPOSAL,
            )  # fmt: skip
            self.sampler.before_trial(view, proposal)
            params = self.sampler.sample_relative(
                view, proposal, self.sampler.infer_relative_search_space(view, proposal)
            )
            for name, distribution in self._distributions.items():
                if name not in params:
                    params[name] = self.sampler.sample_independent(view, proposal, name, distribution)
            return Config.from_sglang({key: v if key == "SWAP_AB" else int(v) for key, v in params.items()})

    def _outside(self, config: Config) -> _Decline | None:
        """Why config is never timed here, whatever the other trials hold."""
        limit = self.bench.shared_memory_limit
        if not config.fits(limit):  # only a fallback sampler proposes these; never compiled
            return _Decline(
                "out_of_resources", f"skipped: needs {config.shared_memory_bytes()} B of shared memory > {limit}"
            )
        if config not in self._space:
            return _Decline(
                "not_searched", "skipped: outside the configs this study searches (in replay, the recorded ones)"
            )
        return None

    def _decide(self, config: Config, earlier: list[FrozenTrial]) -> _Decline | None:
        """None to claim a measurement of config, given the earlier trials (all decided); else why not."""
        for t in earlier:
            if trial_config(t) == config and (t.state == TrialState.RUNNING or t.user_attrs.get(STATUS) in MEASURED):
                return _Decline("repeat", f"same config as trial {t.number}")
        if sum(1 for t in earlier if is_timed(t)) >= self.budget:
            return _Decline("over_budget", f"other workers spent the budget of {self.budget} configs first")
        return None

    @staticmethod
    def _undecided(trial: FrozenTrial) -> bool:
        return trial.state == TrialState.RUNNING and TIMED not in trial.user_attrs

    def _all_decided(self, trials: list[FrozenTrial]) -> bool:
        return not any(self._undecided(t) for t in trials)

    def _earlier_once_decided(self, number: int) -> list[FrozenTrial]:
        """The lower-numbered trials, once each has decided whether it measures its config.

        Trials decide in trial-number order, so workers sharing a study never time one config twice
        nor overspend the budget. A trial of a process that died undecided is failed (and retried)
        as soon as that is known (see tuner.study._liveness); one that other code made, without
        heartbeats, is no longer waited for once it stayed undecided for deciding_s.

        That time is counted on this process's monotonic clock from when it first saw the trial
        undecided, never from the trial's start: Optuna stamps datetime_start with the clock of the
        host that created the trial, in its local time zone, so comparing it with this host's
        clock would read a skewed or distant host's live trial as dead (and time its config twice)
        or a dead one as live for hours. A live trial with heartbeats is waited for however long it
        waits itself, so a chain of undecided trials (one dead, the next waiting on it) never makes
        a later trial give up on a live one just before it decides. The storage is read again
        after pauses that double up to a second, not every few ms.
        """
        pause = _FIRST_PAUSE_S
        category = STORAGE  # the first read is the decision's own; the rest is waiting for others
        while True:
            earlier = [t for t in self._rows.read(category) if t.number < number]
            undecided = [t for t in earlier if self._undecided(t)]
            # Dead on this host: seen from /proc at once. Elsewhere: the storage's heartbeats, while waiting.
            check = category == WORKER_WAITS or any(died_here(t) for t in undecided)
            if undecided and check and retire_dead(self.study, undecided, clock=self.clock):
                continue
            now = self._now()
            waited_for = [
                t
                for t in undecided
                if has_owner(t) or now - self._first_seen.setdefault(t.number, now) < self.deciding_s
            ]
            if not waited_for:
                return earlier
            category = WORKER_WAITS
            with self.clock.timing(WORKER_WAITS), interruptible():
                self._sleep(pause)
            pause = min(2 * pause, _LAST_PAUSE_S)

    # --- timing and recording ------------------------------------------------------------------
    def _create(
        self, config: Config, attrs: dict[str, Any], state: TrialState, *, expect: int | None = None
    ) -> FrozenTrial | None:
        """A trial of config in one write; None if expect is given and another trial came first (see StudyRows)."""
        trial = new_trial(
            state=state,
            params=config.params(tuple(self._distributions)),
            distributions=self._distributions,
            user_attrs=attrs,
            system_attrs=self._owner if state == TrialState.RUNNING else None,
        )
        return self._rows.create(trial, expect=expect)

    def _end(self, trial: FrozenTrial, attrs: dict[str, Any], state: TrialState, **kwargs: Any) -> FrozenTrial | None:
        """Record how trial ended, in one write; None if another process ended it first (see _ended_elsewhere)."""
        try:
            return self._rows.update(trial, user_attrs=attrs, state=state, **kwargs)
        except optuna.exceptions.UpdateFinishedTrialError:
            self._ended_elsewhere(trial)
            return None

    def _ended_elsewhere(self, trial: FrozenTrial) -> None:
        """One line for a trial another process ended while this one ran it, and the search goes on.

        That process took it for dead: its heartbeat went stale (a stall past the grace period,
        Ctrl-Z, a long wait for a lock). It failed the trial and retries its config, so what this
        process found for it is dropped rather than written over that.
        """
        print(
            f"note: another process ended trial {trial.number} of {self.study.study_name} first (its heartbeat looked "
            "stale: a stall, Ctrl-Z or a long lock wait); its result here is dropped, and its retry times it again",
            file=sys.stderr,
        )

    def _measure(self, trial: FrozenTrial, config: Config, earlier: list[FrozenTrial]) -> None:
        """Time config for trial, which has claimed it, and record the result in one write."""
        with self._beats.alive(trial._trial_id):
            try:
                with self.clock.timing(SAMPLING):
                    ahead = self.sampler.ahead([*earlier, trial], COMPILE_AHEAD)
                self.bench.prepare(self.problem, [config, *ahead])
                incumbent = best(earlier)
                never = incumbent is None or config in self.never_prune
                prune_above = None if never else incumbent[1] * self.prune_ratio
                result = self.bench.measure(self.problem, config, prune_above_us=prune_above)
                self._check_gpu(trial, config, result, earlier)
            except KeyboardInterrupt as error:
                # The measurement did not finish: give back the claim, so a rerun times exactly the budget.
                attrs = _Decline(INTERRUPTED, f"{stopped_by(error)} before its measurement finished").attrs()
                self._end(trial, attrs, TrialState.FAIL)
                raise
            except GpuFailure:
                raise
            except BaseException as error:
                self._end(trial, _Decline("error", f"{type(error).__name__}: {error}"[:300]).attrs(), TrialState.FAIL)
                raise
            result = _unless_compile_lost(config, result, earlier)
            if isinstance(result, _Decline):  # the compile process was lost: the claim is given back
                self._end(trial, result.attrs(), TrialState.FAIL)
                return
            self._record(trial, config, result)
        if result.status == "wrong_result":
            raise WrongResult(f"{config} computes a wrong result on {self.problem}: {result.reason}")

    def _record(self, trial: FrozenTrial, config: Config, result: Measurement) -> None:
        attrs: dict[str, Any] = {STATUS: result.status}
        if result.reason or result.status not in ("ok", "pruned"):  # every failed trial says why
            attrs[REASON] = result.reason or result.status
        if result.compile_s is not None:
            attrs[COMPILE_S] = round(result.compile_s, 3)
        if result.us is not None:
            attrs[US] = round(result.us, 3)
            attrs.update(roofline_attrs(self.problem, result.us, self.bench.device_name))
        state = {"ok": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(result.status, TrialState.FAIL)
        value = result.us if result.status == "ok" else None
        intermediate = result.us if result.status == "pruned" else None  # the first estimate, as a pruner reports it
        ended = self._end(trial, attrs, state, value=value, intermediate=intermediate)
        if ended is None:  # another process ended it first
            return
        with self.clock.timing(SAMPLING):
            self.sampler.after_trial(self.study, ended, state, None if value is None else [value])
        if self._on_timed is not None:
            self._on_timed(ended)

    def _check_gpu(self, trial: FrozenTrial, config: Config, result: Measurement, earlier: list[FrozenTrial]) -> None:
        """After a live crash or timeout, time a config known to run: if it fails too, the GPU is at fault.

        A dead or reset GPU (or another tenant's out-of-memory) makes every config crash; counted
        as the configs' failures, they would spend the study's budget and leave it with nothing
        that ran, for good. So a config known to run, never the one that failed (see
        _known_to_run), is timed once more; if that fails too, or failures keep coming
        CONSECUTIVE_FAILURES times in a row, the trial is recorded as not measured (a rerun retries
        its config) and the run stops. A replayed failure is a recorded fact about its config, not
        the state of a device now.
        """
        if result.status in ("ok", "pruned"):
            self._failures = 0
        if self.bench.kind != "gpu" or result.status not in ("crash", "timeout"):
            return
        self._failures += 1
        known = _known_to_run(self.problem, config, earlier)
        again = known is None or bool(self.bench.retime(self.problem, [known], rounds=1).get(known))
        if again and self._failures < CONSECUTIVE_FAILURES:
            return
        then = f"{self._failures} configs in a row failed" if again else f"{known.short()}, known to run, failed too"
        why = f"{config.short()} failed ({result.status}: {result.reason}), then {then}"
        reason = f"not measured: the GPU failed ({why})"
        self._end(trial, _Decline(GPU_FAILURE, reason).attrs(), TrialState.FAIL)
        raise GpuFailure(
            f"the GPU stopped running kernels on {self.problem}: {why}. Nothing was counted against the budget "
            "for it; check the GPU (nvidia-smi) and rerun the same command to resume."
        )


def _known_to_run(problem: Problem, failed: Config, earlier: Sequence[FrozenTrial]) -> Config | None:
    """What the GPU is checked with once the config `failed` crashed or hung: a config a healthy GPU runs.

    The study's fastest config, else SGLang's default, else the space's smallest tile (a few kB of
    shared memory at two stages: any device the kernel runs on runs it); the first of those that is
    not `failed` and did not fail earlier in the study, or None. Never `failed` itself: checked with
    itself, a default that crashed as a study's first config stopped the run on a healthy GPU.
    """
    default = default_config(problem.block_n, problem.block_k)
    smallest = replace(default, block_m=BLOCK_SIZE_M[0], block_n=BLOCK_SIZE_N[0], group_m=1, num_stages=NUM_STAGES[0])
    incumbent = best(earlier)
    failures = {failed, *(trial_config(t) for t in earlier if t.user_attrs.get(STATUS) in FAILURES)}
    candidates = [*([incumbent[0]] if incumbent is not None else []), default, smallest]
    return next((c for c in candidates if c not in failures), None)


def _unless_compile_lost(config: Config, result: Measurement, earlier: Sequence[FrozenTrial]) -> Measurement | _Decline:
    """result, unless config's compile process died or hung: then nothing was measured (a _Decline).

    That is the host's failure (a busy host's OOM killer, a slow compile), not yet the config's: the
    trial gives its claim back, and the config compiles anew when it is proposed again. Once it
    failed so COMPILE_TRIES times in the study, the failure is the config's own (compile_error),
    so a config that always kills its compiler is tried a bounded number of times.
    """
    if result.status not in COMPILE_FAILURES:
        return result
    tries = 1 + sum(1 for t in earlier if trial_config(t) == config and t.user_attrs.get(STATUS) in COMPILE_FAILURES)
    if tries >= COMPILE_TRIES:
        return compile_failed(result)
    return _Decline(result.status, f"{result.reason}; not measured: compiled again when proposed again")
