"""Random quantized operands and the error measure that the kernel tests share."""

from __future__ import annotations

import torch

from kernels import quantize_blockwise, quantize_per_token_group

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def random_operands(M: int, N: int, K: int, block_size: list[int], dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Fresh (A, B, As, Bs): standard normal data quantized as in serving, so no scale or value is zero."""
    a, a_scales = quantize_per_token_group(torch.randn(M, K, device=DEVICE), block_size[1], dtype)
    b, b_scales = quantize_blockwise(torch.randn(N, K, device=DEVICE), block_size, dtype)
    return a, b, a_scales, b_scales


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Relative Frobenius error, the measure the tolerances are stated in."""
    return ((out.float() - ref.float()).norm() / ref.float().norm()).item()
