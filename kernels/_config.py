"""The config's keys and SGLang's default config: plain data, importable without torch or Triton."""

from __future__ import annotations

CONFIG_KEYS = ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "GROUP_SIZE_M", "num_warps", "num_stages")


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
