"""Warm starts: configs worth timing first, from what is already known about neighbouring problems.

Three sources, cheapest knowledge first: the best configs of the nearest batch sizes already tuned
for this shape, the entry an existing config file would give SGLang at this M, SGLang's default,
and a prior from recorded landscapes of other shapes (tuner.samplers.Prior).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tuner.space import Config


def dedupe(configs: Iterable[Config | None], space: Sequence[Config] | frozenset[Config]) -> list[Config]:
    """Keep the first occurrence of each config that belongs to the space."""
    members = set(space)
    return list(dict.fromkeys(c for c in configs if c is not None and c in members))
