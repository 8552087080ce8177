"""The one place a sampler is built from its name, for tuner.run, the study layer and tuner.evaluate."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence

import optuna
from optuna.samplers import BaseSampler, GPSampler, RandomSampler, TPESampler

from tuner.samplers._neighbourhood import NeighbourhoodSampler, distributions
from tuner.samplers._seeded import SeedsFirstSampler
from tuner.space import Config

# What --sampler takes. local: the tuner's own local search; tpe, gp, random: Optuna's samplers.
SAMPLERS = ("auto", "local", "tpe", "gp", "random")
# What auto means: the sampler that came closest to the optimum in replay at every budget (NOTES.md).
AUTO = "local"


def resolve(name: str) -> str:
    """The sampler a name stands for (auto becomes its choice); ValueError for an unknown name."""
    if name not in SAMPLERS:
        raise ValueError(f"--sampler must be one of {', '.join(SAMPLERS)}, but got {name!r}.")
    return AUTO if name == "auto" else name


@functools.lru_cache(maxsize=64)
def _distributions(space: tuple[Config, ...]) -> dict:
    """distributions, once per space a run searches: a Hopper space of 15,360 configs took 0.1 s a study."""
    return distributions(space)


def make_sampler(
    name: str,
    *,
    space: Sequence[Config],
    seeds: Sequence[Config] = (),
    seed: int | None = None,
    batch_size: int | None = None,
    ranking: Sequence[Config] = (),
):
    """The sampler called name over space, proposing the unvisited seeds first whichever it is.

    With the study's batch size, no sampler proposes a config whose schedule at that M was measured.
    Every sampler made here tells the configs it proposes next (`ahead`), to compile them ahead.
    With the prior's ranking, local search tries each config's neighbours in the prior's order.
    """
    name = resolve(name)
    params = _distributions(space if isinstance(space, tuple) else tuple(space))  # once for sampler and wrapper
    with warnings.catch_warnings():  # TPE's multivariate and group options are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        inner: BaseSampler
        if name == "local":
            # Its TPE fallback, once every neighbourhood is exhausted, is kept off visited schedules too.
            tpe = TPESampler(multivariate=True, group=True, seed=seed, n_startup_trials=8)
            fallback = SeedsFirstSampler(sampler=tpe, space=space, seed=seed, batch_size=batch_size, params=params)
            return NeighbourhoodSampler(
                space=space,
                seeds=seeds,
                seed=seed,
                fallback=fallback,
                batch_size=batch_size,
                params=params,
                ranking=ranking,
            )
        if name == "tpe":
            inner = TPESampler(multivariate=True, group=True, seed=seed)
        elif name == "gp":
            inner = GPSampler(seed=seed)
        else:
            inner = RandomSampler(seed=seed)
    return SeedsFirstSampler(sampler=inner, space=space, seeds=seeds, seed=seed, batch_size=batch_size, params=params)
