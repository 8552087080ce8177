"""A stand-in for the GPU under the GPU benchmarker: deterministic latencies, plus configs that crash or hang.

Module-level so spawn-started processes can import it; it exercises the real process machinery and
the real timing session (tuner.benchmarkers._cuda), whose device side alone it replaces.
"""

from __future__ import annotations

import os
import random
import time

import torch

from kernels.timing import GraphTiming
from tuner.benchmarkers import Measurement
from tuner.benchmarkers._cuda import CudaTimingSession
from tuner.benchmarkers._gpu import specialization
from tuner.space import Config, Problem, default_config


def fake_latency(problem: Problem, config: Config) -> float:
    return 10.0 + problem.M / config.block_m + 256 / config.block_n + config.num_stages + config.group_m / 64


# Launches per fake timing: the "GPU" runs this many of the config's latency, asleep, so that the
# time it reports is time the timing process really took, as on a GPU.
LAUNCHES = 200
# Operand sets a fake timing rotates over (a graph captures one launch per set).
SETS = 4
# What Triton raises when a kernel's first launch in a process falls in a graph capture: it loads
# the kernel's module then, and CUDA refuses module loads while a stream captures.
CAPTURE_LOAD_ERROR = "Triton Error [CUDA]: operation not permitted when stream is capturing"


def fake_gpu_s(us: float) -> float:
    """The GPU time one fake timing of a config of latency us reports (and spends)."""
    return LAUNCHES * us * 1e-6


class FakeSession(CudaTimingSession):
    """The real timing session on a fake device, which fails where a GPU under Triton fails.

    Its kernels compute the reference exactly and take fake_latency, asleep, per launch in a timed
    graph. As on a GPU, a config's kernel is loaded at its first launch in the process (once per
    Triton specialization), and a graph capture that would load one fails. Some configs take the
    process down, hang, or raise an unclassified CUDA error at every launch.
    """

    device_name = "Fake_GPU"
    shared_memory_limit = 232448
    sm_count = 132

    def __init__(self, device_index: int) -> None:  # the session's state, without a CUDA device
        self.device_index = device_index
        self.gpu_s = 0.0
        self._references: dict[Problem, torch.Tensor] = {}
        self._outputs: dict[Problem, torch.Tensor] = {}
        self._loaded: set[tuple] = set()  # the device's modules: specializations launched in this process
        self._graph: list[tuple[Problem, Config]] | None = None  # the launches being captured, while one is

    def operands(self, problem: Problem) -> list:
        self._references.setdefault(problem, torch.ones(8))
        self._outputs.setdefault(problem, torch.zeros(8))
        return list(range(SETS))

    def _bound_launches(self, problem: Problem, config: Config, sets, *, launch_first: bool = True) -> list:
        """As binding does: the first set's launch runs now unless launch_first is False; the rest only bind."""
        if launch_first and sets:
            self._launch(problem, config)
        return [lambda: self._launch(problem, config) for _ in sets]

    def _launch(self, problem: Problem, config: Config) -> None:
        if config.num_warps == 8 and config.num_stages == 5 and config.block_m == 256:
            os._exit(3)  # a config that takes the process down, like an illegal memory access
        if config.num_warps == 8 and config.num_stages == 5 and config.block_m == 128:
            time.sleep(60)  # a config that hangs
        if config.num_warps == 8 and config.num_stages == 4 and config.block_m == 128:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        key = specialization(problem, config)
        if key not in self._loaded:
            if self._graph is not None:
                raise RuntimeError(CAPTURE_LOAD_ERROR)
            self._loaded.add(key)
        if self._graph is not None:
            self._graph.append((problem, config))
        self._outputs[problem].copy_(self._references[problem])

    def _synchronize(self) -> None:
        pass  # the fake device runs each launch as it is made

    def _time(self, launch, n_sets: int, *, prune_above_us: float | None = None, **replays) -> GraphTiming:
        """Capture one pass over the sets, then replay it: the config's latency, spent asleep."""
        self._graph = []
        try:
            for i in range(n_sets):
                launch(i)
            ((problem, config),) = set(self._graph)
        finally:
            self._graph = None
        us = self._latency(problem, config)
        time.sleep(fake_gpu_s(us))
        median = None if prune_above_us is not None and us > prune_above_us else us
        return GraphTiming(us, median, median, median, n_sets, gpu_us=fake_gpu_s(us) * 1e6)

    def _latency(self, problem: Problem, config: Config) -> float:
        return fake_latency(problem, config)


class LuckySession(FakeSession):
    """Timings with 3% noise, where the first look at LUCKY (the search's) came out 20% fast.

    LUCKY truly runs at the default's speed: a confirmation round must not let it win.
    """

    def __init__(self, device_index: int) -> None:
        super().__init__(device_index)
        self._noise = random.Random(7)
        self._looked_at_lucky = False

    def _latency(self, problem: Problem, config: Config) -> float:
        default = Config(block_m=64, block_n=128, block_k=128, group_m=32, num_warps=4, num_stages=3)
        truth = fake_latency(problem, default if config == LUCKY else config)
        if config == LUCKY and not self._looked_at_lucky:
            self._looked_at_lucky = True
            return 0.8 * truth
        return truth * self._noise.uniform(0.97, 1.03)


LUCKY = Config(block_m=32, block_n=128, block_k=128, group_m=32, num_warps=4, num_stages=3)

# A file whose number of lines counts a dying GPU's launches, across timing-process restarts.
LAUNCHES_FILE = "FAKE_GPU_LAUNCHES"
HEALTHY_LAUNCHES = 3


class DyingSession(FakeSession):
    """A GPU that runs HEALTHY_LAUNCHES measurements and then fails every launch, as a reset or lost GPU does.

    The launches are counted in the file the environment variable LAUNCHES_FILE names, so the GPU
    stays dead when the timing process is replaced.
    """

    def _use_gpu(self) -> None:
        with open(os.environ[LAUNCHES_FILE], "a+") as f:
            f.seek(0)
            if len(f.readlines()) >= HEALTHY_LAUNCHES:
                raise RuntimeError("CUDA error: unspecified launch failure")
            f.write("launch\n")

    def measure(self, problem: Problem, config: Config, prune_above_us: float | None) -> Measurement:
        self._use_gpu()
        return super().measure(problem, config, prune_above_us)

    def retime(
        self, problem: Problem, configs: list[Config], rounds: int, quick: bool = False
    ) -> dict[Config, list[float]]:
        self._use_gpu()
        return super().retime(problem, configs, rounds, quick)


class DefaultCrashesSession(FakeSession):
    """A healthy GPU on which SGLang's default config takes the process down, like an illegal memory access."""

    def _launch(self, problem: Problem, config: Config) -> None:
        if config == default_config(problem.block_n, problem.block_k):
            os._exit(3)
        super()._launch(problem, config)


def failing_session(device_index: int) -> FakeSession:
    raise RuntimeError("CUDA error: no CUDA-capable device is detected")


def dying_session(device_index: int) -> FakeSession:
    os._exit(3)
