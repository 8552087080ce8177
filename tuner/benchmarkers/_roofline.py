"""Put a latency in context: TFLOP/s, GB/s and the share of the device's roofline floor it reaches.

The floor uses the device's measured ceilings (tuner.benchmarkers._devices); a device without
them gets no roofline share, and missing_ceilings says so in words a report can show.
"""

from __future__ import annotations

from tuner.benchmarkers._devices import ceilings
from tuner.space import Problem


def roofline_floor_us(problem: Problem, device_name: str) -> float | None:
    """max(2MNK / peak, bytes / bandwidth) in microseconds, or None for a device without measured ceilings."""
    peak = ceilings(device_name)
    if peak is None:
        return None
    return max(problem.flops / (peak.tflops * 1e6), problem.min_bytes / (peak.tbps * 1e6))


def missing_ceilings(device_name: str) -> str | None:
    """Why a device's latencies have no roofline share, or None where they have one."""
    return None if ceilings(device_name) is not None else f"no measured ceilings for {device_name}"


def roofline_attrs(problem: Problem, us: float, device_name: str) -> dict[str, float]:
    """What a reader of a trial wants next to its latency (roofline_pct only where the ceilings are known)."""
    attrs = {"tflops": round(problem.flops / us / 1e6, 2), "gbps": round(problem.min_bytes / us / 1e3, 1)}
    floor = roofline_floor_us(problem, device_name)
    if floor is not None:
        attrs["roofline_pct"] = round(100 * floor / us, 1)
    return attrs
