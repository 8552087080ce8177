"""The run's time accounting and the line that ends a run, with made-up seconds and a clock the test sets."""

from __future__ import annotations

import pytest

from tuner.benchmarkers import (
    CATEGORIES,
    COMPILE_WAIT,
    COVERAGE,
    GPU,
    HAND_OFFS,
    STORAGE,
    TIMING_OVERHEAD,
    RunClock,
)


def _clock(**seconds: float) -> RunClock:
    clock = RunClock()
    for category, s in seconds.items():
        clock.add(category, s)
    return clock


def test_report_gives_the_duty_cycle_and_where_the_rest_went():
    clock = _clock(gpu=41.2, compile_wait=60.1, timing_overhead=20.3, hand_offs=1.0, storage=20.2, sampling=6.0,
                   worker_waits=2.5, lock_waits=0.5, config_files=1.0)  # fmt: skip
    assert clock.report(180.0) == (
        "GPU duty cycle 23% (timed kernels 41.2 s of 180.0 s wall); compiles waited 60.1 s, "
        "timing overhead 20.3 s, hand-offs 1.0 s, storage 20.2 s, sampler 6.0 s, waits for other workers 2.5 s, "
        "lock waits 0.5 s, config files 1.0 s, other 27.2 s"
    )


def test_a_replay_report_has_no_gpu_figures():
    # Replay reads latencies from a landscape: a duty cycle of 0.0% would say the GPU idled.
    clock = _clock(storage=1.5, sampling=0.25)
    lines = clock.report(2.0, label="replay worker 0", measurements=200, device=False).splitlines()
    assert lines == [
        "replay worker 0: 200 configs read from the landscape in 2.0 s wall; storage 1.5 s, sampler 0.2 s, "
        "waits for other workers 0.0 s, lock waits 0.0 s, config files 0.0 s, other 0.2 s",
        "per config (200): 10.0 ms of wall",
    ]


def test_report_divides_among_the_measured_configs_under_its_label():
    clock = _clock(gpu=5.76)
    lines = clock.report(115.2, label="GPU 3", measurements=576).splitlines()
    assert lines[0].startswith("GPU 3 duty cycle 5.0% (timed kernels 5.8 s of 115.2 s wall); ")  # < 10%: a decimal
    assert lines[1] == "per measured config (576): GPU 10.0 ms of 200.0 ms wall"


@pytest.mark.parametrize(
    ("seconds", "wall_s", "expected"),
    [
        ({}, 0.0, "GPU duty cycle 0.0% (timed kernels 0.0 s of 0.0 s wall)"),  # nothing ran
        ({STORAGE: 3.0}, 2.0, "other 0.0 s"),  # more claimed than the wall: other is never negative
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
    assert clock.seconds() == {**dict.fromkeys(CATEGORIES, 0.0), TIMING_OVERHEAD: 1.0, HAND_OFFS: 0.75}


@pytest.mark.parametrize(
    ("category", "seconds", "message"),
    [
        ("naps", 1.0, "category must be one of"),  # not a category
        (GPU, -0.1, "seconds must be non-negative, but got -0.1"),
        (GPU, float("nan"), "seconds must be non-negative"),
    ],
)
def test_add_rejects_what_is_not_a_duration(category, seconds, message):
    with pytest.raises(ValueError, match=message):
        RunClock().add(category, seconds)


def test_a_claimed_block_counts_its_whole_wall_time_once_against_its_category():
    # The coverage check times kernels and writes the storage like the search before it: its cost is
    # one figure, and what its parts add meanwhile is not counted twice.
    ticks = iter([0.0, 10.0, 14.5])  # the clock made; the claim's start; its end
    clock = RunClock(now=lambda: next(ticks))
    clock.add(GPU, 3.0)
    with clock.claiming(COVERAGE):
        clock.add(GPU, 2.0)
        clock.add(STORAGE, 1.0)
    assert clock.seconds() == {**dict.fromkeys(CATEGORIES, 0.0), GPU: 3.0, COVERAGE: 4.5}


def test_a_claim_inside_a_claim_and_an_unknown_category_are_refused():
    clock = RunClock()
    with pytest.raises(ValueError, match="category must be one of"), clock.claiming("naps"):
        pass
    with clock.claiming(COVERAGE), pytest.raises(ValueError, match="already claimed by 'coverage'"):
        with clock.claiming(COVERAGE):
            pass
    clock.add(GPU, 1.0)  # the claim has ended: categories count again
    assert clock.seconds()[GPU] == 1.0


def test_the_line_names_the_coverage_check_only_where_one_ran():
    assert "coverage check" not in _clock(gpu=1.0).report(10.0)
    line = _clock(gpu=1.0, coverage=2.5).report(10.0)
    assert "config files 0.0 s, coverage check 2.5 s, other 6.5 s" in line
