"""A stand-in for the GPU side of the GPU benchmarker: deterministic latencies, plus configs that crash or hang.

Module-level so spawn-started processes can import it; it exercises the real process machinery.
"""

from __future__ import annotations

import os
import random
import time

from tuner.benchmarkers import Measurement
from tuner.space import Config, Problem


def fake_latency(problem: Problem, config: Config) -> float:
    return 10.0 + problem.M / config.block_m + 256 / config.block_n + config.num_stages + config.group_m / 64


# Launches per fake timing: the "GPU" runs this many of the config's latency, asleep, so that the
# time it reports is time the timing process really took, as on a GPU.
LAUNCHES = 200


def fake_gpu_s(us: float) -> float:
    """The GPU time one fake timing of a config of latency us reports (and spends)."""
    return LAUNCHES * us * 1e-6


class FakeSession:
    device_name = "Fake_GPU"
    shared_memory_limit = 232448
    sm_count = 132

    def __init__(self, device_index: int) -> None:
        self.device_index = device_index
        self.gpu_s = 0.0

    def _run(self, us: float) -> float:
        time.sleep(fake_gpu_s(us))
        self.gpu_s += fake_gpu_s(us)
        return us

    def check(self, problem: Problem, config: Config) -> Measurement | None:
        """The first launch of config: where it crashes, hangs or fails, as the real check's launch would."""
        if config.num_warps == 8 and config.num_stages == 5 and config.block_m == 256:
            os._exit(3)  # a config that takes the process down, like an illegal memory access
        if config.num_warps == 8 and config.num_stages == 5 and config.block_m == 128:
            time.sleep(60)  # a config that hangs
        if config.num_warps == 8 and config.num_stages == 4 and config.block_m == 128:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return None

    def measure(self, problem: Problem, config: Config, prune_above_us: float | None) -> Measurement:
        failure = self.check(problem, config)
        if failure is not None:
            return failure
        us = self._run(fake_latency(problem, config))
        if prune_above_us is not None and us > prune_above_us:
            return Measurement("pruned", us=us)
        return Measurement("ok", us=us)

    def retime(
        self, problem: Problem, configs: list[Config], rounds: int, quick: bool = False
    ) -> dict[Config, list[float]]:
        return {config: [self._run(fake_latency(problem, config)) for _ in range(rounds)] for config in configs}

    def probe(
        self, problem: Problem, configs: list[Config], rounds: int, quick: bool
    ) -> dict[Config, list[float] | Measurement]:
        failures = {config: self.check(problem, config) for config in configs}
        times = self.retime(problem, [c for c in configs if failures[c] is None], rounds, quick)
        return {config: failures[config] or times[config] for config in configs}


class LuckySession(FakeSession):
    """Timings with 3% noise, where the search's one look at LUCKY came out 20% fast.

    LUCKY truly runs at the default's speed: a confirmation round must not let it win.
    """

    def __init__(self, device_index: int) -> None:
        super().__init__(device_index)
        self._noise = random.Random(7)

    def _truth(self, problem: Problem, config: Config) -> float:
        default = Config(block_m=64, block_n=128, block_k=128, group_m=32, num_warps=4, num_stages=3)
        return fake_latency(problem, default if config == LUCKY else config)

    def measure(self, problem: Problem, config: Config, prune_above_us: float | None) -> Measurement:
        us = self._truth(problem, config) * (0.8 if config == LUCKY else self._noise.uniform(0.97, 1.03))
        return Measurement("ok", us=us)

    def retime(
        self, problem: Problem, configs: list[Config], rounds: int, quick: bool = False
    ) -> dict[Config, list[float]]:
        return {c: [self._truth(problem, c) * self._noise.uniform(0.97, 1.03) for _ in range(rounds)] for c in configs}


LUCKY = Config(block_m=32, block_n=128, block_k=128, group_m=32, num_warps=4, num_stages=3)

# A file whose number of lines counts a dying GPU's launches, across timing-process restarts.
LAUNCHES_FILE = "FAKE_GPU_LAUNCHES"
HEALTHY_LAUNCHES = 3


class DyingSession(FakeSession):
    """A GPU that runs HEALTHY_LAUNCHES measurements and then fails every launch, as a reset or lost GPU does.

    The launches are counted in the file the environment variable LAUNCHES_FILE names, so the GPU
    stays dead when the timing process is replaced.
    """

    def _launch(self) -> None:
        with open(os.environ[LAUNCHES_FILE], "a+") as f:
            f.seek(0)
            if len(f.readlines()) >= HEALTHY_LAUNCHES:
                raise RuntimeError("CUDA error: unspecified launch failure")
            f.write("launch\n")

    def measure(self, problem: Problem, config: Config, prune_above_us: float | None) -> Measurement:
        self._launch()
        return super().measure(problem, config, prune_above_us)

    def retime(
        self, problem: Problem, configs: list[Config], rounds: int, quick: bool = False
    ) -> dict[Config, list[float]]:
        self._launch()
        return super().retime(problem, configs, rounds, quick)


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


# Where logged_compile notes each job as it starts ("M config" per line), and how long each takes.
COMPILE_LOG = "FAKE_COMPILE_LOG"
COMPILE_S = "FAKE_COMPILE_S"


def logged_compile(problem: Problem, config: Config) -> Measurement | None:
    """fake_compile that takes $FAKE_COMPILE_S seconds (0.2 by default) and notes its start in $FAKE_COMPILE_LOG.

    GROUP_SIZE_M 64 never finishes compiling and GROUP_SIZE_M 16 kills its process, at once.
    """
    if COMPILE_LOG in os.environ:
        with open(os.environ[COMPILE_LOG], "a") as log:
            log.write(f"{problem.M} {config.short()}\n")
    if config.group_m == 64:
        time.sleep(600)
    if config.group_m == 16:
        os._exit(7)
    time.sleep(float(os.environ.get(COMPILE_S, "0.2")))
    return fake_compile(problem, config)


def visible_devices_compile(problem: Problem, config: Config) -> Measurement | None:
    """A compile that fails with the devices its process sees as the reason."""
    return Measurement("compile_error", reason=os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))


def failing_session(device_index: int) -> FakeSession:
    raise RuntimeError("CUDA error: no CUDA-capable device is detected")


def dying_session(device_index: int) -> FakeSession:
    os._exit(3)
