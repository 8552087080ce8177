"""What the tuner knows about GPUs by name: SM counts for replay, and measured roofline ceilings.

A run on a GPU reads its SM count and shared memory from the device itself (the timing session);
a replay knows only its landscape's device name, so its SM count comes from this table. The
ceilings are measured on the device (benchmarks/device_ceilings.py), not datasheet figures, and
each entry says where and when. A device missing here has no SM count in replay and no roofline.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Ceilings:
    """A device's roofline: its fastest dense 8-bit matrix product and its memory bandwidth, as measured."""

    tflops: float  # dense fp8 matrix product; int8 runs at the same tensor-core rate on Hopper
    tbps: float  # device-to-device copy, bytes read plus bytes written
    provenance: str

    def __post_init__(self) -> None:
        if not (self.tflops > 0 and self.tbps > 0):
            raise ValueError(f"ceilings must be positive, but got {self.tflops} TFLOP/s and {self.tbps} TB/s.")


@dataclass(frozen=True, kw_only=True)
class DeviceFacts:
    """One device, by the name torch gives it (spaces as underscores), as config files name it."""

    sm_count: int
    sm_count_provenance: str
    ceilings: Ceilings | None = None


KNOWN_DEVICES: dict[str, DeviceFacts] = {
    "NVIDIA_H100_80GB_HBM3": DeviceFacts(
        sm_count=132,
        sm_count_provenance="NVIDIA's H100 SXM5 specification; the project's H100 host, 2026-11",
        ceilings=Ceilings(
            tflops=1567.0,
            tbps=3.00,
            provenance="H100 80GB HBM3 host, 2026-11-13, as its notes record: a device-to-device copy moved "
            "3.00 TB/s; fp8 taken as twice the measured bf16 matrix product (798 TFLOP/s). Measured again "
            "2026-12-06 by benchmarks/device_ceilings.py: copy 3.01 TB/s, bf16 783 TFLOP/s (cuBLAS fp8 with "
            "per-tensor scales reached 1372 TFLOP/s)",
        ),
    ),
    # As measured on this workplace's H200 kind (nvidia-h200) and reported to the project, 2026-12-04;
    # not yet measured again with benchmarks/device_ceilings.py (the kind lent an H100 on 2026-12-06).
    "NVIDIA_H200": DeviceFacts(
        sm_count=132,
        sm_count_provenance="torch's multi_processor_count on the nvidia-h200 kind, as reported 2026-12-04",
        ceilings=Ceilings(
            tflops=1576.0,
            tbps=4.3,
            provenance="nvidia-h200 kind, as reported 2026-12-04: a device-to-device copy ~4.3 TB/s counting "
            "reads and writes; fp8 taken as twice the measured bf16 matrix product (~788 TFLOP/s)",
        ),
    ),
}


def sm_count(device_name: str) -> int | None:
    """The SM count of a device known by name, or None."""
    facts = KNOWN_DEVICES.get(device_name)
    return facts.sm_count if facts is not None else None


def ceilings(device_name: str) -> Ceilings | None:
    """The measured roofline of a device known by name, or None."""
    facts = KNOWN_DEVICES.get(device_name)
    return facts.ceilings if facts is not None else None
