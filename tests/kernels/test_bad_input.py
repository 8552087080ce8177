"""Every bad input of the kernel API (docs/contracts.md) raises ValueError naming what was expected, before a launch."""

from __future__ import annotations

import re

import pytest
import torch

from kernels import quantize_blockwise, quantize_per_token_group, w8a8_block_matmul, w8a8_block_matmul_reference

FP8 = torch.float8_e4m3fn
GOOD_CONFIG = {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 64,
               "GROUP_SIZE_M": 1, "num_warps": 4, "num_stages": 2}  # fmt: skip


def _args(M=8, N=96, K=160, block_size=(64, 64), dtype=FP8):
    a, a_scales = quantize_per_token_group(torch.randn(M, K), block_size[1], dtype)
    b, b_scales = quantize_blockwise(torch.randn(N, K), list(block_size), dtype)
    return {"A": a, "B": b, "As": a_scales, "Bs": b_scales, "block_size": list(block_size),
            "output_dtype": torch.float16, "config": dict(GOOD_CONFIG)}  # fmt: skip


def _with(**changes):
    args = _args()
    for key, change in changes.items():
        args[key] = change(args) if callable(change) else change
    return args


def _config_with(**changes):
    return {**GOOD_CONFIG, **changes}


# (the arguments, a fragment the message must hold): each a bad input of the kernel API.
BAD_INPUTS = {
    "A float16": (_with(A=lambda a: a["A"].half()), "float8_e4m3fn or int8"),
    "B int8 while A fp8": (_with(B=lambda a: a["B"].view(torch.int8)), "A's dtype"),
    "K mismatch": (_with(B=lambda a: a["B"][:, :128].contiguous()), "K=160"),
    "A not contiguous in K": (_with(A=lambda a: a["A"].t().contiguous().t()), "contiguous last dim"),
    "A 3-D": (_with(A=lambda a: a["A"][None]), "2-D"),
    "As wrong shape": (_with(As=lambda a: a["As"][:, :2]), "As must have shape (8, 3)"),
    "Bs wrong shape": (_with(Bs=lambda a: a["Bs"][:1]), "Bs must have shape (2, 3)"),
    "As float16": (_with(As=lambda a: a["As"].half()), "As must be float32"),
    "output int8": (_with(output_dtype=torch.int8), "bfloat16, float16 or float32"),
    "block_size one number": (_with(block_size=[128]), "[block_n, block_k]"),
    "block_n not a power of two": (_with(block_size=[96, 64]), "block_n must be a power of two"),
    "config key missing": (_with(config={k: v for k, v in GOOD_CONFIG.items() if k != "num_stages"}), "num_stages"),
    "config key unknown": (_with(config=_config_with(BLOCK_SIZE_Q=1)), "BLOCK_SIZE_Q"),
    "BLOCK_SIZE_N not a power of two": (_with(config=_config_with(BLOCK_SIZE_N=48)), "power of two"),
    "BLOCK_SIZE_K not dividing block_k": (_with(config=_config_with(BLOCK_SIZE_K=128)), "divide block_k=64"),
    "num_warps zero": (_with(config=_config_with(num_warps=0)), "positive int"),
    "config value a string": (_with(config=_config_with(num_stages="3")), "positive int"),
    "empty M": (_args(M=0), "must be positive"),
}


@pytest.mark.parametrize("function", [w8a8_block_matmul, w8a8_block_matmul_reference])
@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_raises_value_error(function, case):
    args, fragment = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=re.escape(fragment)):
        function(**args)


def test_cpu_tensors_need_the_interpreter(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("on a GPU machine the interpreter is off already")
    args = _args()
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
        w8a8_block_matmul(**args)
