"""The searcher: local search around the best configs found, seeded by warm starts.

Only 1 to 16 of the ~1250 runnable configs lie within 2% of the optimum at a given (shape, M), and
the landscape is smooth along each parameter: a good config's neighbours (one parameter moved one
step) are where better ones are. So each trial takes the best unvisited neighbour of the best
configs so far; when every such neighbourhood is exhausted it falls back to TPE.

A config has some 40 neighbours. With a prior (tuner.samplers.Prior) they are tried in the order
the prior ranks them, not in the fixed order of the parameters: in 16-config studies at M = 4096 on
the recorded H100 landscapes of (576, 7168) and (7168, 18432), that fixed order spent 6 of the 10 or
11 configs after the seeds on 32- and 128-row tiles, 256-wide 4-warp tiles and 64-deep K tiles, 1.5x
to 4.7x the optimum there, which the other shapes' landscapes rank far down.
"""

from __future__ import annotations

import functools
import itertools
import types
import warnings
from collections.abc import Sequence
from dataclasses import replace

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.samplers import BaseSampler, TPESampler
from optuna.trial import FrozenTrial, TrialState

from tuner.benchmarkers import MEASURED
from tuner.space import (
    BLOCK_SIZE_M,
    BLOCK_SIZE_N,
    GROUP_SIZE_M,
    HOPPER_KEYS,
    NUM_STAGES,
    NUM_WARPS,
    SGLANG_KEYS,
    SPLIT_K,
    STATUS,
    Config,
    config_of,
)

# Parameters whose neighbours are the adjacent values; GROUP_SIZE_M's values are all neighbours
# of each other (it is a reordering, with no notion of near).
# SWAP_AB is a flip, a neighbour of either value.
_ORDERED = {
    "BLOCK_SIZE_M": BLOCK_SIZE_M,
    "BLOCK_SIZE_N": BLOCK_SIZE_N,
    "num_warps": NUM_WARPS,
    "num_stages": NUM_STAGES,
    "SPLIT_K": SPLIT_K,
}


def parameter_keys(space: Sequence[Config]) -> tuple[str, ...]:
    """A study's parameters: SGLang's six keys, and SPLIT_K and SWAP_AB when the space has Hopper configs."""
    return (*SGLANG_KEYS, *HOPPER_KEYS) if any(c.hopper for c in space) else SGLANG_KEYS


def distributions(space: Sequence[Config]) -> dict[str, CategoricalDistribution]:
    """One categorical parameter per key, over the values the space holds."""
    keys = parameter_keys(space)
    columns = zip(*(c.params(keys).values() for c in space))
    return {key: CategoricalDistribution(sorted(set(values))) for key, values in zip(keys, columns)}


def _step(entry: dict[str, int], key: str, direction: int) -> dict[str, int] | None:
    values = _ORDERED[key]
    i = values.index(entry[key]) + direction
    return {**entry, key: values[i]} if 0 <= i < len(values) else None


def neighbours(config: Config, block_ks: Sequence[int], keys: Sequence[str] = SGLANG_KEYS) -> tuple[Config, ...]:
    """Configs near config among those with parameters keys, nearest first.

    First those one parameter away (one step along an ordered parameter, any other K tile or
    group, the other SWAP_AB); then those two steps away along two ordered parameters, because
    tile sizes, warps, stages and splits pay off together (a wider tile needs more warps), so the
    better config is often a joint move that neither single step reveals.
    """
    return _neighbours(config, tuple(block_ks), tuple(keys))


@functools.lru_cache(maxsize=1 << 16)  # a study asks for the same few configs' neighbours at every trial
def _neighbours(config: Config, block_ks: tuple[int, ...], keys: tuple[str, ...]) -> tuple[Config, ...]:
    entry = config.params(keys)
    ordered = [key for key in _ORDERED if key in entry]
    out = [moved for key in ordered for d in (-1, 1) if (moved := _step(entry, key, d)) is not None]
    out += [{**entry, "BLOCK_SIZE_K": bk} for bk in block_ks if bk != entry["BLOCK_SIZE_K"]]
    out += [{**entry, "GROUP_SIZE_M": g} for g in GROUP_SIZE_M if g != entry["GROUP_SIZE_M"]]
    if "SWAP_AB" in entry:
        out.append({**entry, "SWAP_AB": not entry["SWAP_AB"]})
    for first, second in itertools.combinations(ordered, 2):
        for d1, d2 in itertools.product((-1, 1), repeat=2):
            once = _step(entry, first, d1)
            twice = _step(once, second, d2) if once is not None else None
            if twice is not None:
                out.append(twice)
    return tuple(Config.from_sglang(e) for e in out)


def base_config(config: Config) -> Config:
    """config on the base kernel: SPLIT_K 1, no swap."""
    return replace(config, split_k=1, swap_ab=False)


def trial_config(trial: FrozenTrial) -> Config | None:
    """config_of(trial), remembered by the trial's parameters: a search asks it of every trial at every step."""
    return _config_of_params(tuple(trial.params.items()))


@functools.lru_cache(maxsize=1 << 16)
def _config_of_params(params: tuple[tuple[str, object], ...]) -> Config | None:
    return config_of(types.SimpleNamespace(params=dict(params)))


def visited(trials: Sequence[FrozenTrial]) -> set[Config]:
    """Configs the study has measured, is measuring or holds for a retry: never proposed again.

    A trial that failed without a measurement (stopped by Ctrl-C, its process killed, over the
    budget) leaves its config unvisited, so a resumed study still tries that seed or neighbour.
    """
    return {
        config
        for t in trials
        if (config := trial_config(t)) is not None
        and (t.state != TrialState.FAIL or t.user_attrs.get(STATUS) in MEASURED)
    }


