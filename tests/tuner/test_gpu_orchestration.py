"""The GPU benchmarker's process machinery with the GPU side injected: restarts, time-outs, compile failures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.tuner.fake_compiler import KILLED_FILE, busy_host_compile, fake_compile
from tests.tuner.fake_gpu import (
    HEALTHY_LAUNCHES,
    LAUNCHES_FILE,
    DefaultCrashesSession,
    DyingSession,
    FakeSession,
    fake_gpu_s,
    fake_latency,
)
from tests.tuner.stoppable import ctrl_c_as_in_a_terminal
from tuner.benchmarkers import COMPILE_WAIT, GPU, HAND_OFFS, TIMING_OVERHEAD, GpuBenchmarker, RunClock
from tuner.export import read_config_file
from tuner.space import COMPILE_S, REASON, STATUS, TIMED, Config, Problem, config_of, default_config
from tuner.study import (
    CONFIRM_REASON,
    CONFIRM_ROUND,
    GPU_FAILURE,
    GpuFailure,
    TuneOptions,
    confirmation_of,
    is_timed,
    make_storage,
    tune_problem,
    tune_shape,
)

PROBLEM = Problem(N=512, K=256, M=16)


@pytest.fixture(scope="module")
def bench():
    with GpuBenchmarker(compile_workers=1, timeout_s=5, session_factory=FakeSession, compile_fn=fake_compile) as b:
        yield b


def test_reports_device_of_the_timing_process(bench):
    assert (bench.device_name, bench.shared_memory_limit, bench.sm_count) == ("Fake_GPU", 232448, 132)


def test_ok_measurement_carries_latency_and_compile_time(bench):
    config = Config(block_m=64, block_n=128, block_k=128, group_m=1, num_warps=4, num_stages=3)
    result = bench.measure(PROBLEM, config)
    assert result.status == "ok" and result.us == pytest.approx(fake_latency(PROBLEM, config))
    assert result.compile_s is not None and result.compile_s >= 0


def test_compile_failure_is_recorded_without_timing(bench):
    result = bench.measure(PROBLEM, Config(block_m=64, block_n=256, block_k=128, group_m=1, num_warps=4, num_stages=2))
    assert result.status == "compile_error" and "PTXAS" in result.reason


@pytest.mark.parametrize(
    ("config", "status"),
    [
        (
            Config(block_m=256, block_n=64, block_k=128, group_m=1, num_warps=8, num_stages=5),
            "crash",
        ),  # the process exits
        (
            Config(block_m=128, block_n=64, block_k=128, group_m=1, num_warps=8, num_stages=4),
            "crash",
        ),  # an unclassified CUDA error
        (
            Config(block_m=128, block_n=64, block_k=128, group_m=1, num_warps=8, num_stages=5),
            "timeout",
        ),  # the process hangs
    ],
)
def test_a_config_that_kills_or_hangs_costs_one_measurement(bench, config, status):
    restarts = bench.restarts
    assert bench.measure(PROBLEM, config).status == status
    assert bench.restarts == restarts + 1
    healthy = Config(block_m=32, block_n=64, block_k=128, group_m=1, num_warps=4, num_stages=3)
    assert bench.measure(PROBLEM, healthy).status == "ok"


def test_prune_threshold_reaches_the_timing_process(bench):
    config = Config(block_m=16, block_n=32, block_k=128, group_m=1, num_warps=4, num_stages=5)
    result = bench.measure(PROBLEM, config, prune_above_us=1.0)
    assert result.status == "pruned" and result.us == pytest.approx(fake_latency(PROBLEM, config))


def test_the_clock_gets_the_gpu_time_the_session_reported_and_where_the_rest_went():
    configs = [Config(block_m=m, block_n=64, block_k=128, group_m=1, num_warps=4, num_stages=3) for m in (16, 32, 64)]
    clock = RunClock()
    with GpuBenchmarker(
        compile_workers=1, timeout_s=5, session_factory=FakeSession, compile_fn=fake_compile, clock=clock
    ) as b:
        for config in configs:
            assert b.measure(PROBLEM, config).status == "ok"
        b.retime(PROBLEM, configs, rounds=2)  # the confirmation round's timings count too
    seconds = clock.seconds()
    # One measurement and two retimings each: GPU time is exactly what the session reported.
    assert seconds[GPU] == pytest.approx(3 * sum(fake_gpu_s(fake_latency(PROBLEM, c)) for c in configs))
    assert seconds[COMPILE_WAIT] > 0  # nothing was compiled ahead: each measurement waited for its own
    assert seconds[HAND_OFFS] > 0  # the timing process's start, at least
    # The timing process's own work besides the "GPU" (the session's calls, the answer's pickling).
    assert seconds[TIMING_OVERHEAD] > 0
    assert sum(seconds.values()) <= clock.elapsed()


def test_the_tuner_runs_end_to_end_on_the_gpu_path(tmp_path):
    # tuner.study over the real process machinery (compile pool, timing process, prune threshold,
    # compile-ahead), with the GPU side injected: what `python -m tuner.run` does on a GPU.
    problems = [Problem(N=512, K=256, M=M) for M in (1, 64)]
    storage = make_storage(f"sqlite:///{tmp_path}/s.db")
    with GpuBenchmarker(compile_workers=2, timeout_s=5, session_factory=FakeSession, compile_fn=fake_compile) as b:
        results, (path,) = tune_shape(storage, b, problems, TuneOptions(trials=12, seed=0), tmp_path / "cfg")
    assert [r.timed for r in results] == [12, 12]
    for result in results:
        assert result.best_us == pytest.approx(fake_latency(result.problem, result.best), abs=1e-3)  # stored to ns
        assert result.best.fits(FakeSession.shared_memory_limit)
    assert set(read_config_file(path)) == {1, 64}
    for summary in optuna.get_all_study_summaries(storage):
        trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
        assert summary.study_name.rsplit("_", 1)[0].endswith("_Fake_GPU")
        assert all(t.user_attrs.get(COMPILE_S) is not None for t in trials if t.state == TrialState.COMPLETE)


def test_a_gpu_that_dies_stops_the_run_and_spends_no_budget_on_it(tmp_path, monkeypatch):
    # After 3 measurements every launch fails. Counted as the configs' crashes, they would spend
    # the budget on nothing and leave the study unusable for good: the run must stop at the first
    # one (the known-good config fails right after it), record it as not measured, and a rerun on
    # a healthy GPU must finish the study with the full budget of real measurements.
    monkeypatch.setenv(LAUNCHES_FILE, str(tmp_path / "launches"))
    storage = make_storage(f"sqlite:///{tmp_path}/s.db")
    seeds = [
        default_config(128, 128),
        Config(block_m=32, block_n=64, block_k=128, group_m=1, num_warps=4, num_stages=3),
    ]
    options = TuneOptions(trials=8, seed=0)
    with GpuBenchmarker(compile_workers=1, timeout_s=5, session_factory=DyingSession, compile_fn=fake_compile) as b:
        with pytest.raises(GpuFailure, match=r"the GPU stopped running kernels .* rerun the same command"):
            tune_problem(storage, PROBLEM, b, options, seeds)
    (summary,) = optuna.get_all_study_summaries(storage)
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
    assert sum(1 for t in trials if is_timed(t)) == HEALTHY_LAUNCHES
    failed = trials[-1]
    assert failed.state == TrialState.FAIL and failed.user_attrs[STATUS] == GPU_FAILURE
    assert failed.user_attrs[TIMED] is False and "known to run, failed too" in failed.user_attrs[REASON]
    with GpuBenchmarker(compile_workers=1, timeout_s=5, session_factory=FakeSession, compile_fn=fake_compile) as b:
        result = tune_problem(storage, PROBLEM, b, options, seeds)
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
    assert result.timed == 8 == sum(1 for t in trials if is_timed(t))
    assert not [t for t in trials if is_timed(t) and t.user_attrs[STATUS] in ("crash", "timeout")]


def _trials(storage) -> list:
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage).trials


def _study(storage) -> optuna.Study:
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage)


class _CountedRetimes(GpuBenchmarker):
    """The GPU benchmarker, counting its retimes: the confirmation round's and the GPU checks'."""

    retimes = 0

    def retime(self, problem, configs, *, rounds):
        self.retimes += 1
        return super().retime(problem, configs, rounds=rounds)


CRASHES = Config(block_m=256, block_n=64, block_k=128, group_m=1, num_warps=8, num_stages=5)  # FakeSession's


def test_a_config_that_crashes_the_timing_process_costs_one_trial_and_the_round_still_runs(tmp_path):
    # The crash replaces the timing process; the new one has launched none of the configs measured
    # before it. The GPU check after the crash and the confirmation round time such configs in CUDA
    # graphs: a graph that held a kernel's first launch in the process failed (CUDA refuses the
    # module load while a stream captures), which stopped a healthy run as a dead GPU.
    storage = make_storage(f"sqlite:///{tmp_path}/s.db")
    small = [Config(block_m=m, block_n=64, block_k=128, group_m=1, num_warps=4, num_stages=3) for m in (16, 32)]
    seeds = [default_config(128, 128), small[0], CRASHES, small[1]]
    with GpuBenchmarker(compile_workers=1, timeout_s=5, session_factory=FakeSession, compile_fn=fake_compile) as b:
        result = tune_problem(storage, PROBLEM, b, TuneOptions(trials=4, seed=0), seeds)
        assert b.restarts == 1
    trials = _trials(storage)
    assert result.timed == 4 and [t.user_attrs[STATUS] for t in trials].count("crash") == 1
    round_ = confirmation_of(_study(storage).user_attrs)
    ran = [c for c in seeds if c != CRASHES]
    assert set(round_[CONFIRM_ROUND]) == {c.short() for c in ran}
    assert all(len(times) == 5 for times in round_[CONFIRM_ROUND].values()), round_[CONFIRM_REASON]
    assert result.best == min(ran, key=lambda c: fake_latency(PROBLEM, c))


def test_a_crashed_default_is_not_checked_with_itself(tmp_path):
    # SGLang's default is a study's first config when nothing else is known; when it crashed there,
    # the GPU check timed the default again, which crashed again and stopped a healthy run.
    storage = make_storage(f"sqlite:///{tmp_path}/s.db")
    seeds = [default_config(128, 128), Config(block_m=16, block_n=64, block_k=128, group_m=1, num_warps=4,
                                              num_stages=3)]  # fmt: skip
    with _CountedRetimes(compile_workers=1, timeout_s=5, session_factory=DefaultCrashesSession,
                         compile_fn=fake_compile) as b:  # fmt: skip
        result = tune_problem(storage, PROBLEM, b, TuneOptions(trials=3, seed=0), seeds)
        assert (b.restarts, b.retimes) == (1, 2)  # the crash; the GPU check, then the confirmation round
    first = _trials(storage)[0]
    assert (first.params["BLOCK_SIZE_M"], first.user_attrs[STATUS]) == (64, "crash")  # the default's, counted
    assert result.timed == 3 and result.best != default_config(128, 128)


def test_a_lost_compile_process_gives_its_claim_back_and_is_no_gpu_failure(tmp_path, monkeypatch):
    # The OOM killer of a busy host takes the compile of ONCE's config once; ALWAYS's compile kills
    # its process every time. Read as a GPU crash, the first spent a measurement, ran the GPU check
    # and stayed failed for the run. Now it gives its claim back and is timed when proposed again;
    # ALWAYS is tried twice in all, then counted as the config's own compile_error.
    monkeypatch.setenv(KILLED_FILE, str(tmp_path / "killed"))
    storage = make_storage(f"sqlite:///{tmp_path}/s.db")
    once = Config(block_m=32, block_n=64, block_k=128, group_m=1, num_warps=4, num_stages=2)
    always = Config(block_m=32, block_n=128, block_k=128, group_m=1, num_warps=4, num_stages=4)
    seeds = [default_config(128, 128), once, always, replace(once, block_m=16, num_stages=3)]
    with _CountedRetimes(compile_workers=1, timeout_s=5, session_factory=FakeSession,
                         compile_fn=busy_host_compile) as b:  # fmt: skip
        result = tune_problem(storage, PROBLEM, b, TuneOptions(trials=4, seed=0), seeds)
        assert (b.restarts, b.retimes) == (0, 1)  # no timing process lost, no GPU check: the round alone
    assert (tmp_path / "killed").exists()
    trials = _trials(storage)
    assert result.timed == 4 == sum(1 for t in trials if is_timed(t))

    def outcomes(config):
        return [(t.user_attrs[STATUS], is_timed(t)) for t in trials if config_of(t) == config]

    assert outcomes(once) == [("compile_crash", False), ("ok", True)]
    assert outcomes(always) == [("compile_crash", False), ("compile_error", True)]
    final = next(t for t in trials if config_of(t) == always and is_timed(t))
    assert final.user_attrs[REASON] == "the compile process died (status 7) (on each of 2 tries)"


# A process that owns a benchmarker whose compile processes have finished their jobs and wait for more.
_IDLE_POOL = """
import multiprocessing, signal, time
from tests.tuner.fake_compiler import fake_compile
from tests.tuner.fake_gpu import FakeSession
from tuner.benchmarkers import GpuBenchmarker
from tuner.space import Problem, search_space

