"""The block-scaled W8A8 Triton GEMM: SGLang's launch contract, one kernel body for fp8 and int8."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels._arguments import kernel_arguments
from kernels._checks import check_inputs, resolve_config


@triton.jit
def _w8a8_block_matmul_kernel(
    a_ptr, b_ptr, c_ptr, as_ptr, bs_ptr,
    M, N, K,
    group_n, group_k,
    stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
    stride_as_m, stride_as_k, stride_bs_k, stride_bs_n,
    BLOCK_SIZE_M: tl.constexpr, BLOCK_SIZE_N: tl.constexpr, BLOCK_SIZE_K: tl.constexpr,
    GROUP_SIZE_M: tl.constexpr, EVEN_K: tl.constexpr,
):  # fmt: skip
    # Map the 1-D program id to a (pid_m, pid_n) tile in grouped order: GROUP_SIZE_M rows of tiles
    # are walked column by column so that the B tiles they share stay in L2.
    pid = tl.program_id(axis=0)
    num_pid_m = tl.cdiv(M, BLOCK_SIZE_M)
    num_pid_n = tl.cdiv(N, BLOCK_SIZE_N)
    num_pid_in_group = GROUP_SIZE_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_SIZE_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_SIZE_M)
    pid_m = first_pid_m + pid % group_size_m
    pid_n = (pid % num_pid_in_group) // group_size_m

    # Pointers to the first K step. Rows and columns past M and N wrap around (% M, % N) so every
    # load stays in bounds without a mask; the store below drops those rows and columns.
    offs_am = (pid_m * BLOCK_SIZE_M + tl.arange(0, BLOCK_SIZE_M)) % M
    offs_bn = (pid_n * BLOCK_SIZE_N + tl.arange(0, BLOCK_SIZE_N)) % N
    offs_k = tl.arange(0, BLOCK_SIZE_K)
    a_ptrs = a_ptr + offs_am[:, None] * stride_am + offs_k[None, :] * stride_ak
    b_ptrs = b_ptr + offs_k[:, None] * stride_bk + offs_bn[None, :] * stride_bn
    as_ptrs = as_ptr + offs_am * stride_as_m
    bs_ptrs = bs_ptr + (offs_bn // group_n) * stride_bs_n

    # Iterate over K. BLOCK_SIZE_K divides group_k, so each step lies in one scale group and is
    # scaled once, in float32, before it joins the accumulator. A K tail is masked to zero; when
    # BLOCK_SIZE_K divides K (EVEN_K) there is none and the loads go unmasked.
    accumulator = tl.zeros((BLOCK_SIZE_M, BLOCK_SIZE_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_SIZE_K)):
        if EVEN_K:
            a = tl.load(a_ptrs)
            b = tl.load(b_ptrs)
        else:
            k_left = K - k * BLOCK_SIZE_K
            a = tl.load(a_ptrs, mask=offs_k[None, :] < k_left, other=0.0)
            b = tl.load(b_ptrs, mask=offs_k[:, None] < k_left, other=0.0)
        scale_group = (k * BLOCK_SIZE_K) // group_k
        a_scale = tl.load(as_ptrs + scale_group * stride_as_k)
        b_scale = tl.load(bs_ptrs + scale_group * stride_bs_k)
        # fp8 dots return float32 and int8 dots int32: the cast makes one body serve both.
        accumulator += tl.dot(a, b).to(tl.float32) * a_scale[:, None] * b_scale[None, :]
        a_ptrs += BLOCK_SIZE_K * stride_ak
        b_ptrs += BLOCK_SIZE_K * stride_bk

    # Round once to the output dtype and write back the in-bounds part of the tile.
    c = accumulator.to(c_ptr.dtype.element_ty)
    offs_cm = pid_m * BLOCK_SIZE_M + tl.arange(0, BLOCK_SIZE_M)
    offs_cn = pid_n * BLOCK_SIZE_N + tl.arange(0, BLOCK_SIZE_N)
    c_ptrs = c_ptr + offs_cm[:, None] * stride_cm + offs_cn[None, :] * stride_cn
    c_mask = (offs_cm[:, None] < M) & (offs_cn[None, :] < N)
    tl.store(c_ptrs, c, mask=c_mask)


def _grid(M: int, N: int, config: dict[str, int]) -> tuple[int]:
    return (triton.cdiv(M, config["BLOCK_SIZE_M"]) * triton.cdiv(N, config["BLOCK_SIZE_N"]),)


def w8a8_block_matmul(
    A: torch.Tensor,
    B: torch.Tensor,
    As: torch.Tensor,
    Bs: torch.Tensor,
    block_size: list[int],
    output_dtype: torch.dtype = torch.float16,
    config: dict[str, int] | None = None,
) -> torch.Tensor:
    """C = (A * As) @ (B * Bs).T with per-block scales, launched exactly as SGLang launches it."""
    block_n, block_k = check_inputs(A, B, As, Bs, block_size, output_dtype)
    config = resolve_config(config, block_n, block_k)
    M, K = A.shape
    N = B.shape[0]
    C = torch.empty((M, N), dtype=output_dtype, device=A.device)
    strides = (A.stride(), B.stride(), C.stride(), As.stride(), Bs.stride())
    ints, kwargs = kernel_arguments(M, N, K, [block_n, block_k], config, strides)
    _w8a8_block_matmul_kernel[_grid(M, N, config)](A, B, C, As, Bs, *ints, **kwargs)
    return C


def compile_w8a8_block_matmul(
    M: int,
    N: int,
    K: int,
    block_size: list[int],
    input_dtype: torch.dtype,
    output_dtype: torch.dtype,
    config: dict[str, int],
) -> None:
    """Compile one config for the specialization of (M, N, K) without launching it.

    Triton caches the binary on disk, so a process that later launches the same config at any
    shape of the same specialization loads it instead of compiling. This lets many CPU processes
    compile while one process times on the GPU.
    """
    block_n, block_k = block_size
    config = resolve_config(config, block_n, block_k)
    ints, kwargs = kernel_arguments(M, N, K, [block_n, block_k], config)  # contiguous operands
    # Pointers are passed as their dtypes.
    _w8a8_block_matmul_kernel.warmup(
        input_dtype, input_dtype, output_dtype, torch.float32, torch.float32, *ints, grid=_grid(M, N, config), **kwargs
    )
