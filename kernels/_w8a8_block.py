"""The block-scaled W8A8 Triton GEMM as SGLang launches it: the base kernel and the Hopper path."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import triton
import triton.language as tl
from triton.compiler import CompiledKernel

from kernels._arguments import kernel_arguments
from kernels._checks import check_inputs, resolve_config
from kernels._config import uses_hopper_path

# Elements of C per program of the kernel that sums the splits.
_SUM_BLOCK_SIZE = 256


@triton.jit
def _grouped_tile(pid, M, N, BLOCK_SIZE_M: tl.constexpr, BLOCK_SIZE_N: tl.constexpr, GROUP_SIZE_M: tl.constexpr):
    # Map a 1-D program id to a (pid_m, pid_n) tile in grouped order: GROUP_SIZE_M rows of tiles are
    # walked column by column so that the B tiles they share stay in L2.
    num_pid_m = tl.cdiv(M, BLOCK_SIZE_M)
    num_pid_n = tl.cdiv(N, BLOCK_SIZE_N)
    num_pid_in_group = GROUP_SIZE_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_SIZE_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_SIZE_M)
    pid_m = first_pid_m + pid % group_size_m
    pid_n = (pid % num_pid_in_group) // group_size_m
    return pid_m, pid_n


@triton.jit
def _scaled_dot_over_k(
    a_ptr, b_ptr, as_ptr, bs_ptr,
    pid_m, pid_n, first_tile, last_tile,
    M, N, K,
    group_n, group_k,
    stride_am, stride_ak, stride_bk, stride_bn,
    stride_as_m, stride_as_k, stride_bs_k, stride_bs_n,
    BLOCK_SIZE_M: tl.constexpr, BLOCK_SIZE_N: tl.constexpr, BLOCK_SIZE_K: tl.constexpr, EVEN_K: tl.constexpr,
    SWAP_AB: tl.constexpr,
):  # fmt: skip
    # The float32 (BLOCK_SIZE_M, BLOCK_SIZE_N) tile (pid_m, pid_n) of the scaled product, summed over
    # the K tiles [first_tile, last_tile); an empty range gives zeros.

    # Pointers to the first K step. Rows and columns past M and N wrap around (% M, % N) so every
    # load stays in bounds without a mask; the store drops those rows and columns.
    offs_am = (pid_m * BLOCK_SIZE_M + tl.arange(0, BLOCK_SIZE_M)) % M
    offs_bn = (pid_n * BLOCK_SIZE_N + tl.arange(0, BLOCK_SIZE_N)) % N
    offs_k = tl.arange(0, BLOCK_SIZE_K)
    a_ptrs = a_ptr + offs_am[:, None] * stride_am + (first_tile * BLOCK_SIZE_K + offs_k[None, :]) * stride_ak
    b_ptrs = b_ptr + (first_tile * BLOCK_SIZE_K + offs_k[:, None]) * stride_bk + offs_bn[None, :] * stride_bn
    # The scales of first_tile's group; they move on by one group every tiles_per_group K steps.
    tiles_per_group = group_k // BLOCK_SIZE_K
    first_group = first_tile // tiles_per_group
    as_ptrs = as_ptr + offs_am * stride_as_m + first_group * stride_as_k
    bs_ptrs = bs_ptr + (offs_bn // group_n) * stride_bs_n + first_group * stride_bs_k

    # SWAP_AB accumulates the transposed tile, (BLOCK_SIZE_N, BLOCK_SIZE_M): Hopper's wgmma is at
    # least 64 rows tall, so for a small BLOCK_SIZE_M the N side fills it instead.
    if SWAP_AB:
        accumulator = tl.zeros((BLOCK_SIZE_N, BLOCK_SIZE_M), dtype=tl.float32)
    else:
        accumulator = tl.zeros((BLOCK_SIZE_M, BLOCK_SIZE_N), dtype=tl.float32)

    # Iterate over K. BLOCK_SIZE_K divides group_k, so each step lies in one scale group and is
    # scaled once, in float32, before it joins the accumulator. k counts tiles from the start of K.
    # The scale pointers advance with the loop, like the operands', as in SGLang's kernel (with
    # addresses computed from k at each step, the default config ran 4-9% slower than SGLang's at
    # M >= 256 on an H100; NOTES.md, "Kernel vs SGLang's"). A K tail is masked to zero; when
    # BLOCK_SIZE_K divides K (EVEN_K) there is none and the loads go unmasked.
    for k in range(first_tile, last_tile):
        if EVEN_K:
            a = tl.load(a_ptrs)
            b = tl.load(b_ptrs)
        else:
            k_left = K - k * BLOCK_SIZE_K
            a = tl.load(a_ptrs, mask=offs_k[None, :] < k_left, other=0.0)
            b = tl.load(b_ptrs, mask=offs_k[:, None] < k_left, other=0.0)
        a_scale = tl.load(as_ptrs)
        b_scale = tl.load(bs_ptrs)
        # fp8 dots return float32 and int8 dots int32: the cast makes one body serve both.
        if SWAP_AB:
            accumulator += tl.dot(tl.trans(b), tl.trans(a)).to(tl.float32) * b_scale[:, None] * a_scale[None, :]
        else:
            accumulator += tl.dot(a, b).to(tl.float32) * a_scale[:, None] * b_scale[None, :]
        a_ptrs += BLOCK_SIZE_K * stride_ak
        b_ptrs += BLOCK_SIZE_K * stride_bk
        next_group = tl.where((k + 1) % tiles_per_group == 0, 1, 0)
        as_ptrs += next_group * stride_as_k
        bs_ptrs += next_group * stride_bs_k
    if SWAP_AB:
        accumulator = tl.trans(accumulator)
    return accumulator


@triton.jit
def _store_tile(
    c_ptr, accumulator, pid_m, pid_n, M, N, stride_cm, stride_cn,
    BLOCK_SIZE_M: tl.constexpr, BLOCK_SIZE_N: tl.constexpr,
):  # fmt: skip
    # Round once to c's dtype and write back the in-bounds part of the tile.
    c = accumulator.to(c_ptr.dtype.element_ty)
    offs_cm = pid_m * BLOCK_SIZE_M + tl.arange(0, BLOCK_SIZE_M)
    offs_cn = pid_n * BLOCK_SIZE_N + tl.arange(0, BLOCK_SIZE_N)
    c_ptrs = c_ptr + offs_cm[:, None] * stride_cm + offs_cn[None, :] * stride_cn
    c_mask = (offs_cm[:, None] < M) & (offs_cn[None, :] < N)
    tl.store(c_ptrs, c, mask=c_mask)


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
    # One program per C tile, over all of K.
    pid_m, pid_n = _grouped_tile(tl.program_id(axis=0), M, N, BLOCK_SIZE_M, BLOCK_SIZE_N, GROUP_SIZE_M)
    accumulator = _scaled_dot_over_k(
        a_ptr, b_ptr, as_ptr, bs_ptr,
        pid_m, pid_n, 0, tl.cdiv(K, BLOCK_SIZE_K),
        M, N, K,
        group_n, group_k,
        stride_am, stride_ak, stride_bk, stride_bn,
        stride_as_m, stride_as_k, stride_bs_k, stride_bs_n,
        BLOCK_SIZE_M, BLOCK_SIZE_N, BLOCK_SIZE_K, EVEN_K, False,
    )  # fmt: skip
    _store_tile(c_ptr, accumulator, pid_m, pid_n, M, N, stride_cm, stride_cn, BLOCK_SIZE_M, BLOCK_SIZE_N)


@triton.jit
def _w8a8_block_matmul_split_kernel(
    a_ptr, b_ptr, c_ptr, as_ptr, bs_ptr,
    M, N, K,
    group_n, group_k,
    stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
    stride_as_m, stride_as_k, stride_bs_k, stride_bs_n,
    BLOCK_SIZE_M: tl.constexpr, BLOCK_SIZE_N: tl.constexpr, BLOCK_SIZE_K: tl.constexpr,
    GROUP_SIZE_M: tl.constexpr, SPLIT_K: tl.constexpr, SWAP_AB: tl.constexpr, EVEN_K: tl.constexpr,
):  # fmt: skip
    # One program per (C tile, split of K): a small M has too few tiles to fill the GPU, and splitting
    # K multiplies the programs.
    pid_m, pid_n = _grouped_tile(tl.program_id(axis=0), M, N, BLOCK_SIZE_M, BLOCK_SIZE_N, GROUP_SIZE_M)
    split = tl.program_id(axis=1)

    # This split's share of K: t = cdiv(K tiles, SPLIT_K) tiles, cut at the end of K. Trailing splits
    # may get none and then store zeros, since the sum below adds every split.
    num_k_tiles = tl.cdiv(K, BLOCK_SIZE_K)
    tiles_per_split = tl.cdiv(num_k_tiles, SPLIT_K)
    first_tile = split * tiles_per_split
    last_tile = tl.minimum(first_tile + tiles_per_split, num_k_tiles)
    accumulator = _scaled_dot_over_k(
        a_ptr, b_ptr, as_ptr, bs_ptr,
        pid_m, pid_n, first_tile, last_tile,
        M, N, K,
        group_n, group_k,
        stride_am, stride_ak, stride_bk, stride_bn,
        stride_as_m, stride_as_k, stride_bs_k, stride_bs_n,
        BLOCK_SIZE_M, BLOCK_SIZE_N, BLOCK_SIZE_K, EVEN_K, SWAP_AB,
    )  # fmt: skip

    # One split writes C itself; several write their own float32 (M, N) slab of the partials, laid
    # out like C. The slab offset is 64-bit: SPLIT_K * M * N can pass 2**31.
    if SPLIT_K > 1:
        c_ptr += split.to(tl.int64) * M * N
    _store_tile(c_ptr, accumulator, pid_m, pid_n, M, N, stride_cm, stride_cn, BLOCK_SIZE_M, BLOCK_SIZE_N)


@triton.jit
def _sum_splits_kernel(partials_ptr, c_ptr, MN, SPLIT_K: tl.constexpr, BLOCK_SIZE: tl.constexpr):
    # C = the sum of the SPLIT_K float32 partials, rounded once to C's dtype. C and each slab are
    # contiguous (M, N), so one flat offset addresses an element in all of them.
    offs = tl.program_id(axis=0) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offs < MN
    partial_ptrs = partials_ptr + offs
    total = tl.zeros((BLOCK_SIZE,), dtype=tl.float32)
    for _ in range(SPLIT_K):
        total += tl.load(partial_ptrs, mask=mask, other=0.0)
        partial_ptrs += MN  # a pointer step, so the offset of the last slab never overflows 32 bits
    tl.store(c_ptr + offs, total.to(c_ptr.dtype.element_ty), mask=mask)


def _launch(kernel, grid: tuple[int, ...], args: tuple, constexprs: dict, *, compile_only: bool) -> None:
    """Launch kernel, or with compile_only compile into Triton's cache exactly what that launch runs."""
    if compile_only:
        kernel.warmup(*args, grid=grid, **constexprs)
    else:
        kernel[grid](*args, **constexprs)


