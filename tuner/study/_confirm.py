"""Confirm a study's pick before it is exported: re-time the contenders together, keep only a clear win.

A search times each config once, and at large M the spread between runs (and GPUs) is as large as
the margins between the best configs: a config can win by luck. So at the end of a study the best
few configs and the references (SGLang's default, and the picks of the files the user already has:
an existing file in the save path, an installed SGLang's or vLLM's) are timed again in one process,
in several interleaved rounds, and the fastest is exported only if it beats the fastest reference by
more than the spread that round itself measured; otherwise that reference is the safer choice. So
an export is never slower than what the user already runs, beyond the round's noise.

The decision is stored as one study user attribute (CONFIRMATION, a JSON object), so that two hosts
confirming one study never leave a mix of their two rounds, together with the contenders it was
based on: when those change (the study got more trials and found better configs, or a reference's
pick changed), the pick is confirmed again rather than exported stale. A round that failed to run
(its timing process was lost) is recorded as such, for the report and this run's export, and held
again by the next run.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from tuner.benchmarkers import Benchmarker, RunClock
from tuner.space import Config, Problem, config_of, default_config
from tuner.study._store import set_study_attrs

# How many of the study's best configs are re-timed, and how many interleaved rounds.
CONTENDERS = 3
ROUNDS = 5
# The study user attribute that holds the round (optuna-dashboard and the report show it), and its keys.
CONFIRMATION = "confirmation"
CONFIRMED = "confirmed"  # the exported config's six keys
CONFIRMED_US = "confirmed_us"  # its median over the rounds
CONFIRM_DEFAULT_US = "confirm_default_us"  # the default's median in the same rounds, if it ran
CONFIRM_REASON = "confirm_reason"
CONFIRM_ROUND = "confirm_round"  # config label -> its latency in each round
CONFIRM_BASIS = "confirm_basis"  # the contenders' labels: a round over other contenders is stale
# The reason a round that timed nothing records: the search's best stands until the next run.
ROUND_FAILED = "the confirmation round failed to run; the search's best stands until the next run holds it again"
# Before the round was one attribute, each key was a study user attribute of its own.
_LEGACY_KEYS = (CONFIRMED, CONFIRMED_US, CONFIRM_DEFAULT_US, CONFIRM_REASON, CONFIRM_ROUND)


@dataclass(frozen=True, kw_only=True)
class Confirmation:
    """What the confirmation round decided, and the numbers it decided on."""

    pick: Config
    reason: str
    medians: Mapping[Config, float]

    @property
    def pick_us(self) -> float:
        return self.medians[self.pick]


def _spread(times: Mapping[Config, Sequence[float]], *configs: Config) -> float:
    """The widest range of any of configs' latencies over the rounds: the noise a win must exceed."""
    return max(max(times[c]) - min(times[c]) for c in configs)


def decide(
    times: Mapping[Config, Sequence[float]], *, default: Config, references: Sequence[Config] = ()
) -> Confirmation:
    """The config to export from each contender's latencies over the rounds (µs, one per round).

    references are the baselines' picks beside the default: the fastest of those that ran (the
    default on a tie) is kept unless the round's fastest beats it by more than their spread.
    """
    times = {c: ts for c, ts in times.items() if ts}
    if not times:
        raise ValueError("no contender ran in the confirmation round.")
    medians = {c: statistics.median(ts) for c, ts in times.items()}
    winner = min(medians, key=lambda c: (medians[c], c))
    ran = [c for c in dict.fromkeys([default, *references]) if c in medians]
    if not ran:
        return Confirmation(pick=winner, reason="fastest; neither the default nor a baseline ran", medians=medians)
    reference = min(ran, key=medians.__getitem__)  # min keeps the first of equals: the default
    name = "the default" if reference == default else "the fastest baseline pick"
    if medians[reference] <= medians[winner]:
        return Confirmation(pick=reference, reason=f"{name} is fastest", medians=medians)
    if medians[reference] - medians[winner] > _spread(times, winner, reference):
        return Confirmation(pick=winner, reason=f"beats {name} by more than the round's spread", medians=medians)
    kept = "the default" if reference == default else "that pick"
    reason = f"the fastest was within the round's spread of {name}: {kept} is kept"
    return Confirmation(pick=reference, reason=reason, medians=medians)


