"""Warm starts: configs worth timing first, from what is already known about neighbouring problems.

Cheapest knowledge first: the best configs of the nearest batch sizes already tuned for this shape,
the entry an existing config file gives this M, SGLang's default, the most trusted of those first
ones with its tile height fitted to this M, and the prior's best configs of distinct tiles
(tuner.samplers.Prior).

The fitted seed is there because the nearest batch size's tile family can be the wrong one: tuned
in order from M = 1, studies at M = 32 to 256 started from 16-row tiles, and local search, whose
moves change the tile height one step at a time, never reached the 64-row tiles that win there (on
an H200, (4608, 7168) at M = 64 exported a 16-row tile at 35.3 us where SGLang's shipped 64-row
tile ran 27.3 us; seeded alike, a study on the recorded H100 landscape of that shape stays 1.29x
from the optimum at 32 configs).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import replace

from tuner.space import BLOCK_SIZE_M, Config, Problem, default_config


def tile_height(M: int, default: Config) -> int:
    """The BLOCK_SIZE_M that fits M: the smallest tile while M fits in it, else the default's.

    On the recorded H100 landscapes the best config uses 16 rows at every M <= 16 and 64 rows at every
    M >= 256 (and at M = 64 on three of four shapes); 32, 128 and 256 rows never win. The H200 files
    SGLang 0.5.23 ships for DeepSeek-V3's 13 TP8 shapes use 64 rows at every M from 24 to 128 (vLLM
    0.34.0's in 12 of 13), and none uses 32.
    """
    return BLOCK_SIZE_M[0] if M <= BLOCK_SIZE_M[0] else default.block_m


def distinct_tiles(ranking: Iterable[Config], k: int) -> list[Config]:
    """The first k configs of ranking whose tiles (BLOCK_SIZE_M, N, K) differ from every earlier one's.

    A prior's top configs are mostly one tile at several group sizes and stages, which local search
    reaches in one step from any of them; a seed per tile spends the same trials on more families.
    """
    out: list[Config] = []
    tiles = set()
    for config in ranking:
        tile = (config.block_m, config.block_n, config.block_k)
        if tile not in tiles:
            tiles.add(tile)
            out.append(config)
            if len(out) == k:
                break
    return out


def warm_start_seeds(
    problem: Problem,
    *,
    tuned: Sequence[Config],
    entry: Config | None,
    ranking: Sequence[Config],
    prior_seeds: int,
) -> list[Config]:
    """A study's seeds, most trusted first (duplicates included; dedupe keeps the first of each).

    tuned: the best configs the nearest tuned batch sizes found, nearest first; entry: what an
    existing config file gives this M; ranking: the prior's configs, best first.
    """
    default = default_config(problem.block_n, problem.block_k)
    found = [*tuned, *([entry] if entry is not None else [])]
    height = tile_height(problem.M, default)
    fitted = []
    if found and found[0].block_m != height:
        # On the base kernel: SPLIT_K and SWAP_AB suit a tile and an M, and a Hopper study's split seed sets them anew.
        fitted = [replace(found[0], block_m=height, split_k=1, swap_ab=False)]
    return [*found, default, *fitted, *distinct_tiles(ranking, prior_seeds)]


def dedupe(configs: Iterable[Config | None], space: Sequence[Config] | AbstractSet[Config]) -> list[Config]:
    """Keep the first occurrence of each config that belongs to the space (a set of it is asked, not copied)."""
    members = space if isinstance(space, AbstractSet) else set(space)
    return list(dict.fromkeys(c for c in configs if c is not None and c in members))
