"""Where a run's wall time goes: seconds per category, summed as the run goes, and the line that ends it.

A timed config costs the GPU 10-20 ms, so a run whose GPU is idle most of the time is slow for
reasons elsewhere: waiting for compiles, the timing process's own work, process hand-offs, Optuna's
storage, the sampler, waits for other workers and for locks. The benchmarker and the study loop add
what they measured here; whatever no category claims is "other". Categories never overlap, so they
sum to at most the wall time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

GPU = "gpu"  # the device running timed kernels (CUDA-event time of every graph replay)
COMPILE_WAIT = "compile_wait"  # the run blocked on a compile it needed now
TIMING_OVERHEAD = "timing_overhead"  # the timing process outside replays: operands, reference, check, capture
HAND_OFFS = "hand_offs"  # timing-process starts and restarts, and requests in transit to and from it
STORAGE = "storage"  # the study loop's reads and writes of Optuna's storage, lock waits apart
SAMPLING = "sampling"  # choosing the next config and a study's warm starts
WORKER_WAITS = "worker_waits"  # pauses until other workers' earlier trials decide (see tuner.study)
LOCK_WAITS = "lock_waits"  # waits for the storage's write lock (SQLite's file lock, PostgreSQL's study row)
CONFIG_FILES = "config_files"  # merging results into config files, their lock included
# The coverage check after a shape's batch sizes are tuned, all of it (its kernels, compile waits and
# storage too): what the check costs a run. The line names it only where a check ran.
COVERAGE = "coverage"
# Categories only a device fills; a replay's line leaves them out.
DEVICE_CATEGORIES = (GPU, COMPILE_WAIT, TIMING_OVERHEAD, HAND_OFFS)
CATEGORIES = (*DEVICE_CATEGORIES, STORAGE, SAMPLING, WORKER_WAITS, LOCK_WAITS, CONFIG_FILES, COVERAGE)
LABELS = {  # how the closing line names each category
    COMPILE_WAIT: "compiles waited",
    TIMING_OVERHEAD: "timing overhead",
    HAND_OFFS: "hand-offs",
    STORAGE: "storage",
    SAMPLING: "sampler",
    WORKER_WAITS: "waits for other workers",
    LOCK_WAITS: "lock waits",
    CONFIG_FILES: "config files",
    COVERAGE: "coverage check",
}


class RunClock:
    """Seconds spent per category since the clock was made."""

    def __init__(self, *, now: Callable[[], float] = time.perf_counter) -> None:
        self._now = now
        self.started = now()
        self._seconds = dict.fromkeys(CATEGORIES, 0.0)
        self._claimed_by: str | None = None  # the category that takes every second of a block (claiming)

    def add(self, category: str, seconds: float) -> None:
        """Count seconds against a category (one of CATEGORIES); inside claiming(), against the claiming one."""
        if category not in self._seconds:
            raise ValueError(f"category must be one of {CATEGORIES}, but got {category!r}.")
        if not seconds >= 0:
            raise ValueError(f"seconds must be non-negative, but got {seconds}.")
        if self._claimed_by is None:  # else the block's own wall time counts these seconds
            self._seconds[category] += seconds

    @contextmanager
    def claiming(self, category: str) -> Iterator[None]:
        """Count the block's whole wall time against category, whatever its parts would count elsewhere.

        For a step whose cost a run wants to see as one figure (the coverage check times kernels,
        waits for compiles and writes the storage, like the search it follows).
        """
        if self._claimed_by is not None:
            raise ValueError(f"the clock is already claimed by {self._claimed_by!r}.")
        started = self._now()
        self.add(category, 0.0)  # an unknown category fails here, before the block
        self._claimed_by = category
        try:
            yield
        finally:
            self._claimed_by = None
            self.add(category, self._now() - started)

    @contextmanager
    def timing(self, category: str) -> Iterator[None]:
        """Count the time the block takes against category, also when it raises."""
        started = self._now()
        try:
            yield
        finally:
            self.add(category, self._now() - started)

    def seconds(self) -> dict[str, float]:
        """Each category's seconds so far."""
        return dict(self._seconds)

    def elapsed(self) -> float:
        """Wall seconds since the clock was made."""
        return self._now() - self.started

    def report(self, wall_s: float, *, label: str = "GPU", measurements: int = 0, device: bool = True) -> str:
        """The duty cycle (GPU time over wall time) and where the rest went, in one line.

        Given how many configs were measured, a second line divides GPU and wall time among them.
        Without a device (replay, which reads latencies instead of timing them) the line says how
        many configs were read and where the wall time went, with no GPU figures at all.
        """
        if not wall_s >= 0:
            raise ValueError(f"wall_s must be non-negative, but got {wall_s}.")
        s = self._seconds
        other = max(0.0, wall_s - sum(s.values()))
        shown = [c for c in CATEGORIES if c != GPU and (device or c not in DEVICE_CATEGORIES)]
        shown = [c for c in shown if c != COVERAGE or s[c] > 0]  # runs without a check read as they always did
        rest = ", ".join([*(f"{LABELS[c]} {s[c]:.1f} s" for c in shown), f"other {other:.1f} s"])
        if not device:
            line = f"{label}: {measurements} configs read from the landscape in {wall_s:.1f} s wall; {rest}"
            if measurements:
                line += f"\nper config ({measurements}): {1e3 * wall_s / measurements:.1f} ms of wall"
            return line
        duty = s[GPU] / wall_s if wall_s > 0 else 0.0
        # Below 10% a whole percent hides a factor of several, the very thing a profile looks for.
        line = f"{label} duty cycle {duty:.1%}" if duty < 0.1 else f"{label} duty cycle {duty:.0%}"
        line += f" (timed kernels {s[GPU]:.1f} s of {wall_s:.1f} s wall); {rest}"
        if measurements:
            per_gpu, per_wall = 1e3 * s[GPU] / measurements, 1e3 * wall_s / measurements
            line += f"\nper measured config ({measurements}): GPU {per_gpu:.1f} ms of {per_wall:.1f} ms wall"
        return line
