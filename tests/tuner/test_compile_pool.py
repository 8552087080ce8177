"""The compile queue behind the GPU benchmarker: time-outs from a job's own start, no job lost, measurements first.

The compile processes are real (spawned), their compiler is injected: tests.tuner.fake_gpu's
logged_compile notes each job as it starts, so the tests see which configs were compiled, and when.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.tuner.fake_compiler import COMPILE_LOG, COMPILE_S, logged_compile, visible_devices_compile
from tests.tuner.fake_gpu import FakeSession, dying_session, failing_session
from tuner.benchmarkers import GpuBenchmarker
from tuner.space import Config, Problem, search_space
from tuner.stopping import TuningError

PROBLEM = Problem(N=512, K=256, M=16)
HEALTHY = [c for c in search_space(128) if c.group_m in (1, 32)]  # logged_compile compiles these
HANGS = Config(block_m=64, block_n=128, block_k=128, group_m=64, num_warps=4, num_stages=3)
DIES = Config(block_m=64, block_n=128, block_k=128, group_m=16, num_warps=4, num_stages=3)


@pytest.fixture
def log(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "compiles.log"
    path.touch()
    monkeypatch.setenv(COMPILE_LOG, str(path))  # the compile processes inherit it when they start
    return path


def compiled(log: Path) -> list[str]:
    """The configs whose compile started, in order."""
    return [line.split(" ", 1)[1] for line in log.read_text().splitlines()]


def bench(**kwargs) -> GpuBenchmarker:
    return GpuBenchmarker(session_factory=FakeSession, compile_fn=logged_compile, **kwargs)


def wait_for(condition, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_hung_compile_times_out_from_its_own_start_not_after_the_queue(log):
    # Was timeout x queued / processes: 2 s x 21 / 2 = 21 s here (41 s for 2 s in a real run).
    others = HEALTHY[:20]
    with bench(compile_workers=2, timeout_s=2) as b:
        b.prepare(PROBLEM, [HANGS, *others])
        started = time.monotonic()
        hung = b.measure(PROBLEM, HANGS)
        waited = time.monotonic() - started
        assert hung.status == "compile_timeout" and hung.reason == "compilation took over 2 s"
        assert waited < 2 + 3  # its 2 s, plus starting the processes on a busy machine
        for config in others:
            assert b.measure(PROBLEM, config).status == "ok"
    assert sorted(compiled(log)) == sorted(c.short() for c in [HANGS, *others])  # each once


def test_the_jobs_queued_behind_hung_compiles_still_compile_ahead(log):
    # Both processes hang; a time-out used to drop every queued job, which then compiled one at a
    # time, on demand. They compile ahead as before, in fresh processes.
    others = HEALTHY[:6]
    hangs_too = Config(block_m=32, block_n=128, block_k=128, group_m=64, num_warps=4, num_stages=3)
    with bench(compile_workers=2, timeout_s=1.5) as b:
        b.prepare(PROBLEM, [HANGS, hangs_too, *others])
        assert b.measure(PROBLEM, HANGS).status == "compile_timeout"
        wait_for(lambda: len(compiled(log)) == 2 + len(others))  # nothing asks for them: compiled ahead
        assert all(b.measure(PROBLEM, config).compile_s is not None for config in others)
    assert sorted(compiled(log)) == sorted(c.short() for c in [HANGS, hangs_too, *others])


def test_a_dead_compile_process_costs_its_own_config_only(log):
    others = HEALTHY[:6]
    with bench(compile_workers=2, timeout_s=20) as b:
        b.prepare(PROBLEM, [DIES, *others])
        died = b.measure(PROBLEM, DIES)
        assert died.status == "compile_crash" and died.reason == "the compile process died (status 7)"
        assert [b.measure(PROBLEM, config).status for config in others] == ["ok"] * len(others)
    assert sorted(compiled(log)) == sorted(c.short() for c in [DIES, *others])  # none compiled twice


@pytest.mark.parametrize(("config", "status"), [(DIES, "compile_crash"), (HANGS, "compile_timeout")])
def test_a_lost_compile_is_told_once_then_compiled_anew(log, config, status):
    # A compile process killed by a busy host's OOM killer, or one that took too long, says nothing
    # of the config yet: it used to be kept as the config's outcome for the rest of the run.
    with bench(compile_workers=1, timeout_s=1.5) as b:
        assert [b.measure(PROBLEM, config).status for _ in range(2)] == [status, status]
    assert compiled(log) == [config.short()] * 2


def test_a_measurement_goes_before_the_configs_compiled_ahead(log, monkeypatch):
    monkeypatch.setenv(COMPILE_S, "1.0")
    ahead, wanted = HEALTHY[:8], HEALTHY[8]
    with bench(compile_workers=1, timeout_s=20) as b:
        b.prepare(PROBLEM, ahead)
        wait_for(lambda: compiled(log))  # the first is compiling
        started = time.monotonic()
        assert b.measure(PROBLEM, wanted).status == "ok"
        assert time.monotonic() - started < 4  # the one running, then this one; not the 7 queued (8 s)
        assert compiled(log)[:2] == [ahead[0].short(), wanted.short()]


def test_a_new_problems_configs_replace_the_lookahead_not_started(log, monkeypatch):
    monkeypatch.setenv(COMPILE_S, "0.5")
    other_m = Problem(N=512, K=256, M=1)  # M = 1 is specialized apart: other compiles than M = 16's
    with bench(compile_workers=1, timeout_s=20) as b:
        b.prepare(other_m, HEALTHY[:6])
        wait_for(lambda: compiled(log))
        b.prepare(PROBLEM, HEALTHY[:2], replace=True)
        assert [b.measure(PROBLEM, config).status for config in HEALTHY[:2]] == ["ok", "ok"]
        time.sleep(1.0)  # what was dropped would have started by now
    lines = log.read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["1", "16", "16"]  # the one already running, then M = 16's


@pytest.mark.parametrize(("visible", "expected"), [(None, "1"), ("3,5", "5")], ids=["unset", "set"])
def test_compile_processes_compile_for_the_benchmarkers_device(monkeypatch, visible, expected):
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    with GpuBenchmarker(device_index=1, compile_workers=1, session_factory=FakeSession,
                        compile_fn=visible_devices_compile) as b:  # fmt: skip
        assert b.measure(PROBLEM, HEALTHY[0]).reason == expected  # device 1 alone, as the parent numbers it


@pytest.mark.parametrize(
    ("factory", "line"),
    [
        (failing_session, "the GPU timing process could not start on device 0: RuntimeError: CUDA error: no "
                          "CUDA-capable device is detected"),
        (dying_session, "the GPU timing process exited (status 3) before it was ready; its own error, if it "
                        "wrote one, is above."),
    ],
    ids=["raises", "dies"],
)  # fmt: skip
def test_a_timing_process_that_cannot_start_says_why_in_one_line(factory, line):
    with pytest.raises(TuningError) as failed:  # was a bare EOFError
        GpuBenchmarker(compile_workers=1, session_factory=factory, compile_fn=logged_compile)
    assert str(failed.value) == line
