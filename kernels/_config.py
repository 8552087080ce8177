"""The config's keys and SGLang's default config: plain data, importable without torch or Triton."""

from __future__ import annotations

from collections.abc import Mapping

# The operand and output types by the names config files, landscapes and command lines use
# (kernels._checks maps them to torch dtypes).
INPUT_TYPES = ("fp8", "int8")
OUT_DTYPES = ("bfloat16", "float16", "float32")
CONFIG_KEYS = ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "GROUP_SIZE_M", "num_warps", "num_stages")
# The keys an entry adds for SGLang's Hopper kernel, both together and only on that path: SGLang
# launches the base kernel with every key of an entry, and the base kernel takes neither.
HOPPER_KEYS = ("SPLIT_K", "SWAP_AB")
MAX_SPLIT_K = 64


def default_config(block_n: int, block_k: int) -> dict[str, int]:
    """SGLang's fallback config when no tuned file exists for a shape."""
    return {
        "BLOCK_SIZE_M": 64,
        "BLOCK_SIZE_N": block_n,
        "BLOCK_SIZE_K": block_k,
        "GROUP_SIZE_M": 32,
        "num_warps": 4,
        "num_stages": 3,
    }


def uses_hopper_path(entry: Mapping[str, int]) -> bool:
    """Whether SGLang runs a config entry on its Hopper kernel: swapped operands or K split in several."""
    return entry.get("SWAP_AB", False) is True or entry.get("SPLIT_K", 1) > 1
