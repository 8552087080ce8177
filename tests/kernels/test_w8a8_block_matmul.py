"""The Triton kernel against the float32 reference, on random inputs and awkward shapes."""

from __future__ import annotations

import pytest
import torch

import kernels._w8a8_block
from kernels import RELATIVE_TOLERANCE, kernel_arguments, w8a8_block_matmul, w8a8_block_matmul_reference
from tests.kernels.operands import random_operands, relative_error

# (M, N, K, block_size, config tile M/N/K, GROUP_SIZE_M): what each row covers.
SHAPES = [
    (1, 256, 256, [128, 128], (16, 64, 128), 1),  # M=1, the decode case
    (37, 200, 300, [128, 128], (16, 64, 64), 2),  # M, N, K all off their blocks; several K steps
    (67, 128, 384, [128, 128], (32, 128, 128), 8),  # GROUP_SIZE_M larger than the 3 rows of tiles
    (13, 96, 200, [64, 64], (16, 32, 64), 1),  # a [64, 64] quantization block; N and K tails
    (48, 160, 128, [64, 128], (16, 32, 32), 4),  # block_n != block_k; 4 K steps per scale group
    (29, 150, 200, [32, 32], (16, 64, 32), 1),  # [32, 32] blocks: a BLOCK_SIZE_N of two scale columns; K tail
    (3, 100, 1000, [32, 32], (32, 32, 16), 2),  # two K tiles per 32-group; a K tail of 8 in the last group
]


