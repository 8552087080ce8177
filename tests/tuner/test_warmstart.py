"""Warm starts: a seed whose tile height fits M, the prior's seeds one per tile, most trusted first."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tuner.samplers import distinct_tiles, tile_height, warm_start_seeds
from tuner.space import Config, Problem, default_config

DEFAULT = default_config(128, 128)  # 64/128/128 G32 w4 s3
SMALL = Config(block_m=16, block_n=64, block_k=128, group_m=16, num_warps=4, num_stages=4)  # an H200 M=48 pick
TALL = replace(SMALL, block_m=64)


@pytest.mark.parametrize(("M", "height"), [(1, 16), (13, 16), (16, 16), (17, 64), (32, 64), (64, 64), (4096, 64)])
def test_the_tile_height_that_fits_m(M, height):
    assert tile_height(M, DEFAULT) == height


@pytest.mark.parametrize(
    ("M", "tuned", "entry", "seeds"),
    [
        # The trap: neighbours found 16-row tiles, M = 64 wants 64 rows; the seed changes the height alone.
        (64, [SMALL, replace(SMALL, num_stages=5)], None, [SMALL, replace(SMALL, num_stages=5), DEFAULT, TALL]),
        (1, [TALL], None, [TALL, DEFAULT, SMALL]),  # the other way, from a larger tuned M
        (16, [SMALL], None, [SMALL, DEFAULT]),  # the neighbour's height fits already: no extra seed
        (64, [], SMALL, [SMALL, DEFAULT, TALL]),  # an existing file's entry is fitted like a neighbour's pick
        (64, [], None, [DEFAULT]),  # the first study of a shape: nothing to fit
    ],
)
def test_the_most_trusted_seed_is_also_tried_with_the_tile_height_fitted_to_m(M, tuned, entry, seeds):
    problem = Problem(N=4608, K=7168, M=M)
    assert warm_start_seeds(problem, tuned=tuned, entry=entry, ranking=[], prior_seeds=4) == seeds


def test_a_fitted_hopper_seed_runs_the_base_kernel():
    # SPLIT_K and SWAP_AB suit the neighbour's tile and M; the Hopper study's split seed sets them anew.
    split = replace(SMALL, split_k=8, swap_ab=True)
    seeds = warm_start_seeds(Problem(N=576, K=7168, M=64), tuned=[split], entry=None, ranking=[], prior_seeds=4)
    assert seeds == [split, DEFAULT, TALL]


def test_the_priors_seeds_are_its_best_config_of_each_tile():
    # Its top configs are mostly one tile at other group sizes or stages, one step from each other.
    ranking = [TALL, replace(TALL, group_m=1), replace(TALL, num_stages=3), DEFAULT, SMALL, replace(DEFAULT, group_m=1)]
    assert distinct_tiles(ranking, 2) == [TALL, DEFAULT]
    assert distinct_tiles(ranking, 9) == [TALL, DEFAULT, SMALL]
    seeds = warm_start_seeds(Problem(N=4608, K=7168, M=64), tuned=[], entry=None, ranking=ranking, prior_seeds=2)
    assert seeds == [DEFAULT, TALL, DEFAULT]  # duplicates are left to dedupe, which keeps the first
