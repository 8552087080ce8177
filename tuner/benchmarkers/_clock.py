"""Where a run's wall time goes: seconds per category, summed as the run goes, and the line that ends it.

A timed config costs the GPU 10-20 ms, so a run whose GPU is idle most of the time is slow for
reasons elsewhere: waiting for compiles, the timing process's own work, process hand-offs, Optuna's
storage and the sampler. The benchmarker and the study loop add what they measured here; whatever
no category claims is "other". Categories never overlap, so they sum to at most the wall time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

GPU = "gpu"  # the device running timed kernels (CUDA-event time of every graph replay)
COMPILE_WAIT = "compile_wait"  # the run blocked on a compile it needed now
TIMING_OVERHEAD = "timing_overhead"  # the timing process outside replays: operands, reference, check, capture
HAND_OFFS = "hand_offs"  # timing-process starts and restarts, and requests in transit to and from it
STORAGE_SAMPLER = "storage_sampler"  # the study loop outside the benchmarker: Optuna's storage, the sampler
CATEGORIES = (GPU, COMPILE_WAIT, TIMING_OVERHEAD, HAND_OFFS, STORAGE_SAMPLER)
_LABELS = {
    COMPILE_WAIT: "compiles waited",
    TIMING_OVERHEAD: "timing overhead",
    HAND_OFFS: "hand-offs",
    STORAGE_SAMPLER: "storage+sampler",
}


class RunClock:
    """Seconds spent per category since the clock was made."""

    def __init__(self, *, now: Callable[[], float] = time.perf_counter) -> None:
        self._now = now
        self.started = now()
        self._seconds = dict.fromkeys(CATEGORIES, 0.0)

    def add(self, category: str, seconds: float) -> None:
        """Count seconds against a category (one of CATEGORIES)."""
        if category not in self._seconds:
            raise ValueError(f"category must be one of {CATEGORIES}, but got {category!r}.")
        if not seconds >= 0:
            raise ValueError(f"seconds must be non-negative, but got {seconds}.")
        self._seconds[category] += seconds

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

    def report(self, wall_s: float, *, label: str = "GPU", measurements: int = 0) -> str:
        """The duty cycle (GPU time over wall time) and where the rest went, in one line.

        Given how many configs were measured, a second line divides GPU and wall time among them.
        """
        if not wall_s >= 0:
            raise ValueError(f"wall_s must be non-negative, but got {wall_s}.")
        s = self._seconds
        duty = s[GPU] / wall_s if wall_s > 0 else 0.0
        other = max(0.0, wall_s - sum(s.values()))
        rest = ", ".join([*(f"{_LABELS[c]} {s[c]:.1f} s" for c in CATEGORIES if c != GPU), f"other {other:.1f} s"])
        # Below 10% a whole percent hides a factor of several, the very thing a profile looks for.
        line = f"{label} duty cycle {duty:.1%}" if duty < 0.1 else f"{label} duty cycle {duty:.0%}"
        line += f" (timed kernels {s[GPU]:.1f} s of {wall_s:.1f} s wall); {rest}"
        if measurements:
            per_gpu, per_wall = 1e3 * s[GPU] / measurements, 1e3 * wall_s / measurements
            line += f"\nper measured config ({measurements}): GPU {per_gpu:.1f} ms of {per_wall:.1f} ms wall"
        return line
