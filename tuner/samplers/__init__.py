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
from tuner.samplers._prior import PRIOR_DEVICE, PRIOR_FOLDER, PRIOR_PACKAGE, Prior, architecture
from tuner.samplers._seeded import SeedsFirstSampler
from tuner.samplers._warmstart import dedupe, distinct_tiles, tile_height, warm_start_seeds

__all__ = [
    "AUTO",
    "PRIOR_DEVICE",
    "PRIOR_FOLDER",
    "PRIOR_PACKAGE",
    "SAMPLERS",
    "NeighbourhoodSampler",
    "Prior",
    "SeedsFirstSampler",
    "architecture",
    "dedupe",
    "distinct_tiles",
    "distributions",
    "make_sampler",
    "neighbours",
    "observed_value",
    "resolve",
    "same_schedule",
    "trial_config",
    "tile_height",
    "visited",
    "warm_start_seeds",
]
