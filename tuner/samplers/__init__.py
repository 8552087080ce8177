"""Which config to time next: the samplers a run can choose, and the warm starts that seed each of them."""

from __future__ import annotations

from tuner.samplers._choice import AUTO, SAMPLERS, make_sampler, resolve
from tuner.samplers._neighbourhood import NeighbourhoodSampler, distributions, neighbours, observed_value, visited
from tuner.samplers._prior import PRIOR_DEVICE, Prior, architecture
from tuner.samplers._seeded import SeedsFirstSampler
from tuner.samplers._warmstart import dedupe

__all__ = [
    "AUTO",
    "PRIOR_DEVICE",
    "SAMPLERS",
    "NeighbourhoodSampler",
    "Prior",
    "SeedsFirstSampler",
    "architecture",
    "dedupe",
    "distributions",
    "make_sampler",
    "neighbours",
    "observed_value",
    "resolve",
    "visited",
]
