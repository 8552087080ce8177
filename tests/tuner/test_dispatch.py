"""Which runs SGLang serves with DeepGEMM instead of the tuned Triton configs."""

from __future__ import annotations

import pytest

from tuner.dispatch import deepgemm_note, is_hopper, is_sm90_or_newer


@pytest.mark.parametrize(
    ("device_name", "sm90", "hopper"),
    [
        ("NVIDIA_H100_80GB_HBM3", True, True),  # as a config file and a landscape spell it
        ("NVIDIA H100 80GB HBM3", True, True),  # as torch.cuda.get_device_name returns it
        ("NVIDIA H100 PCIe", True, True),
        ("NVIDIA_H200", True, True),
        ("NVIDIA_H800", True, True),
        ("NVIDIA_H20", True, True),
        ("NVIDIA_GH200_480GB", True, True),
        ("NVIDIA_B200", True, False),  # SM100: DeepGEMM, but no Hopper kernel
        ("NVIDIA_A100-SXM4-80GB", False, False),  # SM80: no DeepGEMM
        ("NVIDIA_L40S", False, False),  # SM89
        ("NVIDIA_GeForce_RTX_4090", False, False),
        ("AMD_Instinct_MI300X", False, False),  # ROCm: SGLang's Triton path
        ("Synthetic_GPU", False, False),
        ("NVIDIA_H2000", False, False),  # a token that merely starts like H200 is no match
    ],
)
def test_sm90_devices_by_name(device_name, sm90, hopper):
    assert is_sm90_or_newer(device_name) is sm90
    assert is_hopper(device_name) is hopper  # Blackwell is SM100: no Hopper kernel


@pytest.mark.parametrize(
    ("device_name", "out_dtype", "noted"),
    [
        ("NVIDIA_H100_80GB_HBM3", "bfloat16", True),  # DeepGEMM takes it unless switched off
        ("NVIDIA_H100_80GB_HBM3", "float16", False),  # the Triton path serves float16 on Hopper
        ("NVIDIA_H100_80GB_HBM3", "float32", False),
        ("NVIDIA_A100-SXM4-80GB", "bfloat16", False),  # older GPUs run the Triton path for bf16 too
    ],
)
def test_deepgemm_note_only_for_bfloat16_on_sm90(device_name, out_dtype, noted):
    note = deepgemm_note(device_name, out_dtype)
    assert (note is not None) is noted
    if noted:
        assert "SGLANG_ENABLE_JIT_DEEPGEMM=0" in note and device_name in note and "\n" not in note
