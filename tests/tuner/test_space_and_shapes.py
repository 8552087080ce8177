"""The config type and search space (docs/contracts.md), and DeepSeek-V3's weight shapes per tensor-parallel size."""

from __future__ import annotations

import dataclasses

import pytest

from tuner.shapes import deepseek_v3_shapes
from tuner.space import SGLANG_KEYS, Config, default_config, search_space


@pytest.mark.parametrize(
    ("block_k", "size", "block_ks"),
    [
        (128, 1280, {64, 128}),  # SGLang's full space
        (256, 1280, {64, 128}),  # both K tiles divide 256
        (64, 640, {64}),  # BLOCK_SIZE_K 128 would span two scale groups
        (32, 640, {32}),  # [32, 32] blocks: no size of SGLang's grid divides 32, so the block's own
        (16, 640, {16}),
    ],
)
def test_search_space_size(block_k, size, block_ks):
    space = search_space(block_k)
    assert len(space) == len(set(space)) == size
    assert {c.block_k for c in space} == block_ks
    assert all(block_k % c.block_k == 0 for c in search_space(block_k, "hopper"))


@pytest.mark.parametrize("block_k", [8, 96, 0])  # below the smallest dot tile, not a power of two, empty
def test_search_space_without_a_k_tile_raises(block_k):
    with pytest.raises(ValueError, match=str(block_k)):
        search_space(block_k)


@pytest.mark.parametrize("block", [(128, 128), (64, 64), (32, 32)])
def test_the_default_config_of_every_block_shape_is_in_its_space(block):
    assert default_config(*block) in search_space(block[1])


def test_default_config_is_sglangs_and_in_the_space():
    config = default_config(128, 128)
    assert config.as_sglang() == {
        "BLOCK_SIZE_M": 64,
        "BLOCK_SIZE_N": 128,
        "BLOCK_SIZE_K": 128,
        "GROUP_SIZE_M": 32,
        "num_warps": 4,
        "num_stages": 3,
    }
    assert config in search_space(128)


def test_every_config_round_trips_through_sglang_keys():
    for config in search_space(128):
        entry = config.as_sglang()
        assert tuple(entry) == SGLANG_KEYS
        assert Config.from_sglang(entry) == config


_ENTRY = Config(block_m=32, block_n=64, block_k=128, group_m=16, num_warps=8, num_stages=4).as_sglang()


@pytest.mark.parametrize(
    "entry",
    [
        {k: v for k, v in _ENTRY.items() if k != "GROUP_SIZE_M"},  # a key missing
        {**_ENTRY, "waves_per_eu": 0},  # an extra (AMD) key
        {},  # nothing at all
        {**_ENTRY, "num_warps": 0},  # not positive
        {**_ENTRY, "BLOCK_SIZE_M": 64.0},  # a float, not an int
        {**_ENTRY, "num_stages": True},  # a bool is not an int here
    ],
    ids=["missing-key", "extra-key", "empty", "zero", "float", "bool"],
)
def test_from_sglang_rejects_a_bad_entry(entry):
    with pytest.raises(ValueError):
        Config.from_sglang(entry)


@pytest.mark.parametrize(
    ("config", "M", "collapsed"),
    [
        (
            Config(block_m=64, block_n=128, block_k=128, group_m=32, num_warps=4, num_stages=3),
            1,
            True,
        ),  # one row of tiles: group order is the identity
        (
            Config(block_m=64, block_n=128, block_k=128, group_m=32, num_warps=4, num_stages=3),
            64,
            True,
        ),  # M == BLOCK_SIZE_M is still one row of tiles
        (
            Config(block_m=64, block_n=128, block_k=128, group_m=32, num_warps=4, num_stages=3),
            65,
            False,
        ),  # two rows: GROUP_SIZE_M reorders tiles
        (Config(block_m=16, block_n=32, block_k=64, group_m=64, num_warps=8, num_stages=5), 4096, False),  # many rows
    ],
)
def test_schedule_key(config, M, collapsed):
    key = config.schedule_key(M)
    assert key == (dataclasses.replace(config, group_m=1) if collapsed else config)
    # Configs that differ only in GROUP_SIZE_M share a key exactly when the group cannot matter.
    other = dataclasses.replace(config, group_m=16)
    assert (other.schedule_key(M) == key) == collapsed


def test_deepseek_v3_shapes_tp8():
    assert deepseek_v3_shapes(8) == [
        # unsplit
        (576, 7168),
        (24576, 7168),
        (32768, 512),
        (7168, 16384),
        (7168, 18432),
        # N split by 8
        (4608, 7168),
        (3072, 7168),
        (4096, 512),
        (3072, 1536),
        (512, 7168),
        # K split by 8
        (7168, 2304),
        (7168, 2048),
        (7168, 256),
    ]


def test_deepseek_v3_shapes_tp1_tunes_duplicates_once():
    assert deepseek_v3_shapes(1) == [
        (576, 7168),
        (24576, 7168),  # also the N split of (24576, 7168)
        (32768, 512),  # also the N split of (32768, 512)
        (7168, 16384),  # also the K split of (7168, 16384)
        (7168, 18432),  # also the K split of (7168, 18432)
        (36864, 7168),
        (24576, 1536),
        (4096, 7168),
        (7168, 2048),
    ]


@pytest.mark.parametrize(
    "tp",
    [
        3,  # divides 36864 and 24576 but not 32768
        5,  # divides nothing
        0,  # not positive
        -8,  # not positive
    ],
)
def test_deepseek_v3_shapes_bad_tp_raises(tp):
    with pytest.raises(ValueError, match="tp-size"):
        deepseek_v3_shapes(tp)