def ignores_ctrl_c(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            mask = next(line for line in status if line.startswith("SigIgn:")).split()[1]
    except OSError:  # gone since it was listed
        return False
    return bool(int(mask, 16) & 1 << (signal.SIGINT - 1))

with GpuBenchmarker(compile_workers=2, timeout_s=5, session_factory=FakeSession, compile_fn=fake_compile) as bench:
    problem, configs = Problem(N=512, K=256, M=16), search_space(128)[:4]
    bench.prepare(problem, configs)
    for config in configs:
        bench.measure(problem, config)
    # Both compile processes are up: a process still starting takes Ctrl-C before it can ignore it.
    deadline = time.monotonic() + 60
    while sum(ignores_ctrl_c(child.pid) for child in multiprocessing.active_children()) < 2:
        assert time.monotonic() < deadline, "the compile processes never came up"
        time.sleep(0.05)
    try:
        print("ready", flush=True)
        time.sleep(60)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads signal masks from Linux's /proc")
def test_ctrl_c_is_left_to_the_parent_by_the_compile_processes():
    # Ctrl-C reaches every process of the terminal; an idle compile process used to print a traceback.
    repo = Path(__file__).resolve().parents[2]
    owner = subprocess.Popen([sys.executable, "-c", _IDLE_POOL], cwd=repo, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True,
                             preexec_fn=ctrl_c_as_in_a_terminal)  # fmt: skip
    try:
        assert owner.stdout.readline().strip() == "ready", owner.stderr.read()
        os.killpg(owner.pid, signal.SIGINT)
        out, err = owner.communicate(timeout=60)
    finally:
        owner.kill()
    assert (owner.returncode, out.strip()) == (0, "interrupted"), err
    assert "Traceback" not in err, err


def test_a_timing_process_that_cannot_even_be_started_keeps_its_own_error():
    # Spawning pickles the session factory; a lambda cannot be. Cleaning up after it used to raise
    # "can only join a started process" in its place.
    with pytest.raises(AttributeError, match="Can.t pickle local object"):
        GpuBenchmarker(compile_workers=1, session_factory=lambda index: FakeSession(index), compile_fn=fake_compile)
