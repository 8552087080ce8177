"""One study against a replayed synthetic landscape: the budget, failures, repeats, pruning, wrong results, and
landscapes that record part of the space."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from tests.tuner.synthetic import synthetic_rows
from tuner.benchmarkers import ReplayBenchmarker, Row
from tuner.space import REASON, STATUS, TIMED, Config, Problem, config_of, default_config
from tuner.stopping import TuningError
from tuner.study import TuneOptions, WrongResult, make_storage, study_name, timed_trials, tune_problem

PROBLEM = Problem(N=256, K=512, M=16)
OPTIMUM = Config(
    block_m=16, block_n=32, block_k=128, group_m=1, num_warps=4, num_stages=3
)  # 5.1 us in the synthetic landscape
DEFAULT = default_config(128, 128)  # 7.2 us
SLOW = Config(block_m=256, block_n=256, block_k=128, group_m=1, num_warps=4, num_stages=3)  # 21.8 us
SLOW_W8 = Config(block_m=256, block_n=256, block_k=128, group_m=1, num_warps=8, num_stages=3)
TOO_BIG = Config(
    block_m=256, block_n=256, block_k=128, group_m=64, num_warps=8, num_stages=5
)  # 320 KiB of shared memory: out_of_resources


def replay(wrong_result: Config | None = None) -> ReplayBenchmarker:
    """The synthetic landscape of PROBLEM, where one config may be recorded as computing a wrong result."""
    rows = []
    for row in synthetic_rows([(PROBLEM.N, PROBLEM.K)], [PROBLEM.M]):
        wrong = row.config == wrong_result
        rows.append(Row(row.device, row.problem, row.config, "wrong_result", None) if wrong else row)
    return ReplayBenchmarker(rows)


@pytest.fixture(params=["memory", "sqlite"])
def storage(request, tmp_path):
    if request.param == "memory":
        return optuna.storages.InMemoryStorage()
    return make_storage(f"sqlite:///{tmp_path}/studies.db")


def load(storage, bench) -> optuna.Study:
    return optuna.load_study(
        study_name=study_name(PROBLEM, bench.device_name, bench.kind, bench.software), storage=storage
    )


@pytest.mark.parametrize("budget", [1, 10])
def test_timed_configs_equal_the_budget(storage, budget):
    bench = replay()
    result = tune_problem(storage, PROBLEM, bench, TuneOptions(trials=budget, seed=0), [DEFAULT])
    study = load(storage, bench)
    assert result.timed == len(timed_trials(study)) == budget
    assert bench.measurements == budget  # one measurement per timed trial, none hidden
    assert all(t.user_attrs.get(TIMED) is False for t in study.trials if t not in timed_trials(study))


def test_failed_config_is_a_failed_trial_with_its_reason(storage):
    bench = replay()
    tune_problem(storage, PROBLEM, bench, TuneOptions(trials=4, seed=0), [TOO_BIG, DEFAULT])
    study = load(storage, bench)
    (failed,) = [t for t in study.trials if config_of(t) == TOO_BIG]
    assert failed.state == TrialState.FAIL and failed.value is None
    assert failed.user_attrs[STATUS] == "out_of_resources"
    assert failed.user_attrs[REASON]
    assert failed.user_attrs[TIMED] is True  # a failure still spends the budget
    # Nothing reaches the sampler as infinity (or any other non-finite number).
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert complete and all(math.isfinite(t.value) for t in complete)
    assert TOO_BIG not in {config_of(t) for t in complete}


def test_config_enqueued_twice_is_timed_once(storage):
    bench = replay()
    name = study_name(PROBLEM, bench.device_name, bench.kind, bench.software)
    study = optuna.create_study(storage=storage, study_name=name, direction="minimize")
    study.enqueue_trial(SLOW.as_sglang())
    study.enqueue_trial(SLOW.as_sglang())
    tune_problem(storage, PROBLEM, bench, TuneOptions(trials=3, seed=0), [])
    first, second = load(storage, bench).trials[:2]
    assert config_of(first) == config_of(second) == SLOW
    assert first.user_attrs[TIMED] is True and first.state == TrialState.COMPLETE
    assert second.user_attrs[TIMED] is False and second.user_attrs[STATUS] == "repeat"
    assert second.state == TrialState.FAIL
    assert bench.measurements == 3


def test_default_config_is_never_pruned(storage):
    bench = replay()
    # prune_ratio 1 prunes anything slower than the incumbent: the optimum, timed first.
    options = TuneOptions(trials=3, seed=0, prune_ratio=1.0)
    tune_problem(storage, PROBLEM, bench, options, [OPTIMUM, DEFAULT, SLOW])
    by_config = {config_of(t): t for t in load(storage, bench).trials}
    assert by_config[DEFAULT].state == TrialState.COMPLETE
    assert by_config[DEFAULT].user_attrs[STATUS] == "ok"
    assert by_config[DEFAULT].value == pytest.approx(7.202)
    # Pruning is on: a config as slow as the default would have been, but not the default, is pruned.
    assert by_config[SLOW].state == TrialState.PRUNED
    assert by_config[SLOW].user_attrs[STATUS] == "pruned"


def test_wrong_result_stops_the_run(storage):
    bench = replay(wrong_result=SLOW)
    with pytest.raises(WrongResult, match="wrong result"):
        tune_problem(storage, PROBLEM, bench, TuneOptions(trials=4, seed=0), [SLOW, DEFAULT])
    # The run stopped at the wrong result: the next seed never started.
    (trial,) = [t for t in load(storage, bench).trials if t.state != TrialState.WAITING]
    assert trial.state == TrialState.FAIL and trial.user_attrs[STATUS] == "wrong_result"


def test_configs_that_cannot_fit_in_shared_memory_are_never_measured(storage):
    # With a known shared-memory limit the space shrinks before anything is compiled or timed;
    # a fallback sampler that still proposes one gets a failed, untimed trial.
    bench = replay()
    bench.shared_memory_limit = 100_000
    tune_problem(storage, PROBLEM, bench, TuneOptions(trials=12, seed=0), [TOO_BIG, DEFAULT])
    study = load(storage, bench)
    measured = [config_of(t) for t in timed_trials(study)]
    assert TOO_BIG not in measured and all(c.shared_memory_bytes() <= 100_000 for c in measured)

    # Random search over the same space is kept inside it too; a config proposed from outside it
    # (here enqueued, as the local sampler's TPE fallback can) gets a failed, untimed trial.
    fresh = optuna.storages.InMemoryStorage()
    name = study_name(PROBLEM, bench.device_name, bench.kind, bench.software)
    optuna.create_study(storage=fresh, study_name=name, direction="minimize").enqueue_trial(TOO_BIG.as_sglang())
    tune_problem(fresh, PROBLEM, bench, TuneOptions(trials=40, seed=0, sampler="random"), [])
    trials = load(fresh, bench).trials
    skipped = [t for t in trials if t.user_attrs.get(REASON, "").startswith("skipped: needs")]
    assert [config_of(t) for t in skipped] == [TOO_BIG]
    assert all(t.state == TrialState.FAIL and t.user_attrs[TIMED] is False for t in skipped)
    assert all(config_of(t).shared_memory_bytes() <= 100_000 for t in timed_trials(load(fresh, bench)))


def _partial(keep) -> ReplayBenchmarker:
    """PROBLEM's synthetic landscape cut down to the configs keep accepts, as a sweep of part of the space."""
    return ReplayBenchmarker(row for row in synthetic_rows([(PROBLEM.N, PROBLEM.K)], [PROBLEM.M]) if keep(row.config))


