"""Which config to time next: the neighbourhood sampler and the warm starts that seed it."""

from __future__ import annotations

from tuner.samplers._neighbourhood import NeighbourhoodSampler, distributions, neighbours, observed_value
from tuner.samplers._warmstart import PRIOR_DIR, Prior, dedupe

__all__ = ["PRIOR_DIR", "NeighbourhoodSampler", "Prior", "dedupe", "distributions", "neighbours", "observed_value"]
