"""Which config to time next: the samplers a run can choose, and the warm starts that seed each of them."""

from __future__ import annotations

from tuner.samplers._choice import AUTO, SAMPLERS, make_sampler, resolve
from tuner.samplers._neighbourhood import (
    NeighbourhoodSampler,
    distributions,
    neighbours,
    observed_value,
    same_schedule,
    trial_config,
    visited,
)
from tuner.samplers._seeded import SeedsFirstSampler
from tuner.samplers._warmstart import Prior, dedupe

__all__ = [
    "AUTO",
    "SAMPLERS",
    "NeighbourhoodSampler",
    "Prior",
    "SeedsFirstSampler",
    "dedupe",
    "distributions",
    "make_sampler",
    "neighbours",
    "observed_value",
    "resolve",
    "same_schedule",
    "trial_config",
    "visited",
]