def _steps(A, B, C, As, Bs, M, N, K, block_size, strides, config, partials) -> list[tuple]:
    """The launches that compute C with config, in order, as (kernel, grid, args, constexprs).

    One function serves launching, compiling (dtypes in place of tensors) and binding, with the
    integer arguments of kernel_arguments, so a compile specialises every argument as the launch
    does (strides None: contiguous operands). partials is where several K splits write their float32
    sums (a (SPLIT_K, M, N) buffer, or its dtype when compiling); unused otherwise.
    """
    tiles = triton.cdiv(M, config["BLOCK_SIZE_M"]) * triton.cdiv(N, config["BLOCK_SIZE_N"])
    ints, constexprs = kernel_arguments(M, N, K, list(block_size), config, strides)
    if not uses_hopper_path(config):
        return [(_w8a8_block_matmul_kernel, (tiles,), (A, B, C, As, Bs, *ints), constexprs)]
    # One split writes C; several write float32 partials that a second kernel sums into C.
    split_k = config["SPLIT_K"]
    split_out = C if split_k == 1 else partials
    steps = [(_w8a8_block_matmul_split_kernel, (tiles, split_k), (A, B, split_out, As, Bs, *ints), constexprs)]
    if split_k > 1:
        sum_constexprs = {"SPLIT_K": split_k, "BLOCK_SIZE": _SUM_BLOCK_SIZE}
        steps.append((_sum_splits_kernel, (triton.cdiv(M * N, _SUM_BLOCK_SIZE),), (partials, C, M * N), sum_constexprs))
    return steps


