"""A stand-in for the GPU side of the GPU benchmarker: deterministic latencies, plus configs that crash or hang.

Module-level so spawn-started processes can import it; it exercises the real process machinery.
"""

from __future__ import annotations

import os
import time

from tuner.benchmarkers import Measurement
from tuner.space import Config, Problem


def fake_latency(problem: Problem, config: Config) -> float:
    return 10.0 + problem.M / config.block_m + 256 / config.block_n + config.num_stages + config.group_m / 64


class FakeSession:
    device_name = "Fake_GPU"
    shared_memory_limit = 232448

    def __init__(self, device_index: int) -> None:
        self.device_index = device_index

    def measure(self, problem: Problem, config: Config, prune_above_us: float | None) -> Measurement:
        if config.num_warps == 8 and config.num_stages == 5 and config.block_m == 256:
            os._exit(3)  # a config that takes the process down, like an illegal memory access
        if config.num_warps == 8 and config.num_stages == 5 and config.block_m == 128:
            time.sleep(60)  # a config that hangs
        if config.num_warps == 8 and config.num_stages == 4 and config.block_m == 128:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        us = fake_latency(problem, config)
        if prune_above_us is not None and us > prune_above_us:
            return Measurement("pruned", us=us)
        return Measurement("ok", us=us)


def fake_compile(problem: Problem, config: Config) -> Measurement | None:
    if config.block_n == 256 and config.num_stages == 2 and config.num_warps == 4:
        return Measurement("compile_error", reason="PTXASError: fake")
    return None


def unreliable_compile(problem: Problem, config: Config) -> Measurement | None:
    """fake_compile, except that 5-stage configs never finish compiling and 4-stage ones kill their process."""
    if config.num_stages == 5:
        time.sleep(600)
    if config.num_stages == 4:
        os._exit(7)
    return fake_compile(problem, config)
