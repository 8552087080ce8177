"""The confirmation round: a pick is exported only when it beats SGLang's default by more than the noise."""

from __future__ import annotations

import optuna
import pytest

import tuner.cli.run
from tests.tuner.fake_compiler import fake_compile
from tests.tuner.fake_gpu import HEALTHY_LAUNCHES, LAUNCHES_FILE, LUCKY, DyingSession, FakeSession, LuckySession
from tests.tuner.synthetic import synthetic_rows, write_landscape
from tuner.analysis import summary_table
from tuner.benchmarkers import GpuBenchmarker, ReplayBenchmarker
from tuner.export import read_config_file
from tuner.space import Config, Problem, default_config
from tuner.study import (
    CONFIRM_BASIS,
    CONFIRM_DEFAULT_US,
    CONFIRM_REASON,
    CONFIRM_ROUND,
    CONFIRMATION,
    CONFIRMED,
    CONFIRMED_US,
    ROUND_FAILED,
    TuneOptions,
    best,
    confirmation_of,
    decide,
    make_storage,
    study_name,
    tune_problem,
    tune_shape,
)

DEFAULT = default_config(128, 128)
FAST = Config(block_m=16, block_n=64, block_k=128, group_m=1, num_warps=4, num_stages=4)
FILE_PICK = Config(block_m=32, block_n=64, block_k=128, group_m=1, num_warps=8, num_stages=3)
BASELINE = Config(block_m=64, block_n=32, block_k=128, group_m=32, num_warps=4, num_stages=4)


# (latencies per round, references beside the default, expected export): what each case covers.
@pytest.mark.parametrize(
    ("times", "references", "expected"),
    [
        ({FAST: [80, 81, 82], DEFAULT: [100, 101, 99]}, [], FAST),  # a clear win: 18 us against a 2 us spread
        ({FAST: [95, 99, 104], DEFAULT: [100, 98, 102]}, [], DEFAULT),  # 1 us faster, 9 us spread: luck
        ({FAST: [99, 100, 101], DEFAULT: [100, 100, 100]}, [], DEFAULT),  # a tie in the medians
        # the fastest is within the noise, but the existing file's pick clearly beats the default
        ({FAST: [89, 95, 99], FILE_PICK: [90, 90, 91], DEFAULT: [100, 100, 101]}, [FILE_PICK], FILE_PICK),
        # all within the noise: the fastest reference by median is kept, the file's pick here (before
        # baselines the default was kept unless a reference clearly beat it)
        ({FAST: [96, 99, 102], FILE_PICK: [97, 99, 101], DEFAULT: [100, 100, 101]}, [FILE_PICK], FILE_PICK),
        ({FAST: [80, 80, 80], DEFAULT: []}, [], FAST),  # the default failed now: the fastest that ran
        ({DEFAULT: [70, 70, 71], FAST: [80, 80, 80]}, [], DEFAULT),  # the default is simply fastest
        # an installed file's pick is the reference to beat: the search's best beats the default clearly
        # but not the baseline, so the baseline is exported
        ({FAST: [80, 82, 84], BASELINE: [81, 83, 85], DEFAULT: [100, 100, 100]}, [BASELINE], BASELINE),
        # the same best, clearly faster than the baseline too: exported
        ({FAST: [80, 81, 82], BASELINE: [90, 90, 91], DEFAULT: [100, 100, 100]}, [BASELINE], FAST),
        # two baselines: the faster one is the reference, and the search's best is within its noise
        (
            {FAST: [84, 85, 86], FILE_PICK: [95, 95, 95], BASELINE: [86, 86, 86], DEFAULT: [99, 99, 99]},
            [FILE_PICK, BASELINE],
            BASELINE,
        ),
        # a baseline faster than anything the search found is exported however close the default is
        ({BASELINE: [70, 70, 70], FAST: [80, 80, 80], DEFAULT: [71, 71, 71]}, [BASELINE], BASELINE),
        # the default equals the baseline's median: the default is kept on a tie
        ({BASELINE: [70, 70, 70], DEFAULT: [70, 70, 70], FAST: [90, 90, 90]}, [BASELINE], DEFAULT),
        # a baseline that did not run (it failed on this device) compares with nothing
        ({FAST: [80, 81, 82], BASELINE: [], DEFAULT: [100, 100, 100]}, [BASELINE], FAST),
        # the default did not run, the baseline did: the search's best must still beat the baseline
        ({FAST: [80, 82, 84], BASELINE: [81, 83, 85], DEFAULT: []}, [BASELINE], BASELINE),
    ],
)
def test_decide(times, references, expected):
    decision = decide(times, default=DEFAULT, references=references)
    assert decision.pick == expected
    assert decision.pick_us == sorted(times[expected])[1]  # the median of three rounds
    refs = [times[c] for c in (DEFAULT, *references) if times.get(c)]
    assert not refs or decision.pick_us <= min(sorted(ts)[1] for ts in refs)  # never slower than a reference