@functools.lru_cache(maxsize=1 << 16)  # asked of every visited config at every trial
def same_schedule(config: Config, batch_size: int | None) -> Config:
    """The one config that stands for every config launching config's schedule at batch_size.

    Where M fits in one row of tiles every GROUP_SIZE_M launches the same schedule (see
    Config.schedule_key), so once one of them is measured a sampler proposes none of the others:
    on the recorded Hopper grid, local search spent 25 of 64 configs at one point on such twins.
    Without a batch size each config stands for itself.
    """
    return config.schedule_key(batch_size) if batch_size is not None else config


def observed_value(trial: FrozenTrial) -> float | None:
    """A trial's latency: its value, or for a pruned one its first estimate."""
    if trial.state == TrialState.COMPLETE:
        return trial.value
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        return trial.intermediate_values[max(trial.intermediate_values)]
    return None


class NeighbourhoodSampler(BaseSampler):
    """Warm-start seeds first, then best-first local search, then TPE once neighbourhoods run dry.

    Seeds are proposed by the sampler rather than enqueued as waiting trials, so workers sharing a
    study never race for the same waiting trial, and a resumed study skips seeds already tried.
    """

    def __init__(
        self,
        *,
        space: Sequence[Config],
        seeds: Sequence[Config] = (),
        seed: int | None = None,
        fallback: BaseSampler | None = None,
        batch_size: int | None = None,
        params: dict[str, CategoricalDistribution] | None = None,
        ranking: Sequence[Config] = (),
    ):
        self._space = frozenset(space)
        self._rank = {c: i for i, c in enumerate(ranking)}  # the prior's order (tuner.samplers.Prior.ranking)
        self._base_rank: dict[Config, int] = {}  # a base config's rank: that of its best-ranked split and swap
        for c, i in self._rank.items():
            self._base_rank.setdefault(base_config(c), i)
        self._batch_size = batch_size  # the study's M, which decides which configs launch one schedule
        self._seeds = [c for c in seeds if c in self._space]
        self._distributions = params if params is not None else distributions(space)
        self._keys = tuple(self._distributions)
        self._block_ks = self._distributions["BLOCK_SIZE_K"].choices
        with warnings.catch_warnings():  # TPE's multivariate/group options are marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._fallback = fallback or TPESampler(multivariate=True, group=True, seed=seed, n_startup_trials=8)

    @property
    def distributions(self) -> dict[str, CategoricalDistribution]:
        """One categorical parameter per key of the space."""
        return self._distributions

    def ahead(self, trials: Sequence[FrozenTrial], limit: int) -> list[Config]:
        """The configs this sampler proposes next, as far as it knows them: to compile ahead."""
        out = self.candidates(trials, limit)
        more = getattr(self._fallback, "ahead", None)  # once neighbourhoods run dry, the fallback's batch
        return out if len(out) == limit or more is None else [*out, *more(trials, limit - len(out))]

    def candidates(self, trials: Sequence[FrozenTrial], limit: int) -> list[Config]:
        """The next configs local search would try, best first (also used to compile ahead)."""
        tried = visited(trials)
        scored = sorted(
            (value, config) for t in trials if (value := observed_value(t)) is not None and (config := trial_config(t))
        )
        # Seeds are proposed as given (SGLang's default among them, measured for the report); a
        # neighbour whose schedule at this M was measured is not: it would time the same launch.
        out = [c for c in self._seeds if c not in tried][:limit]
        if len(out) == limit:
            return out
        seen = {same_schedule(c, self._batch_size) for c in [*tried, *out]}
        for _, config in scored:
            for candidate in self._in_prior_order(neighbours(config, self._block_ks, self._keys)):
                schedule = same_schedule(candidate, self._batch_size)
                if candidate in self._space and schedule not in seen:
                    seen.add(schedule)
                    out.append(candidate)
                    if len(out) == limit:
                        return out
        return out

    def _in_prior_order(self, configs: list[Config]) -> list[Config]:
        """configs, those the prior ranks better first; as given without a prior.

        A config is ranked by its base config (SPLIT_K 1, no swap) first, since a good split depends on
        the shape's N, which other shapes do not share; and a base by its best-ranked split and swap,
        since a Hopper study asks how good a tile is at its split, not unsplit. On the recorded Hopper
        grids, where splits win, base configs rank low at SPLIT_K 1: ranked so, 16-config studies tried
        the best's other splits and 16/32-wide tiles before its one stage move to the optimum. Within
        one base, the splits and swaps the prior ranked come in its order, the others at the base's
        rank; ties keep their order. With the shipped prior (base configs alone) this is the base
        config's own rank, as before.
        """
        if not self._rank:
            return configs
        unranked = len(self._rank)

        def rank(c: Config) -> tuple[int, int]:
            base = self._base_rank.get(base_config(c), unranked)
            return base, self._rank.get(c, base)

        return sorted(configs, key=rank)

    def infer_relative_search_space(self, study, trial) -> dict[str, CategoricalDistribution]:
        return dict(self._distributions)

    def sample_relative(self, study, trial, search_space) -> dict[str, int]:
        trials = study.get_trials(deepcopy=False)
        picked = self.candidates(trials, 1)
        if not picked:
            return self._fallback.sample_relative(
                study, trial, self._fallback.infer_relative_search_space(study, trial)
            )
        return picked[0].params(self._keys)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self._fallback.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._fallback.after_trial(study, trial, state, values)