@pytest.mark.parametrize("sampler", ["local", "tpe", "random"])
def test_a_partial_landscape_is_searched_over_its_recorded_configs_alone(storage, sampler):
    # 4 warps, BLOCK_SIZE_K 128 and stages 3 or 4: 40 of the 1280 configs, the optimum among them.
    bench = _partial(lambda c: c.num_warps == 4 and c.block_k == 128 and c.num_stages in (3, 4))
    tune_problem(storage, PROBLEM, bench, TuneOptions(trials=16, seed=0, sampler=sampler), [DEFAULT])
    study = load(storage, bench)
    timed = timed_trials(study)
    assert len(timed) == 16 and bench.measurements == 16
    # Every timed config has a row (the too large tiles' rows say out_of_resources): no trial is
    # spent on the landscape's gaps, which replay would time as crashes.
    assert all(t.user_attrs[STATUS] in ("ok", "pruned", "out_of_resources") for t in timed)
    assert all(config_of(t) in bench.measurable(PROBLEM) for t in timed)


def test_a_budget_larger_than_the_recorded_schedules_times_each_once_and_stops(storage):
    bench = _partial(lambda c: c.block_m == 16 and c.block_k == 128 and c.group_m == 1 and c.num_warps == 4)
    recorded = bench.measurable(PROBLEM)  # BLOCK_SIZE_N x stages, each with its GROUP_SIZE_M twins
    assert len(recorded) == 4 * 4 * 4 and len({c.schedule_key(PROBLEM.M) for c in recorded}) == 16
    result = tune_problem(storage, PROBLEM, bench, TuneOptions(trials=100, seed=0), [])
    study = load(storage, bench)
    assert result.timed == 16 == len({config_of(t).schedule_key(PROBLEM.M) for t in timed_trials(study)})
    assert result.best.schedule_key(PROBLEM.M) == OPTIMUM and result.best_us == bench.optimum(PROBLEM)[1]


def test_a_config_outside_the_recorded_ones_gets_an_untimed_trial(storage):
    # As the local sampler's TPE fallback can propose from the product of the parameters' values.
    bench = _partial(lambda c: not (c.block_m == 256 and c.num_warps == 8))
    name = study_name(PROBLEM, bench.device_name, bench.kind, bench.software)
    optuna.create_study(storage=storage, study_name=name, direction="minimize").enqueue_trial(SLOW_W8.as_sglang())
    tune_problem(storage, PROBLEM, bench, TuneOptions(trials=2, seed=0), [DEFAULT])
    (skipped,) = [t for t in load(storage, bench).trials if config_of(t) == SLOW_W8]
    assert skipped.state == TrialState.FAIL and skipped.user_attrs[TIMED] is False
    assert skipped.user_attrs[STATUS] == "not_searched"
    assert bench.measurements == 2


def test_a_landscape_without_a_row_for_the_problem_is_an_error(storage):
    with pytest.raises(TuningError, match="can measure no config"):
        tune_problem(storage, PROBLEM.at(64), replay(), TuneOptions(trials=2, seed=0), [DEFAULT])
