"""Stand-ins for the compiler that the GPU benchmarker's compile processes run: fails, hangs and deaths.

Module-level so spawn-started processes can import it, and apart from tests.tuner.fake_gpu so that
they start without importing torch or Triton, as they start in a run (the compiler loads on first use).
"""

from __future__ import annotations

import os
import signal
import time

from tuner.benchmarkers import Measurement
from tuner.space import Config, Problem


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


# The file busy_host_compile creates when the OOM killer takes its process, so that it happens once.
KILLED_FILE = "FAKE_COMPILE_KILLED"


def busy_host_compile(problem: Problem, config: Config) -> Measurement | None:
    """fake_compile on a busy host: the OOM killer takes the process of the first 2-stage config's compile
    (SIGKILL, noted in $FAKE_COMPILE_KILLED), and every 4-stage config's compile kills its process."""
    if config.num_stages == 4:
        os._exit(7)
    if config.num_stages == 2 and not os.path.exists(os.environ[KILLED_FILE]):
        open(os.environ[KILLED_FILE], "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
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
