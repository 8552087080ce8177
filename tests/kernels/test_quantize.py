"""The quantizers round-trip real data within the 8-bit formats' precision."""

from __future__ import annotations

import pytest
import torch

from kernels import quantize_blockwise, quantize_per_token_group

# dtype and the relative round-trip error it allows (fp8 e4m3 keeps 3 mantissa bits).
DTYPES = [(torch.float8_e4m3fn, 0.05), (torch.int8, 0.02)]


@pytest.mark.parametrize(("dtype", "tolerance"), DTYPES)
def test_blockwise_round_trip(dtype, tolerance):
    w = torch.randn(200, 300) * torch.rand(200, 1) * 10  # rows of different magnitude
    q, scales = quantize_blockwise(w, [128, 128], dtype)
    assert q.dtype == dtype and scales.shape == (2, 3) and scales.dtype == torch.float32
    back = q.float() * scales.repeat_interleave(128, 0)[:200].repeat_interleave(128, 1)[:, :300]
    assert ((back - w).norm() / w.norm()).item() < tolerance


@pytest.mark.parametrize(("dtype", "tolerance"), DTYPES)
def test_per_token_group_uses_the_full_range(dtype, tolerance):
    x = torch.randn(3, 256)
    q, scales = quantize_per_token_group(x, 128, dtype)
    assert scales.shape == (3, 2)
    qmax = torch.finfo(dtype).max if dtype.is_floating_point else torch.iinfo(dtype).max
    # Each group's largest magnitude maps to the format's largest value.
    assert torch.allclose(q.float().abs().view(3, 2, 128).amax(-1), torch.full((3, 2), float(qmax)))
    back = q.float() * scales.repeat_interleave(128, 1)
    assert ((back - x).norm() / x.norm()).item() < tolerance


def test_rejects_a_non_8_bit_dtype():
    with pytest.raises(ValueError, match="float8_e4m3fn or int8"):
        quantize_blockwise(torch.randn(4, 4), [2, 2], torch.float16)