def test_the_reason_names_the_reference_kept_or_beaten():
    times = {FAST: [80, 82, 84], BASELINE: [81, 83, 85], DEFAULT: [100, 100, 100]}
    kept = decide(times, default=DEFAULT, references=[BASELINE]).reason
    assert kept == "the fastest was within the round's spread of the fastest baseline pick: that pick is kept"
    beaten = decide(times, default=DEFAULT).reason
    assert beaten == "beats the default by more than the round's spread"


def test_decide_needs_a_contender_that_ran():
    with pytest.raises(ValueError, match="no contender ran"):
        decide({DEFAULT: [], FAST: []}, default=DEFAULT)


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
    round_ = confirmation_of(study.user_attrs)
    assert round_[CONFIRMED] == DEFAULT.as_sglang()
    assert "default" in round_[CONFIRM_REASON]  # fastest by median, or kept within the noise
    assert set(round_[CONFIRM_ROUND]) == {LUCKY.short(), DEFAULT.short()}
    assert all(len(times) == 5 for times in round_[CONFIRM_ROUND].values())
    # One attribute, written at once: two hosts confirming one study never leave a mix of two rounds.
    assert not {CONFIRMED, CONFIRM_REASON, CONFIRM_ROUND} & set(study.user_attrs)


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


PROBLEM = Problem(N=256, K=512, M=16)


def _study(storage, bench) -> optuna.Study:
    return optuna.load_study(
        study_name=study_name(PROBLEM, bench.device_name, bench.kind, bench.software), storage=storage
    )


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_a_study_given_more_trials_is_confirmed_again(tmp_path, backend):
    # Two configs confirm the default (7.2 us); forty find 5.1 us, which the export must then follow.
    storage = optuna.storages.InMemoryStorage() if backend == "memory" else make_storage(f"sqlite:///{tmp_path}/s.db")
    bench = ReplayBenchmarker(synthetic_rows([(PROBLEM.N, PROBLEM.K)], [PROBLEM.M]))
    slow = Config(block_m=256, block_n=256, block_k=128, group_m=1, num_warps=4, num_stages=3)
    small = tune_problem(storage, PROBLEM, bench, TuneOptions(trials=2, seed=0), seeds=[DEFAULT, slow])
    optimum, optimum_us = bench.optimum(PROBLEM)
    assert small.best == DEFAULT and small.best_us > 1.2 * optimum_us
    more = tune_problem(storage, PROBLEM, bench, TuneOptions(trials=40, seed=0), seeds=[DEFAULT, slow])
    study = _study(storage, bench)
    found, found_us = best(study.trials)
    assert found_us < 1.01 * optimum_us  # the search found what the 2-config round could not know
    assert (more.best, more.best_us) == (found, found_us)
    round_ = confirmation_of(study.user_attrs)
    assert round_[CONFIRMED] == found.as_sglang() and round_[CONFIRMED_US] == found_us
    assert found.short() in round_[CONFIRM_BASIS]


def test_a_round_from_before_its_basis_was_recorded_is_held_again(tmp_path):
    # Studies confirmed by earlier versions carry five separate attributes and no basis: they are
    # read as they are, and confirmed again (one round) the next time their study is run.
    storage = make_storage(f"sqlite:///{tmp_path}/s.db")
    bench = ReplayBenchmarker(synthetic_rows([(PROBLEM.N, PROBLEM.K)], [PROBLEM.M]))
    tune_problem(storage, PROBLEM, bench, TuneOptions(trials=4, seed=0), seeds=[DEFAULT])
    study = _study(storage, bench)
    stale = {CONFIRMED: FILE_PICK.as_sglang(), CONFIRMED_US: 1.0, CONFIRM_REASON: "old", CONFIRM_ROUND: {}}
    storage.set_study_user_attr(study._study_id, CONFIRMATION, None)
    with storage.engine.begin() as connection:  # as an earlier version left it: no CONFIRMATION at all
        connection.exec_driver_sql("DELETE FROM study_user_attributes WHERE key = 'confirmation'")
    for key, value in stale.items():
        study.set_user_attr(key, value)
    assert confirmation_of(study.user_attrs)[CONFIRMED] == FILE_PICK.as_sglang()
    result = tune_problem(storage, PROBLEM, bench, TuneOptions(trials=4, seed=0), seeds=[DEFAULT])
    assert result.best != FILE_PICK and confirmation_of(study.user_attrs)[CONFIRM_BASIS]


