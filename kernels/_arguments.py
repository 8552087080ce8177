"""The kernel's scalar arguments for a launch: plain ints, so the tuner computes them without torch or Triton."""

from __future__ import annotations


def kernel_arguments(
    M: int, N: int, K: int, block_size: list[int], config: dict[str, int], strides: tuple | None = None
) -> tuple[tuple[int, ...], dict[str, int | bool]]:
    """The kernel's integer arguments after the five pointers, in order, and its keyword arguments.

    Triton compiles anew for each class of these integers (== 1, divisible by 16), so the launch,
    the compile-ahead and the tuner's compile key all take them from here. strides holds the
    (row, column) strides of A, B, C, As and Bs; None means contiguous tensors of the contract's
    shapes.
    """
    block_n, block_k = block_size
    if strides is None:
        k_groups = -(-K // block_k)
        strides = ((K, 1), (K, 1), (N, 1), (k_groups, 1), (k_groups, 1))
    (am, ak), (bn, bk), (cm, cn), (as_m, as_k), (bs_n, bs_k) = strides
    ints = (M, N, K, block_n, block_k, am, ak, bk, bn, cm, cn, as_m, as_k, bs_k, bs_n)
    return ints, {"EVEN_K": K % config["BLOCK_SIZE_K"] == 0, **config}
