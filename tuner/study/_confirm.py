"""Confirm a study's pick before it is exported: re-time the contenders together, keep only a clear win.

A search times each config once, and at large M the spread between runs (and GPUs) is as large as
the margins between the best configs: a config can win by luck. So at the end of a study the best
few configs and the references (SGLang's default, and the picks of the files the user already has:
an existing file in the save path, an installed SGLang's or vLLM's) are timed again in one process,
in several interleaved rounds, and the fastest is exported only if it beats the fastest reference by
more than the spread that round itself measured; otherwise that reference is the safer choice. So
an export is never slower than what the user already runs, beyond the round's noise.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from tuner.benchmarkers import Benchmarker
from tuner.space import Config, Problem, config_of, default_config

# How many of the study's best configs are re-timed, and how many interleaved rounds.
CONTENDERS = 3
ROUNDS = 5
# Study user attributes the round is recorded in (optuna-dashboard and the report show them).
CONFIRMED = "confirmed"  # the exported config's six keys
CONFIRMED_US = "confirmed_us"  # its median over the rounds
CONFIRM_DEFAULT_US = "confirm_default_us"  # the default's median in the same rounds, if it ran
CONFIRM_REASON = "confirm_reason"
CONFIRM_ROUND = "confirm_round"  # config label -> its latency in each round


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


def contenders(study: optuna.Study, problem: Problem, references: Sequence[Config]) -> list[Config]:
    """The study's best few completed configs, the default and the references, where they completed."""
    complete = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.value)
    ran = {config_of(t) for t in complete}
    best = list(dict.fromkeys(config_of(t) for t in complete))[:CONTENDERS]
    kept_unless_beaten = [default_config(problem.block_n, problem.block_k), *references]
    return list(dict.fromkeys([*best, *(c for c in kept_unless_beaten if c in ran)]))


def confirm(
    study: optuna.Study,
    problem: Problem,
    bench: Benchmarker,
    *,
    references: Sequence[Config] = (),
    rounds: int = ROUNDS,
) -> Confirmation:
    """Re-time the contenders in interleaved rounds, decide, and record the round on the study."""
    configs = contenders(study, problem, references)
    times = bench.retime(problem, configs, rounds=rounds)
    if any(times.values()):
        decision = decide(times, default=default_config(problem.block_n, problem.block_k), references=references)
    else:  # the timing process was lost: nothing to confirm with, the search's best stands
        search_best = min(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.value)
        medians = {configs[0]: search_best.value}
        decision = Confirmation(pick=configs[0], reason="the confirmation round failed to run", medians=medians)
    default_us = decision.medians.get(default_config(problem.block_n, problem.block_k))
    study.set_user_attr(CONFIRMED_US, round(decision.pick_us, 3))
    study.set_user_attr(CONFIRM_DEFAULT_US, None if default_us is None else round(default_us, 3))
    study.set_user_attr(CONFIRM_REASON, decision.reason)
    study.set_user_attr(CONFIRM_ROUND, {c.short(): [round(t, 3) for t in ts] for c, ts in times.items()})
    # Last: other processes read the round once this is set, so everything else must be there.
    study.set_user_attr(CONFIRMED, decision.pick.as_sglang())
    return decision