def _split_view(buffer: torch.Tensor, config: dict[str, int], M: int, N: int) -> torch.Tensor | None:
    """The (SPLIT_K, M, N) float32 view of a caller's buffer that config's splits write; None for one split."""
    split_k = config.get("SPLIT_K", 1) if uses_hopper_path(config) else 1
    if split_k == 1:
        return None
    if buffer.dtype != torch.float32 or buffer.numel() < split_k * M * N:
        raise ValueError(f"partials must be float32 with at least {split_k * M * N} elements, but got {buffer.dtype} "
                         f"with {buffer.numel()}.")  # fmt: skip
    return buffer.view(-1)[: split_k * M * N].view(split_k, M, N)


def _partials(config: dict[str, int], M: int, N: int, device) -> torch.Tensor | None:
    """The float32 buffer several K splits write, allocated per call as SGLang does; None for one split."""
    split_k = config.get("SPLIT_K", 1) if uses_hopper_path(config) else 1
    return torch.empty((split_k, M, N), dtype=torch.float32, device=device) if split_k > 1 else None


def w8a8_block_matmul(
    A: torch.Tensor,
    B: torch.Tensor,
    As: torch.Tensor,
    Bs: torch.Tensor,
    block_size: list[int],
    output_dtype: torch.dtype = torch.float16,
    config: dict[str, int] | None = None,
) -> torch.Tensor:
    """C = (A * As) @ (B * Bs).T with per-block scales, launched exactly as SGLang launches it.

    A config with SPLIT_K > 1 or SWAP_AB True takes SGLang's Hopper path, on any device.
    """
    block_size = check_inputs(A, B, As, Bs, block_size, output_dtype)
    config = resolve_config(config, *block_size)
    M, K = A.shape
    N = B.shape[0]
    C = torch.empty((M, N), dtype=output_dtype, device=A.device)
    strides = (A.stride(), B.stride(), C.stride(), As.stride(), Bs.stride())
    partials = _partials(config, M, N, A.device)
    for kernel, grid, args, constexprs in _steps(A, B, C, As, Bs, M, N, K, block_size, strides, config, partials):
        _launch(kernel, grid, args, constexprs, compile_only=False)
    return C


