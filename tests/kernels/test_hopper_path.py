"""SGLang's Hopper path (SPLIT_K, SWAP_AB): results against the reference, the launches it makes, its bad configs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kernels import (
    CONFIG_KEYS,
    RELATIVE_TOLERANCE,
    compile_w8a8_block_matmul,
    uses_hopper_path,
    w8a8_block_matmul,
    w8a8_block_matmul_reference,
)
from kernels import _w8a8_block as module
from tests.kernels.operands import random_operands, relative_error

FP8, INT8 = torch.float8_e4m3fn, torch.int8
BF16, FP16, FP32 = torch.bfloat16, torch.float16, torch.float32
BASE = {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 32, "BLOCK_SIZE_K": 64, "GROUP_SIZE_M": 2, "num_warps": 4, "num_stages": 2}


def _config(tile: tuple[int, int, int], group_m: int, split_k: int, swap_ab: bool) -> dict:
    block_m, block_n, block_k = tile
    return {"BLOCK_SIZE_M": block_m, "BLOCK_SIZE_N": block_n, "BLOCK_SIZE_K": block_k, "GROUP_SIZE_M": group_m,
            "num_warps": 4, "num_stages": 2, "SPLIT_K": split_k, "SWAP_AB": swap_ab}  # fmt: skip


# (input, output, M, N, K, block_size, tile M/N/K, GROUP_SIZE_M, SPLIT_K, SWAP_AB): what each row covers.
# "t" is the K tiles per split, cdiv(K tiles, SPLIT_K); "empty" counts the splits past the end of K.
CASES = [
    (FP8, BF16, 1, 256, 640, [128, 128], (16, 64, 128), 1, 2, False),  # M=1; 5 K tiles in 2 splits of 3 and 2
    (FP8, BF16, 1, 256, 640, [128, 128], (16, 64, 128), 1, 1, True),  # swap alone: one split writes C directly
    (INT8, FP16, 1, 200, 100, [128, 128], (16, 32, 128), 1, 2, True),  # one ragged K tile: split 1 empty; N tail
    (FP8, FP32, 37, 100, 300, [64, 64], (16, 32, 64), 2, 4, False),  # [64, 64] block; 5 tiles, t=2, 1 empty; all tails
    (INT8, BF16, 13, 160, 640, [128, 128], (16, 32, 64), 4, 4, True),  # BK=64 < block_k: splits start mid-group
    (FP8, FP16, 5, 96, 790, [128, 128], (16, 32, 32), 1, 8, False),  # 25 ragged tiles, t=4, 1 empty
    (INT8, FP32, 64, 128, 1500, [128, 128], (32, 64, 64), 2, 16, True),  # 24 tiles, t=2, 4 empty; BM < BN swapped
    (INT8, FP16, 1, 256, 384, [128, 128], (16, 128, 128), 1, 16, False),  # M=1; 3 tiles, t=1, 13 empty
    (FP8, BF16, 3, 70, 528, [64, 64], (16, 16, 16), 1, 32, False),  # 33 tiles, t=2, 15 empty; odd N
    (FP8, FP16, 2, 64, 640, [128, 128], (16, 16, 16), 1, 32, True),  # 40 tiles, t=2, 12 empty; swapped
    (INT8, BF16, 67, 130, 257, [128, 128], (64, 32, 128), 8, 2, True),  # BM > BN swapped; GROUP_SIZE_M > tile rows
    (FP8, FP32, 48, 160, 450, [64, 128], (16, 32, 32), 4, 8, True),  # block_n != block_k; ragged K, no empty split
    (INT8, FP32, 9, 48, 1000, [128, 128], (16, 16, 16), 1, 64, True),  # the largest SPLIT_K: 63 tiles, t=1, 1 empty
]


def _empty_splits(K: int, block_k: int, split_k: int) -> int:
    tiles = -(-K // block_k)
    per_split = -(-tiles // split_k)
    return split_k - -(-tiles // per_split)


def test_cases_cover_every_split_k_with_empty_splits_and_both_swaps():
    # Guards the table above against edits that drop what it is there for.
    with_empty = {split_k for *_, K, _, tile, _, split_k, _ in CASES if _empty_splits(K, tile[2], split_k)}
    assert {2, 4, 8, 16, 32} <= with_empty
    assert {swap for *_, swap in CASES} == {False, True}
    assert {(case[0], case[1]) for case in CASES} == {(i, o) for i in (FP8, INT8) for o in (BF16, FP16, FP32)}


@pytest.mark.parametrize(("input_dtype", "output_dtype", "M", "N", "K", "block_size", "tile", "group_m", "split_k",
                          "swap_ab"), CASES)  # fmt: skip
def test_matches_reference(input_dtype, output_dtype, M, N, K, block_size, tile, group_m, split_k, swap_ab):
    a, b, a_scales, b_scales = random_operands(M, N, K, block_size, input_dtype)
    config = _config(tile, group_m, split_k, swap_ab)

    out = w8a8_block_matmul(a, b, a_scales, b_scales, block_size, output_dtype, config)
    ref = w8a8_block_matmul_reference(a, b, a_scales, b_scales, block_size, FP32, config)

    assert out.shape == (M, N) and out.dtype == output_dtype
    assert torch.isfinite(out).all()
    assert relative_error(out, ref) < RELATIVE_TOLERANCE[output_dtype]


def test_empty_splits_store_zeros(monkeypatch):
    # Poison every allocation, the partials included: NaN survives in any element no split stores.
    real_empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *args, **kwargs: real_empty(*args, **kwargs).fill_(float("nan")))
    a, b, a_scales, b_scales = random_operands(19, 100, 160, [64, 64], FP8)
    config = _config((16, 32, 32), 2, 16, False)  # 5 K tiles, t=1: 11 empty splits
    out = w8a8_block_matmul(a, b, a_scales, b_scales, [64, 64], FP32, config)
    assert not torch.isnan(out).any()
    ref = w8a8_block_matmul_reference(a, b, a_scales, b_scales, [64, 64], FP32)
    assert relative_error(out, ref) < RELATIVE_TOLERANCE[FP32]


class LaunchRecorder:
    """Stands in for the Triton kernels and records each launch or compile instead of running it."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def kernel(self, name: str):
        calls = self.calls

        class Kernel:
            def __getitem__(self, grid):
                return lambda *args, **constexprs: calls.append((name, grid, args, constexprs))

            def warmup(self, *args, grid, **constexprs):
                calls.append((name, grid, args, constexprs))

        return Kernel()

    def specialization(self) -> list[tuple]:
        """The calls with each tensor replaced by its dtype, which is all Triton sees of it besides alignment."""
        return [(name, grid, tuple(a.dtype if isinstance(a, torch.Tensor) else a for a in args), constexprs)
                for name, grid, args, constexprs in self.calls]  # fmt: skip


