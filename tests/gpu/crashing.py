"""A real timing session in which one config crashes the CUDA context, as a kernel's illegal memory access does.

Module-level so the spawn-started timing process can import it (tests.gpu.test_fresh_timing_process).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from tuner.benchmarkers._cuda import CudaTimingSession
from tuner.space import Config, Problem

CRASHES = Config(block_m=32, block_n=64, block_k=128, group_m=1, num_warps=4, num_stages=3)


@triton.jit
def _store_far_away(pointer):
    tl.store(pointer + (1 << 40), 1.0)  # 4 TiB past a one-float buffer: no memory is mapped there


class CrashingSession(CudaTimingSession):
    """CudaTimingSession, except that measuring CRASHES first writes out of bounds: an illegal memory access.

    The fault is reported at the next synchronization, inside the real measurement's first launch,
    so the session meets it where it meets a config's own crash.
    """

    def measure(self, problem: Problem, config: Config, prune_above_us: float | None):
        if config == CRASHES:
            _store_far_away[(1,)](torch.empty(1, device="cuda"))
        return super().measure(problem, config, prune_above_us)
