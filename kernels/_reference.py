"""Plain-torch float32 reference for the block-scaled GEMM and the quantizers that feed it.

The reference checks every kernel path; the quantizers make realistic inputs (values spread over the
whole 8-bit range, one scale per block) for tests and benchmarks.
"""

from __future__ import annotations

import torch

from kernels._checks import INPUT_DTYPES, cdiv, check_inputs, resolve_config

# Relative Frobenius error against this reference below which a kernel output is right, for the
# tests and the GPU checks alike. Beyond the output rounding (2**-8 for bf16), Hopper's fp8 tensor
# cores accumulate each dot in reduced precision: 5.9e-4 was read on an H100 for a float32 output at
# K=18432. Triton's CPU interpreter truncates float32 to bf16 instead of rounding it, which doubles
# that rounding error (3.4e-3 on random data). A real indexing or scaling bug shows errors of order 1.
RELATIVE_TOLERANCE = {torch.float32: 3e-3, torch.float16: 3e-3, torch.bfloat16: 1e-2}


def _expand_scales(scales: torch.Tensor, rows: int, cols: int, block_rows: int, block_cols: int) -> torch.Tensor:
    """Repeat one scale per block into one scale per element, cropped to (rows, cols)."""
    return scales.repeat_interleave(block_rows, dim=0)[:rows].repeat_interleave(block_cols, dim=1)[:, :cols]


def w8a8_block_matmul_reference(
    A: torch.Tensor,
    B: torch.Tensor,
    As: torch.Tensor,
    Bs: torch.Tensor,
    block_size: list[int],
    output_dtype: torch.dtype = torch.float16,
    config: dict[str, int] | None = None,
) -> torch.Tensor:
    """Dequantize both operands to float32, multiply, round once: the kernel's ground truth."""
    block_n, block_k = check_inputs(A, B, As, Bs, block_size, output_dtype, need_kernel_device=False)
    resolve_config(config, block_n, block_k)
    M, K = A.shape
    N = B.shape[0]
    a = A.to(torch.float32) * _expand_scales(As, M, K, 1, block_k)
    b = B.to(torch.float32) * _expand_scales(Bs, N, K, block_n, block_k)
    return (a @ b.T).to(output_dtype)


def _qmax(dtype: torch.dtype) -> float:
    if dtype not in INPUT_DTYPES.values():
        raise ValueError(f"dtype must be float8_e4m3fn or int8, but got {dtype}.")
    return float(torch.finfo(dtype).max) if dtype.is_floating_point else float(torch.iinfo(dtype).max)


def _to_quantized(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    qmax = _qmax(dtype)
    x = x.clamp(-qmax, qmax)
    return (x if dtype.is_floating_point else x.round()).to(dtype)


def quantize_blockwise(w: torch.Tensor, block_size: list[int], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize a weight (N, K) with one float32 scale per [block_n, block_k] block."""
    if w.dim() != 2:
        raise ValueError(f"w must be 2-D (N, K), but got shape {tuple(w.shape)}.")
    block_n, block_k = block_size
    N, K = w.shape
    padded = torch.zeros(cdiv(N, block_n) * block_n, cdiv(K, block_k) * block_k, dtype=torch.float32, device=w.device)
    padded[:N, :K] = w
    blocks = padded.view(cdiv(N, block_n), block_n, cdiv(K, block_k), block_k)
    scales = blocks.abs().amax(dim=(1, 3)).clamp(min=1e-12) / _qmax(dtype)
    q = _to_quantized(w.float() / _expand_scales(scales, N, K, block_n, block_k), dtype)
    return q.contiguous(), scales.contiguous()


def quantize_per_token_group(x: torch.Tensor, group_size: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize activations (M, K) with one float32 scale per token per group of K columns."""
    if x.dim() != 2:
        raise ValueError(f"x must be 2-D (M, K), but got shape {tuple(x.shape)}.")
    return quantize_blockwise(x, [1, group_size], dtype)
