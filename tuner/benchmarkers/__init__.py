"""Timing configs: the Benchmarker protocol and its two implementations, a GPU and a recorded landscape.

Also what is known of devices by name (KNOWN_DEVICES: SM counts for replay, roofline ceilings),
and the run's clock (RunClock): where a run's wall time goes, GPU time first, fed by the GPU
benchmarker and the study loop.

The study layer sees only the protocol, so the whole tuner runs without a GPU against a landscape
file. The GPU benchmarker imports CUDA code only inside its timing and compile processes.
"""

from __future__ import annotations

from tuner.benchmarkers._base import (
    COMPILE_FAILURES,
    COMPILE_TRIES,
    FAILURES,
    MEASURED,
    Benchmarker,
    Measurement,
    Status,
    compile_failed,
)
from tuner.benchmarkers._clock import (
    CATEGORIES,
    COMPILE_WAIT,
    CONFIG_FILES,
    COVERAGE,
    DEVICE_CATEGORIES,
    GPU,
    HAND_OFFS,
    LABELS,
    LOCK_WAITS,
    SAMPLING,
    STORAGE,
    TIMING_OVERHEAD,
    WORKER_WAITS,
    RunClock,
)
from tuner.benchmarkers._devices import KNOWN_DEVICES, Ceilings, DeviceFacts
from tuner.benchmarkers._gpu import GpuBenchmarker
from tuner.benchmarkers._landscape import HEADER, HOPPER_HEADER, LandscapeWriter, Row, read_rows
from tuner.benchmarkers._replay import ReplayBenchmarker
from tuner.benchmarkers._roofline import missing_ceilings, roofline_attrs, roofline_floor_us

__all__ = [
    "CATEGORIES",
    "COMPILE_FAILURES",
    "COMPILE_TRIES",
    "COMPILE_WAIT",
    "CONFIG_FILES",
    "COVERAGE",
    "DEVICE_CATEGORIES",
    "FAILURES",
    "GPU",
    "HAND_OFFS",
    "HEADER",
    "HOPPER_HEADER",
    "KNOWN_DEVICES",
    "LABELS",
    "LOCK_WAITS",
    "MEASURED",
    "SAMPLING",
    "STORAGE",
    "TIMING_OVERHEAD",
    "WORKER_WAITS",
    "Benchmarker",
    "Ceilings",
    "DeviceFacts",
    "GpuBenchmarker",
    "LandscapeWriter",
    "Measurement",
    "ReplayBenchmarker",
    "Row",
    "RunClock",
    "Status",
    "compile_failed",
    "missing_ceilings",
    "read_rows",
    "roofline_attrs",
    "roofline_floor_us",
]