@pytest.fixture
def recorder(monkeypatch) -> LaunchRecorder:
    fake = LaunchRecorder()
    for name in ("_w8a8_block_matmul_kernel", "_w8a8_block_matmul_split_kernel", "_sum_splits_kernel"):
        monkeypatch.setattr(module, name, fake.kernel(name))
    return fake


# (config, the kernels launched with their grids) at M=37, N=100: 3 x 4 tiles of 16 x 32, 3700 elements.
PLANS = [
    (BASE, [("_w8a8_block_matmul_kernel", (12,))]),  # six keys: the base kernel alone, as before
    ({**BASE, "SPLIT_K": 1, "SWAP_AB": True}, [("_w8a8_block_matmul_split_kernel", (12, 1))]),  # writes C, no sum
    ({**BASE, "SPLIT_K": 4, "SWAP_AB": False},  # four splits into partials, one sum program per 256 elements
     [("_w8a8_block_matmul_split_kernel", (12, 4)), ("_sum_splits_kernel", (15,))]),
]  # fmt: skip


@pytest.mark.parametrize(("config", "plan"), PLANS)
def test_launches(recorder, config, plan):
    a, b, a_scales, b_scales = random_operands(37, 100, 300, [64, 64], FP8)
    C = w8a8_block_matmul(a, b, a_scales, b_scales, [64, 64], BF16, config)

    assert [(name, grid) for name, grid, _, _ in recorder.calls] == plan
    name, _, args, constexprs = recorder.calls[0]
    assert constexprs == {**config, "EVEN_K": False}  # every key of the config reaches the kernel, nothing else
    if len(plan) == 1:
        assert args[2] is C
    else:
        partials = args[2]
        assert partials.shape == (4, 37, 100) and partials.dtype == FP32 and partials.is_contiguous()
        assert recorder.calls[1][2] == (partials, C, 37 * 100)
        assert recorder.calls[1][3] == {"SPLIT_K": 4, "BLOCK_SIZE": 256}


