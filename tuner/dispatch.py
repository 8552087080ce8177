"""Which GEMMs SGLang actually sends to the Triton kernel, so a run can say when its configs go unused.

SGLang sends block-quantized GEMMs with bfloat16 output on SM90-or-newer NVIDIA GPUs to DeepGEMM
unless SGLANG_ENABLE_JIT_DEEPGEMM=0; the Triton kernel tuned here serves every other case.
"""

from __future__ import annotations

import re

# Tokens of torch's device names (e.g. NVIDIA_H100_80GB_HBM3, "NVIDIA GH200 480GB") of Hopper and
# Blackwell data-centre GPUs: the SM90+ devices DeepGEMM runs on.
SM90_DEVICES = frozenset({"H100", "H200", "H800", "H20", "GH200", "B100", "B200", "GB200"})


def is_sm90(device_name: str) -> bool:
    """True for a device name with a token of SM90_DEVICES (spaces, underscores or dashes apart)."""
    return any(token in SM90_DEVICES for token in re.split(r"[ _-]+", device_name.upper()))


def deepgemm_note(device_name: str, out_dtype: str) -> str | None:
    """One line on why SGLang will not use these configs by default, or None where it will."""
    if out_dtype != "bfloat16" or not is_sm90(device_name):
        return None
    return (
        f"SGLang sends GEMMs with bfloat16 output on SM90+ GPUs such as {device_name} to DeepGEMM unless "
        "SGLANG_ENABLE_JIT_DEEPGEMM=0; the Triton path these configs serve runs float16/float32 output, "
        "older GPUs, AMD and runs with DeepGEMM off."
    )
