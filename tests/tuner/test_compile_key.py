"""The compile-ahead key: two problems share it exactly when Triton would serve both from one binary."""

from __future__ import annotations

import itertools

import pytest
import torch

import kernels._w8a8_block
from kernels import INPUT_DTYPES, OUTPUT_DTYPES, kernel_arguments
from tuner.benchmarkers._gpu import specialization
from tuner.space import Config, Problem, default_config

DEFAULT = default_config(128, 128)
SMALL = Config(block_m=16, block_n=64, block_k=128, group_m=1, num_warps=4, num_stages=3)


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        (Problem(N=7168, K=18432, M=16), Problem(N=7168, K=7168, M=16), False),  # scale strides 144 vs 56
        (Problem(N=7168, K=18432, M=16), Problem(N=7168, K=18432, M=32), True),  # M is only an i32 divisible by 16
        (Problem(N=7168, K=18432, M=13), Problem(N=7168, K=18432, M=333), True),  # both not divisible by 16
        (Problem(N=7168, K=18432, M=1), Problem(N=7168, K=18432, M=2), False),  # 1 is compiled in as a constant
        (Problem(N=7168, K=7168, M=16), Problem(N=7168, K=7296, M=16), True),  # 56 and 57 scale groups
        (Problem(N=7168, K=7168, M=16), Problem(N=7160, K=7168, M=16), False),  # C's row stride N
        (Problem(N=7168, K=7168, M=16), Problem(N=4096, K=7168, M=16), True),  # N and 56 scale blocks alike
        (Problem(N=7168, K=7168, M=16), Problem(N=7168, K=7200, M=16), False),  # a K tail: EVEN_K
        (Problem(N=7168, K=7168, M=16), Problem(N=7168, K=7168, M=16, out_dtype="bfloat16"), False),
    ],
)
def test_problems_share_a_key_exactly_when_triton_compiles_them_alike(one, other, same):
    assert (specialization(one, SMALL) == specialization(other, SMALL)) is same


def _triton_key(problem: Problem, config: Config) -> tuple:
    """What Triton's own binder makes of the launch's arguments: its cache key, less the kernel's hash.

    The binder is the one JITFunction.run uses (its backend's integer rules are the base backend's);
    under the interpreter the kernel is not a JITFunction, so one is made from its Python function.
    """
    p = problem
    # Pointers specialize on dtype and 16-byte alignment, which every torch allocation has.
    dtypes = (INPUT_DTYPES[p.input_type],) * 2 + (OUTPUT_DTYPES[p.out_dtype], torch.float32, torch.float32)
    pointers = [torch.empty(1, dtype=dtype) for dtype in dtypes]
    ints, kwargs = kernel_arguments(p.M, p.N, p.K, [p.block_n, p.block_k], config.as_sglang())
    try:
        from triton.backends.compiler import BaseBackend
        from triton.runtime.jit import JITFunction, create_function_from_signature

        kernel = JITFunction(kernels._w8a8_block._w8a8_block_matmul_kernel.fn)
        binder = create_function_from_signature(kernel.signature, kernel.params, BaseBackend)
        _, specialized, options = binder(*pointers, *ints, **kwargs)
    except (ImportError, AttributeError, TypeError) as error:
        pytest.skip(f"this Triton's binder is not the one this test knows: {error!r}")
    return str(specialized), str(options)


def test_the_key_splits_problems_as_tritons_binder_does():
    problems = [
        Problem(N=N, K=K, M=M, out_dtype=out_dtype)
        for N, K in [(7168, 18432), (7168, 7168), (7160, 7168), (4096, 7296), (576, 7200), (24576, 1536)]
        for M in (1, 2, 13, 16, 4096)
        for out_dtype in ("float16", "bfloat16")
    ]
    cases = [(p, c) for p in problems for c in (DEFAULT, SMALL)]
    ours = {case: specialization(*case) for case in cases}
    triton = {case: _triton_key(*case) for case in cases}
    assert len(set(triton.values())) > 10  # the table holds many specializations, not one
    for a, b in itertools.combinations(cases, 2):
        assert (ours[a] == ours[b]) == (triton[a] == triton[b]), (a, b)