def bind_w8a8_block_matmul(
    A: torch.Tensor,
    B: torch.Tensor,
    As: torch.Tensor,
    Bs: torch.Tensor,
    block_size: list[int],
    output_dtype: torch.dtype = torch.float16,
    config: dict[str, int] | None = None,
    *,
    out: torch.Tensor | None = None,
    partials: torch.Tensor | None = None,
    launch: bool = True,
) -> tuple[Callable[[], None], torch.Tensor]:
    """Launch once as w8a8_block_matmul does, then return a relaunch with every argument bound, and C.

    With launch False nothing runs: the binaries are compiled or looked up only (to bind the other
    operand sets of a config one set has launched already, in this process).
    Each relaunch writes the same C (out, if given: a contiguous (M, N) tensor of output_dtype) and
    the same split-K buffer (partials, if given: float32, at least SPLIT_K * M * N elements). The
    first launch compiles or loads the binaries, so a relaunch may run inside a CUDA-graph capture;
    it then calls Triton's compiled launchers directly, a few microseconds of host time, where a full
    launch checks the operands and binds Triton's arguments again (tens of microseconds: most of the
    cost of capturing graphs of kernels that run for a few microseconds). Under the interpreter a
    relaunch is a full launch into the same C.
    """
    block_size = check_inputs(A, B, As, Bs, block_size, output_dtype)
    config = resolve_config(config, *block_size)
    M, K = A.shape
    N = B.shape[0]
    if out is not None and (out.shape != (M, N) or out.dtype != output_dtype or not out.is_contiguous()):
        raise ValueError(f"out must be a contiguous ({M}, {N}) {output_dtype} tensor, but got {tuple(out.shape)} "
                         f"{out.dtype}.")  # fmt: skip
    C = torch.empty((M, N), dtype=output_dtype, device=A.device) if out is None else out
    strides = (A.stride(), B.stride(), C.stride(), As.stride(), Bs.stride())
    workspace = _partials(config, M, N, A.device) if partials is None else _split_view(partials, config, M, N)
    steps = _steps(A, B, C, As, Bs, M, N, K, block_size, strides, config, workspace)
    if launch:
        launched = [kernel[grid](*args, **constexprs) for kernel, grid, args, constexprs in steps]
    else:
        launched = [kernel.warmup(*args, grid=grid, **constexprs) for kernel, grid, args, constexprs in steps]
    if all(isinstance(compiled, CompiledKernel) for compiled in launched):
        # Triton's launcher takes a 3-D grid and every parameter in declaration order, constexprs included.
        runners = [
            functools.partial(
                compiled[(*grid, 1, 1)[:3]], *args, *(constexprs[name] for name in kernel.arg_names[len(args) :])
            )
            for compiled, (kernel, grid, args, constexprs) in zip(launched, steps)
        ]
    else:  # the interpreter compiles nothing: each relaunch is a full launch
        runners = [functools.partial(kernel[grid], *args, **constexprs) for kernel, grid, args, constexprs in steps]

    def relaunch() -> None:
        for run in runners:
            run()

    return relaunch, C


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
    dtypes = (input_dtype, input_dtype, output_dtype, torch.float32, torch.float32)  # pointers as their dtypes
    for kernel, grid, args, constexprs in _steps(*dtypes, M, N, K, (block_n, block_k), None, config, torch.float32):
        _launch(kernel, grid, args, constexprs, compile_only=True)  # contiguous operands
