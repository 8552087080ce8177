"""Device facts by name: SM counts in replay, measured roofline ceilings, and honest blanks for unknown devices."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.tuner.synthetic import DEVICE, synthetic_rows
from tuner.benchmarkers import KNOWN_DEVICES, ReplayBenchmarker, missing_ceilings, roofline_attrs, roofline_floor_us
from tuner.space import Problem

# N=7168, K=18432: memory-bound at M=1 (the weights, 132 MB), compute-bound at M=4096.
SMALL, LARGE = Problem(N=7168, K=18432, M=1), Problem(N=7168, K=18432, M=4096)


@pytest.mark.parametrize(
    ("device", "tflops", "tbps"),
    [("NVIDIA_H100_80GB_HBM3", 1567.0, 3.00), ("NVIDIA_H200", 1576.0, 4.3)],
)
def test_the_floor_is_the_slower_of_the_measured_ceilings(device, tflops, tbps):
    assert roofline_floor_us(SMALL, device) == pytest.approx(SMALL.min_bytes / (tbps * 1e6))
    assert roofline_floor_us(LARGE, device) == pytest.approx(LARGE.flops / (tflops * 1e6))
    floor = roofline_floor_us(SMALL, device)
    assert roofline_attrs(SMALL, 2 * floor, device)["roofline_pct"] == 50.0
    assert missing_ceilings(device) is None


def test_a_device_without_measured_ceilings_gets_no_share_and_the_reason():
    attrs = roofline_attrs(SMALL, 100.0, "NVIDIA_L40S")
    assert set(attrs) == {"tflops", "gbps"} and roofline_floor_us(SMALL, "NVIDIA_L40S") is None
    assert missing_ceilings("NVIDIA_L40S") == "no measured ceilings for NVIDIA_L40S"


def test_every_known_device_says_where_its_numbers_come_from():
    for name, facts in KNOWN_DEVICES.items():
        assert facts.sm_count > 0 and facts.sm_count_provenance, name
        assert facts.ceilings is None or facts.ceilings.provenance, name


@pytest.mark.parametrize(("device", "sm_count"), [("NVIDIA_H200", 132), (DEVICE, None)])
def test_replay_knows_the_sm_count_of_the_landscapes_device_by_name(device, sm_count):
    rows = [replace(row, device=device) for row in synthetic_rows([(256, 512)], [1])]
    assert ReplayBenchmarker(rows).sm_count == sm_count