@pytest.mark.parametrize("M", [1, 37])
@pytest.mark.parametrize("config", [config for config, _ in PLANS])
def test_compile_specializes_like_a_launch(recorder, config, M):
    # A compile pool is useful only if the launch then finds the compiled binary: same kernels, grids,
    # dtypes, integer arguments (Triton specialises on 1 and on divisibility by 16) and constexprs.
    w8a8_block_matmul(*random_operands(M, 100, 300, [64, 64], INT8), [64, 64], FP16, config)
    launched = recorder.specialization()
    recorder.calls.clear()
    compile_w8a8_block_matmul(M, 100, 300, [64, 64], INT8, FP16, config)
    assert recorder.specialization() == launched


def _hopper(split_k: object, swap_ab: object) -> dict:
    return {**BASE, "SPLIT_K": split_k, "SWAP_AB": swap_ab}


# (config, a fragment the message must hold): each a config the Hopper keys make bad.
BAD_CONFIGS = {
    "SPLIT_K without SWAP_AB": ({**BASE, "SPLIT_K": 2}, "both ['SPLIT_K', 'SWAP_AB'] (the Hopper path) or neither"),
    "SWAP_AB without SPLIT_K": ({**BASE, "SWAP_AB": True}, "but got only 'SWAP_AB'"),
    "SPLIT_K 3": (_hopper(3, False), "SPLIT_K'] must be a power of two from 1 to 64, but got 3"),
    "SPLIT_K 128": (_hopper(128, True), "but got 128"),
    "SPLIT_K 0": (_hopper(0, True), "but got 0"),
    "SPLIT_K a bool": (_hopper(True, True), "SPLIT_K'] must be a power of two from 1 to 64, but got True"),
    "SPLIT_K a float": (_hopper(2.0, False), "but got 2.0"),
    "SWAP_AB an int": (_hopper(2, 1), "SWAP_AB'] must be a bool, but got 1"),
    "SWAP_AB a string": (_hopper(2, "true"), "but got 'true'"),
    "both keys on the base path": (_hopper(1, False), "but got SPLIT_K=1 and SWAP_AB=False"),
    "an unknown key beside them": ({**_hopper(2, True), "split_k": 2}, "has unknown ['split_k']"),
}


@pytest.mark.parametrize("function", [w8a8_block_matmul, w8a8_block_matmul_reference])
@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_bad_config_raises_before_any_launch(recorder, function, case):
    config, fragment = BAD_CONFIGS[case]
    with pytest.raises(ValueError, match=re.escape(fragment)):
        function(*random_operands(8, 96, 160, [64, 64], FP8), [64, 64], FP16, config)
    assert recorder.calls == []


def test_uses_hopper_path():
    base = dict.fromkeys(CONFIG_KEYS, 16)
    assert not uses_hopper_path(base)
    assert not uses_hopper_path({**base, "SPLIT_K": 1, "SWAP_AB": False})
    assert uses_hopper_path({**base, "SPLIT_K": 2, "SWAP_AB": False})
    assert uses_hopper_path({**base, "SPLIT_K": 1, "SWAP_AB": True})


def test_hopper_names_import_without_torch_or_triton():
    # Like CONFIG_KEYS, they serve the tuner in replay, which runs without torch or Triton.
    code = (
        "import sys; sys.modules['torch'] = sys.modules['triton'] = None; "
        "from kernels import HOPPER_KEYS, MAX_SPLIT_K, uses_hopper_path; print(HOPPER_KEYS, MAX_SPLIT_K)"
    )
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    result = subprocess.run([sys.executable, "-c", code], cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "('SPLIT_K', 'SWAP_AB') 64"
