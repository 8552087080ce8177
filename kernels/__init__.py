"""Block-scaled W8A8 GEMM: the Triton kernel, its float32 reference and the quantizers.

The Triton kernel is imported on first use, so the reference, the quantizers and the config
defaults work on machines without a Triton compiler.
"""

from __future__ import annotations

from typing import Any

from kernels._checks import CONFIG_KEYS, default_config
from kernels._reference import (
    RELATIVE_TOLERANCE,
    quantize_blockwise,
    quantize_per_token_group,
    w8a8_block_matmul_reference,
)

__all__ = [
    "CONFIG_KEYS",
    "RELATIVE_TOLERANCE",
    "compile_w8a8_block_matmul",
    "default_config",
    "quantize_blockwise",
    "quantize_per_token_group",
    "w8a8_block_matmul",
    "w8a8_block_matmul_reference",
]

_TRITON_NAMES = ("w8a8_block_matmul", "compile_w8a8_block_matmul")


def __getattr__(name: str) -> Any:
    if name in _TRITON_NAMES:
        from kernels import _w8a8_block

        return getattr(_w8a8_block, name)
    raise AttributeError(f"module 'kernels' has no attribute {name!r}")
