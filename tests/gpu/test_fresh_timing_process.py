"""Timing configs in a timing process that did not measure them, on a real CUDA device.

A timing process that measured a config launched it once eagerly; a fresh one (a rerun's, or the
one that replaced a crashed process) has not, and a graph that captured a kernel's first launch in
a process failed: Triton loads the kernel's module then, which CUDA refuses while a stream
captures. The confirmation round and the GPU check after a crash time exactly such configs.
Skipped without a CUDA GPU; each test takes well under a minute on an H100, compilation included.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch

from tests.gpu.crashing import CRASHES, CrashingSession
from tuner.benchmarkers import GpuBenchmarker
from tuner.space import STATUS, Config, Problem, config_of, default_config
from tuner.study import (
    CONFIRM_REASON,
    CONFIRM_ROUND,
    TuneOptions,
    confirmation_of,
    is_timed,
    make_storage,
    tune_problem,
)

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

REPO = Path(__file__).resolve().parents[2]
PROBLEM = Problem(N=512, K=1024, M=16)


def _study(url: str) -> optuna.Study:
    storage = make_storage(url)
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage)


def _timed_in_the_round(study: optuna.Study) -> set[str]:
    """The contenders of the study's confirmation round, which must have run: five latencies each."""
    round_ = confirmation_of(study.user_attrs)
    assert all(len(times) == 5 for times in round_[CONFIRM_ROUND].values()), round_[CONFIRM_REASON]
    return set(round_[CONFIRM_ROUND])


def test_a_study_extended_by_a_new_process_is_confirmed_in_it(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def run(trials: int) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "tuner.run", "--N", str(PROBLEM.N), "--K", str(PROBLEM.K), "--batch-size",
                   str(PROBLEM.M), "--trials", str(trials), "--storage", url, "--save-path", str(tmp_path / "cfg"),
                   "--baseline", "none", "--no-prior", "--seed", "0"]  # fmt: skip
        return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)

    first = run(2)
    assert first.returncode == 0, first.stderr
    earlier = [config_of(t) for t in _study(url).trials if is_timed(t) and t.user_attrs[STATUS] == "ok"]
    second = run(4)  # a new process: its timing process launched none of the first run's configs
    assert second.returncode == 0, second.stderr
    assert "extends 1 studies tuned to 2 earlier" in second.stdout
    study = _study(url)
    assert sum(1 for t in study.trials if is_timed(t)) == 4
    assert _timed_in_the_round(study) & {c.short() for c in earlier}  # the first run's configs among them


def test_a_config_that_crashes_the_timing_process_costs_one_trial(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    others = [Config(block_m=m, block_n=128, block_k=128, group_m=1, num_warps=4, num_stages=3) for m in (16, 64)]
    seeds = [default_config(PROBLEM.block_n, PROBLEM.block_k), others[0], CRASHES, others[1]]
    with GpuBenchmarker(compile_workers=4, timeout_s=60, session_factory=CrashingSession) as bench:
        result = tune_problem(make_storage(url), PROBLEM, bench, TuneOptions(trials=4, seed=0), seeds)
        assert bench.restarts == 1  # the crash; the GPU check after it and the round ran in the new process
    study = _study(url)
    assert result.timed == 4
    crashed = [t for t in study.trials if config_of(t) == CRASHES]
    assert [t.user_attrs[STATUS] for t in crashed] == ["crash"]
    assert "illegal memory access" in crashed[0].user_attrs["reason"]
    assert seeds[0].short() in _timed_in_the_round(study)  # the default, measured before the crash