def test_a_study_extended_in_a_new_process_is_confirmed_there(tmp_path):
    # A rerun with a larger --trials times its new configs in a timing process of its own, which
    # never launched the first run's: its round used to fail on them (a graph cannot load a kernel),
    # and the search's best was exported without a comparison with the default.
    problem = Problem(N=512, K=256, M=16)
    storage = make_storage(f"sqlite:///{tmp_path}/s.db")
    seeds = [DEFAULT, FAST, FILE_PICK, BASELINE]  # the default, then FAST: both in the first run
    for trials in (2, 4):
        with GpuBenchmarker(compile_workers=1, timeout_s=5, session_factory=FakeSession,
                            compile_fn=fake_compile) as bench:  # fmt: skip
            result = tune_problem(storage, problem, bench, TuneOptions(trials=trials, seed=0), seeds)
            assert bench.restarts == 0
    (summary,) = optuna.get_all_study_summaries(storage)
    round_ = confirmation_of(optuna.load_study(study_name=summary.study_name, storage=storage).user_attrs)
    assert {DEFAULT.short(), FAST.short()} <= set(round_[CONFIRM_ROUND])
    assert all(len(times) == 5 for times in round_[CONFIRM_ROUND].values()), round_[CONFIRM_REASON]
    assert result.timed == 4 and result.default_us is not None


def test_a_round_that_failed_to_run_is_held_again_by_the_next_run(tmp_path, monkeypatch):
    # The GPU dies after the search's three measurements: the round times nothing. The search's best
    # stands for now, but the round is not current: the next run, on a healthy GPU, holds it.
    monkeypatch.setenv(LAUNCHES_FILE, str(tmp_path / "launches"))
    problem = Problem(N=512, K=256, M=16)
    storage = make_storage(f"sqlite:///{tmp_path}/s.db")
    seeds, options = [DEFAULT, FAST, FILE_PICK], TuneOptions(trials=HEALTHY_LAUNCHES, seed=0)
    for session in (DyingSession, FakeSession):
        with GpuBenchmarker(compile_workers=1, timeout_s=5, session_factory=session, compile_fn=fake_compile) as bench:
            result = tune_problem(storage, problem, bench, options, seeds)
        (summary,) = optuna.get_all_study_summaries(storage)
        round_ = confirmation_of(optuna.load_study(study_name=summary.study_name, storage=storage).user_attrs)
        if session is DyingSession:
            assert round_[CONFIRM_REASON] == ROUND_FAILED and not any(round_[CONFIRM_ROUND].values())
    assert all(len(times) == 5 for times in round_[CONFIRM_ROUND].values())
    assert result.default_us == round_[CONFIRM_DEFAULT_US] is not None


class _LostRound(ReplayBenchmarker):
    """A replay whose confirmation round comes back empty, as the GPU's does when its timing process is lost."""

    def retime(self, problem, configs, *, rounds):
        return {config: [] for config in configs}


@pytest.mark.parametrize("legacy", [False, True], ids=["now", "as-stored-before"])
def test_the_next_run_says_in_one_line_that_it_holds_a_failed_round_again(tmp_path, capsys, legacy):
    # Stored before, a failed round carried the basis of a current one (and another reason): it was
    # never held again. Either way the run says so at its start, and the round it holds runs.
    landscape = write_landscape(tmp_path / "l.csv", [(PROBLEM.N, PROBLEM.K)], [PROBLEM.M])
    url = f"sqlite:///{tmp_path}/s.db"
    lost = _LostRound.from_file(landscape)
    tune_problem(make_storage(url), PROBLEM, lost, TuneOptions(trials=4, seed=0), seeds=[DEFAULT])
    study = _study(make_storage(url), lost)
    if legacy:
        round_ = {**confirmation_of(study.user_attrs), CONFIRM_REASON: "the confirmation round failed to run"}
        study.set_user_attr(CONFIRMATION, round_)
    argv = ["--N", str(PROBLEM.N), "--K", str(PROBLEM.K), "--batch-size", str(PROBLEM.M), "--trials", "4",
            "--replay", str(landscape), "--storage", url, "--save-path", str(tmp_path / "cfg"), "--baseline", "none",
            "--no-prior", "--seed", "0"]  # fmt: skip
    assert tuner.cli.run.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    note = (f"note: the confirmation round of 1 study failed to run earlier (e.g. {study.study_name}): held again "
            "before their export")  # fmt: skip
    assert [line for line in lines if "confirmation round" in line] == [note]
    round_ = confirmation_of(_study(make_storage(url), lost).user_attrs)
    assert round_[CONFIRM_REASON] != ROUND_FAILED and all(round_[CONFIRM_ROUND].values())