@pytest.mark.parametrize("input_dtype", [torch.float8_e4m3fn, torch.int8])
@pytest.mark.parametrize("output_dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize(("M", "N", "K", "block_size", "tile", "group_m"), SHAPES)
def test_matches_reference(M, N, K, block_size, tile, group_m, input_dtype, output_dtype):
    a, b, a_scales, b_scales = random_operands(M, N, K, block_size, input_dtype)
    config = dict(zip(("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K"), tile))
    config.update(GROUP_SIZE_M=group_m, num_warps=4, num_stages=2)

    out = w8a8_block_matmul(a, b, a_scales, b_scales, block_size, output_dtype, config)
    ref = w8a8_block_matmul_reference(a, b, a_scales, b_scales, block_size, output_dtype)

    assert out.shape == (M, N) and out.dtype == output_dtype
    assert torch.isfinite(out).all()
    assert relative_error(out, ref) < RELATIVE_TOLERANCE[output_dtype]


@pytest.mark.parametrize("block_size_k", [64, 128])
def test_every_block_size_k_of_the_space(block_size_k):
    # The space's two K tiles at [128, 128]: 128 is one step per scale group, 64 two steps.
    a, b, a_scales, b_scales = random_operands(33, 130, 257, [128, 128], torch.float8_e4m3fn)
    config = {"BLOCK_SIZE_M": 32, "BLOCK_SIZE_N": 32, "BLOCK_SIZE_K": block_size_k,
              "GROUP_SIZE_M": 16, "num_warps": 8, "num_stages": 4}  # fmt: skip
    out = w8a8_block_matmul(a, b, a_scales, b_scales, [128, 128], torch.float32, config)
    ref = w8a8_block_matmul_reference(a, b, a_scales, b_scales, [128, 128], torch.float32)
    assert relative_error(out, ref) < RELATIVE_TOLERANCE[torch.float32]


@pytest.mark.parametrize("block_size", [[128, 128], [32, 32]])
def test_a_bound_relaunch_computes_the_product_again(block_size):
    # bind_w8a8_block_matmul launches once, then relaunches into the same output: both right.
    a, b, a_scales, b_scales = random_operands(11, 90, 200, block_size, torch.float8_e4m3fn)
    config = {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": block_size[1] // 2, "GROUP_SIZE_M": 1,
              "num_warps": 4, "num_stages": 2, "SPLIT_K": 2, "SWAP_AB": True}  # fmt: skip
    ref = w8a8_block_matmul_reference(a, b, a_scales, b_scales, block_size, torch.float32)
    relaunch, out = kernels._w8a8_block.bind_w8a8_block_matmul(a, b, a_scales, b_scales, block_size, torch.float32,
                                                               config)  # fmt: skip
    assert relative_error(out, ref) < RELATIVE_TOLERANCE[torch.float32]
    out.fill_(float("nan"))
    relaunch()
    assert relative_error(out, ref) < RELATIVE_TOLERANCE[torch.float32]


def test_default_config_when_none():
    a, b, a_scales, b_scales = random_operands(5, 130, 300, [128, 128], torch.int8)
    out = w8a8_block_matmul(a, b, a_scales, b_scales, [128, 128], torch.float16)
    ref = w8a8_block_matmul_reference(a, b, a_scales, b_scales, [128, 128], torch.float16)
    assert relative_error(out, ref) < RELATIVE_TOLERANCE[torch.float16]


def test_every_output_element_is_written(monkeypatch):
    # Poison the allocation: NaN survives in any element the kernel fails to store.
    real_empty = torch.empty

    def poisoned_empty(*args, **kwargs):
        return real_empty(*args, **kwargs).fill_(float("nan"))

    monkeypatch.setattr(torch, "empty", poisoned_empty)
    a, b, a_scales, b_scales = random_operands(19, 100, 160, [64, 64], torch.float8_e4m3fn)
    config = {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 32, "BLOCK_SIZE_K": 32,
              "GROUP_SIZE_M": 2, "num_warps": 4, "num_stages": 2}  # fmt: skip
    out = w8a8_block_matmul(a, b, a_scales, b_scales, [64, 64], torch.float32, config)
    assert not torch.isnan(out).any()


def test_reference_matches_float64_dequantized_product():
    # The reference itself, checked against an independent float64 computation.
    a, b, a_scales, b_scales = random_operands(7, 70, 150, [64, 64], torch.int8)
    a64 = a.double() * a_scales.double().repeat_interleave(64, dim=1)[:, :150]
    b64 = b.double() * b_scales.double().repeat_interleave(64, dim=0)[:70].repeat_interleave(64, dim=1)[:, :150]
    ref = w8a8_block_matmul_reference(a, b, a_scales, b_scales, [64, 64], torch.float32)
    assert relative_error(ref, a64 @ b64.T) < 1e-6


def test_the_launch_passes_the_integer_arguments_that_kernel_arguments_gives():
    # The tuner keys its compile-ahead on kernel_arguments and compiles with them: the launch must
    # pass exactly those integers (strides included), and a tensor's own strides where it has others.
    M, N, K, block_size = 13, 96, 200, [64, 64]
    a, b, a_scales, b_scales = random_operands(M, N, K, block_size, torch.float8_e4m3fn)
    config = {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 32, "BLOCK_SIZE_K": 64, "GROUP_SIZE_M": 1,
              "num_warps": 4, "num_stages": 2}  # fmt: skip
    launched = []

    def record(*args, **kwargs):
        launched.append((args[5:], kwargs))

    kernel = kernels._w8a8_block._w8a8_block_matmul_kernel
    kernel.add_pre_run_hook(record)
    try:
        w8a8_block_matmul(a, b, a_scales, b_scales, block_size, torch.float16, config)
        column_major = a_scales.t().contiguous().t()  # As as some callers hold it: M is the fast axis
        w8a8_block_matmul(a, b, column_major, b_scales, block_size, torch.float16, config)
    finally:
        kernel.pre_run_hooks.remove(record)
    ints, kwargs = kernel_arguments(M, N, K, block_size, config)
    assert launched[0][0] == ints
    assert launched[1][0] == (*ints[:11], 1, M, *ints[13:])  # stride_as_m, stride_as_k
    for _, passed in launched:  # the interpreter drops num_warps and num_stages before its hooks
        assert passed["EVEN_K"] is False and all(kwargs[key] == value for key, value in passed.items())
