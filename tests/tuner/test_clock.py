"""The run's time accounting and the line that ends a run, with made-up seconds and a clock the test sets."""

from __future__ import annotations

import pytest

from tuner.benchmarkers import COMPILE_WAIT, GPU, HAND_OFFS, STORAGE_SAMPLER, TIMING_OVERHEAD, RunClock


def _clock(**seconds: float) -> RunClock:
    clock = RunClock()
    for category, s in seconds.items():
        clock.add(category, s)
    return clock


def test_report_gives_the_duty_cycle_and_where_the_rest_went():
    clock = _clock(gpu=41.2, compile_wait=60.1, timing_overhead=20.3, hand_offs=1.0, storage_sampler=30.2)
    assert clock.report(180.0) == (
        "GPU duty cycle 23% (timed kernels 41.2 s of 180.0 s wall); compiles waited 60.1 s, "
        "timing overhead 20.3 s, hand-offs 1.0 s, storage+sampler 30.2 s, other 27.2 s"
    )


def test_report_divides_among_the_measured_configs_under_its_label():
    clock = _clock(gpu=5.76)
    lines = clock.report(115.2, label="GPU 3", measurements=576).splitlines()
    assert lines[0].startswith("GPU 3 duty cycle 5.0% (timed kernels 5.8 s of 115.2 s wall); ")  # < 10%: a decimal
    assert lines[1] == "per measured config (576): GPU 10.0 ms of 200.0 ms wall"


@pytest.mark.parametrize(
    ("seconds", "wall_s", "expected"),
    [
        ({}, 0.0, "GPU duty cycle 0.0% (timed kernels 0.0 s of 0.0 s wall)"),  # nothing ran
        ({STORAGE_SAMPLER: 3.0}, 2.0, "other 0.0 s"),  # more claimed than the wall: other is never negative
        ({GPU: 2.0}, 2.0, "GPU duty cycle 100% (timed kernels 2.0 s of 2.0 s wall)"),
    ],
)
def test_report_edges(seconds, wall_s, expected):
    assert expected in _clock(**seconds).report(wall_s)


def test_timing_counts_a_block_also_when_it_raises():
    ticks = iter([10.0, 11.0, 13.5, 20.0])
    clock = RunClock(now=lambda: next(ticks))
    with pytest.raises(RuntimeError), clock.timing(COMPILE_WAIT):
        raise RuntimeError("compile process died")
    assert clock.seconds()[COMPILE_WAIT] == pytest.approx(2.5)
    assert clock.elapsed() == pytest.approx(10.0)


def test_categories_add_up():
    clock = _clock(hand_offs=0.5)
    clock.add(HAND_OFFS, 0.25)
    clock.add(TIMING_OVERHEAD, 1.0)
    assert clock.seconds() == {GPU: 0.0, COMPILE_WAIT: 0.0, TIMING_OVERHEAD: 1.0, HAND_OFFS: 0.75, STORAGE_SAMPLER: 0.0}


@pytest.mark.parametrize(
    ("category", "seconds", "message"),
    [
        ("sampler", 1.0, "category must be one of"),  # not a category
        (GPU, -0.1, "seconds must be non-negative, but got -0.1"),
        (GPU, float("nan"), "seconds must be non-negative"),
    ],
)
def test_add_rejects_what_is_not_a_duration(category, seconds, message):
    with pytest.raises(ValueError, match=message):
        RunClock().add(category, seconds)
