"""Weight shapes to tune: DeepSeek-V3's (SPEC section 3) for a tensor-parallel size."""

from __future__ import annotations

DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024, 1536, 2048, 3072, 4096)

_DEEPSEEK_V3_UNSPLIT = ((576, 7168), (24576, 7168), (32768, 512), (7168, 16384), (7168, 18432))
_DEEPSEEK_V3_N_SPLIT = ((36864, 7168), (24576, 7168), (32768, 512), (24576, 1536), (4096, 7168))
_DEEPSEEK_V3_K_SPLIT = ((7168, 18432), (7168, 16384), (7168, 2048))


def deepseek_v3_shapes(tp_size: int) -> list[tuple[int, int]]:
    """The (N, K) of DeepSeek-V3's block-quantized linear layers at tensor-parallel size tp_size."""
    if not isinstance(tp_size, int) or tp_size < 1:
        raise ValueError(f"--tp-size must be a positive int, but got {tp_size!r}.")
    shapes = list(_DEEPSEEK_V3_UNSPLIT)
    for what, split in (("N", _DEEPSEEK_V3_N_SPLIT), ("K", _DEEPSEEK_V3_K_SPLIT)):
        for N, K in split:
            size = N if what == "N" else K
            if size % tp_size:
                raise ValueError(f"--tp-size {tp_size} must divide {what}={size} of DeepSeek-V3's ({N}, {K}).")
            shapes.append((N // tp_size, K) if what == "N" else (N, K // tp_size))
    return list(dict.fromkeys(shapes))  # duplicates are tuned once, first occurrence kept