def contenders(
    trials: Sequence[FrozenTrial],
    problem: Problem,
    references: Sequence[Config],
    default: Config | None = None,
    outsiders: Sequence[Config] = (),
) -> list[Config]:
    """The study's best few completed configs, the default (SGLang's unless given) and the references,
    where they completed, and outsiders (configs outside the study's space, measured apart from it)."""
    complete = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    ran = {config_of(t) for t in complete}
    best = list(dict.fromkeys(config_of(t) for t in complete))[:CONTENDERS]
    default = default if default is not None else default_config(problem.block_n, problem.block_k)
    kept_unless_beaten = [default, *references]
    return list(dict.fromkeys([*best, *(c for c in kept_unless_beaten if c in ran), *outsiders]))


def confirmation_of(user_attrs: Mapping[str, Any]) -> dict[str, Any] | None:
    """A study's confirmation round (the keys CONFIRMED ... CONFIRM_BASIS), or None if it has none.

    Reads the one attribute, or the separate attributes of a study confirmed before there was one
    (no basis: such a round counts as stale, see is_current).
    """
    if CONFIRMATION in user_attrs:
        return dict(user_attrs[CONFIRMATION])
    if CONFIRMED in user_attrs:
        return {key: user_attrs.get(key) for key in _LEGACY_KEYS}
    return None


def round_failed(round_: Mapping[str, Any]) -> bool:
    """Whether a stored round timed nothing: its timing process was lost, so it compared nothing."""
    return not any((round_.get(CONFIRM_ROUND) or {}).values())


def is_current(user_attrs: Mapping[str, Any], configs: Sequence[Config]) -> bool:
    """Whether the study's round ran, over exactly these contenders (else it must be held again)."""
    round_ = confirmation_of(user_attrs)
    basis = None if round_ is None else round_.get(CONFIRM_BASIS)
    return basis is not None and not round_failed(round_) and sorted(basis) == sorted(c.short() for c in configs)


def failed_rounds(storage: BaseStorage, names: Iterable[str]) -> list[str]:
    """The named studies whose last round failed to run: what a run holds again, and says so at its start."""
    found = []
    for name in names:
        try:
            study_id = storage.get_study_id_from_name(name)
        except KeyError:
            continue
        round_ = confirmation_of(storage.get_study_user_attrs(study_id))
        if round_ is not None and round_failed(round_):
            found.append(name)
    return found


def confirm(
    study: optuna.Study,
    problem: Problem,
    bench: Benchmarker,
    *,
    references: Sequence[Config] = (),
    default: Config | None = None,
    trials: Sequence[FrozenTrial] | None = None,
    rounds: int = ROUNDS,
    outsiders: Sequence[Config] = (),
    clock: RunClock | None = None,
) -> Confirmation:
    """Re-time the contenders in interleaved rounds, decide, and record the round on the study in one write.

    default is what the file's engine runs without a file (SGLang's default unless given); trials
    are the study's as last read (read again if not given).
    """
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    default = default if default is not None else default_config(problem.block_n, problem.block_k)
    configs = contenders(trials, problem, references, default, outsiders)
    times = bench.retime(problem, configs, rounds=rounds)
    if any(times.values()):
        decision = decide(times, default=default, references=references)
    else:  # the timing process was lost: nothing to confirm with, the search's best stands
        search_best = min((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
        medians = {configs[0]: search_best.value}
        decision = Confirmation(pick=configs[0], reason=ROUND_FAILED, medians=medians)
    default_us = decision.medians.get(default)
    round_ = {
        CONFIRMED: decision.pick.as_sglang(),
        CONFIRMED_US: round(decision.pick_us, 3),
        CONFIRM_DEFAULT_US: None if default_us is None else round(default_us, 3),
        CONFIRM_REASON: decision.reason,
        CONFIRM_ROUND: {c.short(): [round(t, 3) for t in ts] for c, ts in times.items()},
        CONFIRM_BASIS: [c.short() for c in configs],
    }
    set_study_attrs(study, {CONFIRMATION: round_}, clock=clock or RunClock())
    return decision
