"""Block-scaled W8A8 GEMM: the Triton kernel, its float32 reference and the quantizers.

Only the config constants load eagerly; everything else on first use, so that code which needs
just the config (the tuner in replay) starts without importing torch or Triton.
"""

from __future__ import annotations

import importlib
from typing import Any

from kernels._config import (
    CONFIG_KEYS,
    HOPPER_KEYS,
    INPUT_TYPES,
    MAX_SPLIT_K,
    OUT_DTYPES,
    default_config,
    uses_hopper_path,
)

# Which project this `kernels` is: other packages take the name too, and the tuner's commands read this
# line, without importing the package, to tell this one from theirs (tuner/cli/_launch.py).
PROJECT = "w8a8-block-tuner"

_LAZY = {
    "INPUT_DTYPES": "kernels._checks",
    "OUTPUT_DTYPES": "kernels._checks",
    "RELATIVE_TOLERANCE": "kernels._reference",
    "quantize_blockwise": "kernels._reference",
    "quantize_per_token_group": "kernels._reference",
    "w8a8_block_matmul_reference": "kernels._reference",
    "w8a8_block_matmul": "kernels._w8a8_block",
    "bind_w8a8_block_matmul": "kernels._w8a8_block",
    "compile_w8a8_block_matmul": "kernels._w8a8_block",
    "kernel_arguments": "kernels._arguments",
}

__all__ = [
    "CONFIG_KEYS",
    "HOPPER_KEYS",
    "INPUT_TYPES",
    "MAX_SPLIT_K",
    "OUT_DTYPES",
    "default_config",
    "uses_hopper_path",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kernels' has no attribute {name!r}")
