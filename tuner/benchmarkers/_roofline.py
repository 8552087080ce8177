"""Put a latency in context: TFLOP/s, GB/s and the share of the device's roofline floor it reaches."""

from __future__ import annotations

from tuner.space import Problem

# (8-bit dense peak in TFLOP/s, DRAM bandwidth in TB/s), as measured on the device, not datasheets.
# H100 80GB HBM3, 2026-11-13, as the GPU host's own notes record it: a device-to-device
# copy moved 3.00 TB/s counting reads and writes; the fp8 peak is estimated as twice the measured
# 798 TFLOP/s bf16 matrix product, 1567 TFLOP/s (int8 shares the fp8 tensor-core rate on Hopper).
PEAKS = {"NVIDIA_H100_80GB_HBM3": (1567.0, 3.00)}


def roofline_floor_us(problem: Problem, device_name: str) -> float | None:
    """max(2MNK / peak, bytes / bandwidth) in microseconds, or None for an unmeasured device."""
    if device_name not in PEAKS:
        return None
    tflops, tbps = PEAKS[device_name]
    return max(problem.flops / (tflops * 1e6), problem.min_bytes / (tbps * 1e6))


def roofline_attrs(problem: Problem, us: float, device_name: str) -> dict[str, float]:
    """What a reader of a trial wants next to its latency."""
    attrs = {"tflops": round(problem.flops / us / 1e6, 2), "gbps": round(problem.min_bytes / us / 1e3, 1)}
    floor = roofline_floor_us(problem, device_name)
    if floor is not None:
        attrs["roofline_pct"] = round(100 * floor / us, 1)
    return attrs
