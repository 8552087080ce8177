"""Where SGLang sends a GEMM: DeepGEMM, the base Triton kernel or its Hopper variant, by device name.

SGLang sends block-quantized GEMMs with bfloat16 output on SM90-or-newer NVIDIA GPUs to DeepGEMM
unless SGLANG_ENABLE_JIT_DEEPGEMM=0; the Triton kernel tuned here serves every other case. Entries
with SPLIT_K or SWAP_AB run on SGLang's Hopper kernel, which exists for SM90 alone.
"""

from __future__ import annotations

import re

# Tokens of torch's device names (e.g. NVIDIA_H100_80GB_HBM3, "NVIDIA GH200 480GB") of Hopper and
# Blackwell data-centre GPUs: the SM90+ devices DeepGEMM runs on.
HOPPER_DEVICES = frozenset({"H100", "H200", "H800", "H20", "GH200"})
SM90_OR_NEWER_DEVICES = HOPPER_DEVICES | {"B100", "B200", "GB200"}


def _has_token(device_name: str, tokens: frozenset[str]) -> bool:
    return any(token in tokens for token in re.split(r"[ _-]+", device_name.upper()))


def is_sm90_or_newer(device_name: str) -> bool:
    """True for a Hopper or Blackwell data-centre GPU's name (spaces, underscores or dashes apart)."""
    return _has_token(device_name, SM90_OR_NEWER_DEVICES)


def is_hopper(device_name: str) -> bool:
    """True for an SM90 GPU's name: the devices SGLang runs SPLIT_K and SWAP_AB entries on."""
    return _has_token(device_name, HOPPER_DEVICES)


def deepgemm_note(device_name: str, out_dtype: str) -> str | None:
    """One line on why SGLang will not use these configs by default, or None where it will."""
    if out_dtype != "bfloat16" or not is_sm90_or_newer(device_name):
        return None
    return (
        f"SGLang sends GEMMs with bfloat16 output on SM90+ GPUs such as {device_name} to DeepGEMM unless "
        "SGLANG_ENABLE_JIT_DEEPGEMM=0; the Triton path these configs serve runs float16/float32 output, "
        "older GPUs, AMD and runs with DeepGEMM off."
    )


# What a user of a file with SPLIT_K / SWAP_AB entries must know before dropping it into SGLang.
HOPPER_NOTE = (
    "entries with SPLIT_K and SWAP_AB run on SGLang's Hopper kernel (_w8a8_block_fp8_matmul_hopper, shipped in "
    "SGLang 0.5.23) where SGLang sees an SM90 GPU and CUDA 12.3 or newer; elsewhere, and in an SGLang without that "
    "kernel, they reach the base kernel, which fails with 'KeyError: Keyword argument SPLIT_K was specified but "
    "unrecognised': use --space base files there. vLLM does not run them."
)
