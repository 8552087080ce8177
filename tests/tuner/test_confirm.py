"""The confirmation round: a pick is exported only when it beats SGLang's default by more than the noise."""

from __future__ import annotations

import optuna
import pytest

from tests.tuner.fake_gpu import LUCKY, LuckySession, fake_compile
from tests.tuner.synthetic import synthetic_rows
from tuner.analysis import summary_table
from tuner.benchmarkers import GpuBenchmarker, ReplayBenchmarker
from tuner.export import read_config_file
from tuner.space import Config, Problem, default_config
from tuner.study import (
    CONFIRM_REASON,
    CONFIRM_ROUND,
    CONFIRMED,
    TuneOptions,
    decide,
    make_storage,
    tune_problem,
    tune_shape,
)

DEFAULT = default_config(128, 128)
FAST = Config(block_m=16, block_n=64, block_k=128, group_m=1, num_warps=4, num_stages=4)
FILE_PICK = Config(block_m=32, block_n=64, block_k=128, group_m=1, num_warps=8, num_stages=3)


# (latencies per round, existing pick, expected export): what each case covers.
@pytest.mark.parametrize(
    ("times", "existing", "expected"),
    [
        ({FAST: [80, 81, 82], DEFAULT: [100, 101, 99]}, None, FAST),  # a clear win: 18 us against a 2 us spread
        ({FAST: [95, 99, 104], DEFAULT: [100, 98, 102]}, None, DEFAULT),  # 1 us faster, 9 us spread: luck
        ({FAST: [99, 100, 101], DEFAULT: [100, 100, 100]}, None, DEFAULT),  # a tie in the medians
        # the fastest is within the noise, but the existing file's pick clearly beats the default
        ({FAST: [89, 95, 99], FILE_PICK: [90, 90, 91], DEFAULT: [100, 100, 101]}, FILE_PICK, FILE_PICK),
        ({FAST: [96, 99, 102], FILE_PICK: [97, 99, 101], DEFAULT: [100, 100, 101]}, FILE_PICK, DEFAULT),  # neither
        ({FAST: [80, 80, 80], DEFAULT: []}, None, FAST),  # the default failed now: the fastest that ran
        ({DEFAULT: [70, 70, 71], FAST: [80, 80, 80]}, None, DEFAULT),  # the default is simply fastest
    ],
)
def test_decide(times, existing, expected):
    decision = decide(times, default=DEFAULT, existing=existing)
    assert decision.pick == expected
    assert decision.pick_us == sorted(times[expected])[1]  # the median of three rounds


def test_decide_needs_a_contender_that_ran():
    with pytest.raises(ValueError, match="no contender ran"):
        decide({DEFAULT: [], FAST: []}, default=DEFAULT, existing=None)


def test_a_lucky_config_does_not_win_on_the_gpu_path(tmp_path):
    # The search sees LUCKY once, 20% faster than it is; it truly runs at the default's speed. Over
    # the real process machinery with noisy timings, the round must export the default instead.
    problem = Problem(N=512, K=256, M=16)
    storage = make_storage(f"sqlite:///{tmp_path}/s.db")
    with GpuBenchmarker(compile_workers=1, timeout_s=5, session_factory=LuckySession, compile_fn=fake_compile) as bench:
        result = tune_problem(storage, problem, bench, TuneOptions(trials=2), seeds=[DEFAULT, LUCKY])
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    search_best = min((t for t in study.trials if t.value is not None), key=lambda t: t.value)
    assert search_best.params["BLOCK_SIZE_M"] == LUCKY.block_m  # the search was fooled
    assert result.best == DEFAULT
    assert study.user_attrs[CONFIRMED] == DEFAULT.as_sglang()
    assert "default" in study.user_attrs[CONFIRM_REASON]  # fastest by median, or kept within the noise
    assert set(study.user_attrs[CONFIRM_ROUND]) == {LUCKY.short(), DEFAULT.short()}
    assert all(len(times) == 5 for times in study.user_attrs[CONFIRM_ROUND].values())


def test_the_report_shows_the_round_and_the_file_holds_its_pick(tmp_path):
    # In replay the round re-reads the landscape: no spread, so the search's best is confirmed.
    bench = ReplayBenchmarker(synthetic_rows([(512, 1024)], (1, 256)))
    storage = make_storage(f"sqlite:///{tmp_path}/s.db")
    problems = [Problem(N=512, K=1024, M=M) for M in (1, 256)]
    results, (path,) = tune_shape(storage, bench, problems, TuneOptions(trials=8), tmp_path / "cfg")
    table = summary_table(storage).set_index("M")
    exported = read_config_file(path)
    for result in results:
        row = table.loc[result.problem.M]
        assert row.exported_config == exported[result.problem.M].short() == result.best.short()
        assert row.confirmed_us == pytest.approx(bench.latency(result.problem, result.best), abs=1e-3)
        assert row.confirm_reason != "not confirmed"
