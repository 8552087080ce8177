"""Several workers on one storage: real SQLite and a real PostgreSQL server, replay workers, SIGKILL."""

from __future__ import annotations

import datetime
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

import tuner.study._storage
from tests.tuner.stoppable import paced
from tests.tuner.synthetic import (
    NO_POSTGRES,
    POSTGRES,
    postgres_database,
    synthetic_rows,
    widened_sqlite,
    write_landscape,
)
from tuner.benchmarkers import ReplayBenchmarker, RunClock
from tuner.export import read_config_file
from tuner.samplers import distributions, make_sampler
from tuner.space import STATUS, TIMED, Config, Problem, config_of, default_config, search_space
from tuner.study import (
    Search,
    TuneOptions,
    is_timed,
    make_storage,
    split_work,
    study_name,
    timed_trials,
    tune_problem,
    warm_starts,
)
from tuner.study._liveness import Heartbeats
from tuner.study._rows import new_trial
from tuner.study._store import StudyRows, TunerStorage

SHAPES = [(512, 1024), (1024, 512)]
BATCH_SIZES = [1, 16, 64]
# Workers sharing a study decide in parallel, each seeing fewer finished results per decision than
# one worker does; with 10 configs per study that cost up to 5% on this landscape (seen once in CI
# checks), with 20 the shared runs match one worker within 1%.
TRIALS = 20
MEASURED = ("ok", "pruned", "out_of_resources", "compile_error", "crash", "timeout")


@pytest.fixture(scope="module")
def landscape(tmp_path_factory) -> Path:
    return write_landscape(tmp_path_factory.mktemp("landscape") / "l.csv", SHAPES, BATCH_SIZES)


def _cli(landscape: Path, storage: str, save: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tuner.run", "--N", "512", "--K", "1024", "--batch-sizes", *map(str, BATCH_SIZES),
            "--replay", str(landscape), "--trials", str(TRIALS), "--storage", storage, "--save-path", str(save),
            "--no-prior", "--seed", "0", *extra]  # fmt: skip


def _check_studies(storage_url: str) -> None:
    """Every study spent exactly its budget, timed no config twice, and stored no race a process lost.

    A trial that lost the race to another process's (same config, or the budget spent first) is
    not a failure of anything: optuna-dashboard and the report would show it as one.
    """
    storage = optuna.storages.RDBStorage(storage_url)
    summaries = optuna.get_all_study_summaries(storage)
    assert len(summaries) == len(BATCH_SIZES)
    for summary in summaries:
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        assert len(timed_trials(study)) == TRIALS, summary.study_name
        measured = [config_of(t) for t in study.trials if t.user_attrs.get(STATUS) in MEASURED]
        assert len(measured) == len(set(measured)) == TRIALS
        lost = [t.number for t in study.trials if t.user_attrs.get(STATUS) in ("repeat", "over_budget")]
        assert lost == [], summary.study_name


def _exported(folder: Path, landscape: Path) -> dict[int, float]:
    """The latency, per batch size, of the configs a run exported: its quality, ties allowed."""
    (path,) = folder.glob("*.json")
    replay = ReplayBenchmarker.from_file(landscape)
    return {M: replay.latency(Problem(N=512, K=1024, M=M), config) for M, config in read_config_file(path).items()}


def _assert_same_quality(parallel: dict[int, float], single: dict[int, float]) -> None:
    """Every batch size exported, each within 1% of what one worker found.

    Parallel workers run neighbouring batch sizes at the same time, so a study may start without
    its neighbour's best as a seed and end on an equally good config that is not the same one.
    """
    assert parallel.keys() == single.keys()
    for M, us in parallel.items():
        assert us <= 1.01 * single[M], (M, us, single[M])


@pytest.fixture(scope="module")
def one_worker_file(landscape, tmp_path_factory) -> dict[int, float]:
    """The config file a single worker exports: what every parallel run must reproduce."""
    tmp = tmp_path_factory.mktemp("one")
    subprocess.run(_cli(landscape, f"sqlite:///{tmp}/s.db", tmp / "cfg"), check=True, capture_output=True)
    return _exported(tmp / "cfg", landscape)


# (shapes, workers): more workers than shapes split batch sizes into contiguous runs.
@pytest.mark.parametrize(("n_shapes", "workers"), [(13, 8), (2, 4), (1, 3), (5, 1)])
def test_split_work_covers_everything_once_and_balances(n_shapes, workers):
    shapes = [[Problem(N=512 * (i + 1), K=1024, M=M) for M in (1, 16, 256, 4096)] for i in range(n_shapes)]
    plan = split_work(shapes, workers)
    assigned = [p for units in plan for unit in units for p in unit]
    assert sorted(assigned, key=repr) == sorted((p for s in shapes for p in s), key=repr)
    for units in plan:
        for unit in units:
            assert [p.M for p in unit] == sorted(p.M for p in unit)  # runs of ascending M keep warm starts
    assert sum(1 for units in plan if units) == min(workers, sum(len(u) for units in plan for u in units))


def test_warm_starts_look_past_a_neighbour_another_process_has_only_begun():
    storage = optuna.storages.InMemoryStorage()
    bench = ReplayBenchmarker(synthetic_rows([SHAPES[0]], BATCH_SIZES))
    small, begun, done = (Problem(N=SHAPES[0][0], K=SHAPES[0][1], M=M) for M in BATCH_SIZES)
    optuna.create_study(storage=storage, study_name=study_name(begun, bench.device_name, bench.kind, bench.software))
    tuned = tune_problem(storage, done, bench, TuneOptions(trials=4, seed=0), seeds=[])
    seeds = warm_starts(storage, bench, small, BATCH_SIZES, TuneOptions(), existing={})
    assert seeds[0] == tuned.best


@pytest.mark.parametrize(
    "race",
    [optuna.exceptions.StorageInternalError("stamping the schema version failed"),
     sqlalchemy.exc.IntegrityError("INSERT INTO alembic_version", {}, Exception("UNIQUE constraint failed"))],
    ids=["optuna-wrapped", "sqlalchemy"],
)  # fmt: skip
def test_a_worker_that_loses_the_race_to_create_the_storage_tries_again(tmp_path, monkeypatch, race):
    # Processes starting together on an empty storage race to create its tables and stamp its version.
    tries = []

    def racing(*args, **kwargs):
        tries.append(args)
        if len(tries) == 1:
            raise race
        return TunerStorage(*args, **kwargs)

    monkeypatch.setattr(tuner.study._storage, "TunerStorage", racing)
    monkeypatch.setattr(tuner.study._storage.time, "sleep", lambda s: None)
    storage = make_storage(f"sqlite:///{tmp_path}/s.db")
    assert len(tries) == 2 and optuna.get_all_study_summaries(storage) == []


def test_a_storage_that_stays_unusable_is_one_usage_error(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.")

    monkeypatch.setattr(tuner.study._storage, "TunerStorage", broken)
    monkeypatch.setattr(tuner.study._storage.time, "sleep", lambda s: None)
    with pytest.raises(ValueError, match=r"is not usable: StorageInternalError: An exception is raised"):
        make_storage(f"sqlite:///{tmp_path}/s.db")


def test_four_replay_workers_on_one_sqlite_file(landscape, tmp_path, one_worker_file):
    url = f"sqlite:///{tmp_path}/s.db"
    done = subprocess.run(_cli(landscape, url, tmp_path / "cfg", "--gpus", "0,1,2,3"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "database is locked" not in done.stderr
    _check_studies(url)
    _assert_same_quality(_exported(tmp_path / "cfg", landscape), one_worker_file)


def _concurrent_processes(landscape: Path, url: str, save: Path, n: int) -> list[subprocess.CompletedProcess]:
    processes = [subprocess.Popen(_cli(landscape, url, save), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(n)]  # fmt: skip
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=300), *p.communicate()) for p in processes]


def test_four_processes_share_studies_on_sqlite(landscape, tmp_path, one_worker_file):
    # The multi-host recipe on one host: the same command four times, one SQLite file.
    url = f"sqlite:///{tmp_path}/s.db"
    for done in _concurrent_processes(landscape, url, tmp_path / "cfg", 4):
        assert done.returncode == 0, done.stderr
        assert "database is locked" not in done.stderr
    _check_studies(url)
    _assert_same_quality(_exported(tmp_path / "cfg", landscape), one_worker_file)


def test_two_paced_processes_on_one_sqlite_file_store_no_lost_races(landscape, tmp_path, one_worker_file):
    # The same command twice at once, each measurement taking a few ms as a GPU's would: both
    # propose the same configs from the same seed, and each config goes to one of them.
    url = f"sqlite:///{tmp_path}/s.db"
    env = paced(dict(os.environ), 0.01)
    processes = [subprocess.Popen(_cli(landscape, url, tmp_path / "cfg"), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]  # fmt: skip
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    _check_studies(url)
    _assert_same_quality(_exported(tmp_path / "cfg", landscape), one_worker_file)


@pytest.mark.skipif(POSTGRES is None, reason=NO_POSTGRES)
def test_four_processes_share_studies_on_postgresql(landscape, tmp_path, one_worker_file):
    url = postgres_database("tuner_share")
    for done in _concurrent_processes(landscape, url, tmp_path / "cfg", 4):
        assert done.returncode == 0, done.stderr
    _check_studies(url)
    _assert_same_quality(_exported(tmp_path / "cfg", landscape), one_worker_file)


def _slow_worker(url: str, landscape: str) -> None:
    storage = make_storage(url, heartbeat_s=1, grace_s=3)
    bench = ReplayBenchmarker.from_file(landscape, delay_s=30.0)  # stays inside its first measurement
    # Seeded with a config that runs, so that its retry must come back ok (a random first config
    # may be one the landscape records as failing).
    tune_problem(
        storage, Problem(N=512, K=1024, M=16), bench, TuneOptions(trials=TRIALS), seeds=[default_config(128, 128)]
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_killed_workers_trial_is_failed_by_heartbeat_and_retried(landscape, tmp_path, backend):
    if backend == "postgresql" and POSTGRES is None:
        pytest.skip(NO_POSTGRES)
    url = f"sqlite:///{tmp_path}/s.db" if backend == "sqlite" else postgres_database("tuner_kill")
    worker = mp.get_context("spawn").Process(target=_slow_worker, args=(url, str(landscape)))
    worker.start()
    deadline = time.monotonic() + 60
    running, summaries = [], []
    while time.monotonic() < deadline:
        summaries = optuna.get_all_study_summaries(make_storage(url))
        if summaries:
            study = optuna.load_study(study_name=summaries[0].study_name, storage=make_storage(url))
            running = [t for t in study.trials if t.state == TrialState.RUNNING and t.user_attrs.get(TIMED)]
        if running:
            break
        time.sleep(0.2)
    assert running, "the worker never started measuring"
    os.kill(worker.pid, signal.SIGKILL)
    worker.join()

    storage = make_storage(url, heartbeat_s=1, grace_s=3)
    study_id = storage.get_study_id_from_name(summaries[0].study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, running[0].number)
    deadline = time.monotonic() + 30
    # Until its heartbeat is older than the grace period, by the storage's own clock: what the tuner
    # asks when it starts (Optuna's heartbeat interface has no public name for the question).
    while trial_id not in storage._get_stale_trial_ids(study_id):
        assert time.monotonic() < deadline, "the killed worker's heartbeat never went stale"
        time.sleep(0.1)
    bench = ReplayBenchmarker.from_file(landscape)
    tune_problem(storage, Problem(N=512, K=1024, M=16), bench, TuneOptions(trials=TRIALS), seeds=[])
    study = optuna.load_study(study_name=summaries[0].study_name, storage=storage)
    killed = study.trials[running[0].number]
    assert killed.state == TrialState.FAIL
    retries = [t for t in study.trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed.number]
    assert len(retries) == 1 and retries[0].user_attrs[STATUS] == "ok"
    assert config_of(retries[0]) == config_of(killed)
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    # The dead trial and its retry spend one measurement between them, and the budget is exact.
    assert not is_timed(killed) and is_timed(retries[0])
    measured = [config_of(t) for t in study.trials if t.user_attrs.get(STATUS) in MEASURED]
    assert len(timed_trials(study)) == len(measured) == len(set(measured)) == TRIALS


PROBLEM = Problem(N=512, K=1024, M=16)
DEFAULT = default_config(128, 128)
OTHER = Config(block_m=16, block_n=64, block_k=128, group_m=1, num_warps=4, num_stages=3)


def _claim(study: optuna.Study, config: Config, *, timed: bool | None) -> optuna.Trial:
    """A trial another process started on config: claimed (timed=True) or still deciding (None)."""
    study.enqueue_trial(config.as_sglang())
    trial = study.ask()
    for name, distribution in distributions(search_space(128)).items():
        trial.suggest_categorical(name, distribution.choices)
    if timed is not None:
        trial.set_user_attr(TIMED, timed)
    return trial


def test_a_dead_trials_retry_waits_with_its_config_and_no_claim(tmp_path):
    # Optuna's own callback copies the dead trial's user attributes: the retry would look claimed
    # (decided, and counted) before it ran.
    storage = make_storage(f"sqlite:///{tmp_path}/s.db", heartbeat_s=1, grace_s=1)
    study = optuna.create_study(storage=storage, study_name="retry", direction="minimize")
    dead = _claim(study, DEFAULT, timed=True)
    storage.record_heartbeat(dead._trial_id)
    time.sleep(2.5)  # past the grace period
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
        (retry,) = study.get_trials(states=(TrialState.WAITING,))
        assert RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == dead.number
    assert config_of(retry) == DEFAULT and retry.user_attrs == {}


@pytest.mark.parametrize("budget", [1, 3])
def test_a_stale_claimed_trial_is_retried_once_and_spends_one_measurement(tmp_path, budget):
    # A process claimed a measurement, beat once and died: Optuna fails its trial by heartbeat and
    # retries the config in a waiting trial, onto which it copies the dead trial's claim.
    storage = make_storage(f"sqlite:///{tmp_path}/s.db", heartbeat_s=1, grace_s=1)
    bench = ReplayBenchmarker(synthetic_rows([(PROBLEM.N, PROBLEM.K)], [PROBLEM.M]))
    name = study_name(PROBLEM, bench.device_name, bench.kind, bench.software)
    study = optuna.create_study(storage=storage, study_name=name, direction="minimize")
    dead = _claim(study, DEFAULT, timed=True)
    storage.record_heartbeat(dead._trial_id)
    time.sleep(2.5)  # past the grace period
    result = tune_problem(storage, PROBLEM, bench, TuneOptions(trials=budget, seed=0), seeds=[DEFAULT])
    trials = optuna.load_study(study_name=name, storage=storage).trials
    (retry,) = [t for t in trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == dead.number]
    assert trials[dead.number].state == TrialState.FAIL and not is_timed(trials[dead.number])
    assert retry.state == TrialState.COMPLETE and retry.user_attrs[STATUS] == "ok" and is_timed(retry)
    # Counted once, run before the study stopped, and the budget spent exactly.
    assert result.timed == bench.measurements == budget
    measured = [config_of(t) for t in trials if t.user_attrs.get(STATUS) in MEASURED]
    assert len(measured) == len(set(measured)) == budget


class _FakeClock:
    """Time that passes only when the objective sleeps; another host may act on the nth pause."""

    def __init__(self, on_pause=None, at: int = 0):
        self.now = 0.0
        self.pauses: list[float] = []
        self._on_pause, self._at = on_pause, at

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds
        if self._on_pause is not None and len(self.pauses) == self._at:
            self._on_pause()


def _skew(storage: RDBStorage, trial_number: int, hours: float) -> None:
    """Stamp the trial's start as a host whose clock is hours off (or in another time zone) would."""
    start = datetime.datetime.now() + datetime.timedelta(hours=hours)
    with storage.engine.begin() as connection:
        connection.execute(
            sqlalchemy.text("UPDATE trials SET datetime_start = :start WHERE number = :number"),
            {"start": start, "number": trial_number},
        )


def _search(study: optuna.Study, bench: ReplayBenchmarker, clock: _FakeClock, **kwargs) -> Search:
    """This process's search of study, on a clock that moves only when it pauses."""
    space = search_space(128)
    sampler = make_sampler("local", space=space, batch_size=PROBLEM.M)
    return Search(study, PROBLEM, bench, sampler, budget=4, space=space, now=lambda: clock.now, sleep=clock.sleep,
                  **kwargs)  # fmt: skip


@pytest.mark.parametrize("hours", [-5, 5], ids=["host-behind", "host-ahead"])
def test_a_live_trial_of_a_skewed_host_is_waited_for_and_not_timed_twice(tmp_path, hours):
    storage = make_storage(f"sqlite:///{tmp_path}/s.db")
    bench = ReplayBenchmarker(synthetic_rows([(PROBLEM.N, PROBLEM.K)], [PROBLEM.M]))
    study = optuna.create_study(storage=storage, study_name="skew", direction="minimize")
    other_host = _claim(study, DEFAULT, timed=None)  # deciding, on a host whose clock is hours off
    _skew(storage, other_host.number, hours)
    clock = _FakeClock(lambda: other_host.set_user_attr(TIMED, True), at=4)  # it claims after ~0.75 s
    study.enqueue_trial(DEFAULT.as_sglang())
    assert _search(study, bench, clock).step()
    mine = study.trials[-1]
    assert mine.state == TrialState.FAIL and mine.user_attrs[STATUS] == "repeat"
    assert mine.user_attrs["reason"] == f"same config as trial {other_host.number}"
    assert bench.measurements == 0
    assert clock.pauses == [0.05, 0.1, 0.2, 0.4]  # the storage is read less and less often


@pytest.mark.parametrize("hours", [-5, 5], ids=["host-behind", "host-ahead"])
def test_a_dead_undecided_trial_is_waited_for_the_deciding_window_whatever_its_hosts_clock(tmp_path, hours):
    storage = make_storage(f"sqlite:///{tmp_path}/s.db")
    bench = ReplayBenchmarker(synthetic_rows([(PROBLEM.N, PROBLEM.K)], [PROBLEM.M]))
    study = optuna.create_study(storage=storage, study_name="skew", direction="minimize")
    dead = _claim(study, DEFAULT, timed=None)  # its process died before it decided
    _skew(storage, dead.number, hours)
    clock = _FakeClock()
    search = _search(study, bench, clock, deciding_s=10.0)
    study.enqueue_trial(OTHER.as_sglang())
    assert search.step()
    assert study.trials[-1].value == pytest.approx(bench.latency(PROBLEM, OTHER))
    assert 10.0 <= clock.now < 11.0 and max(clock.pauses) == 1.0
    # A second trial of the same process does not wait for the same dead trial again.
    waited = clock.now
    study.enqueue_trial(DEFAULT.as_sglang())
    assert search.step()
    assert study.trials[-1].user_attrs[STATUS] == "repeat"  # the dead trial still holds DEFAULT
    assert clock.now == waited


def test_a_live_trial_waiting_on_a_dead_one_is_waited_for_past_the_deciding_window(tmp_path):
    # A died undecided; B, live on another host, waits for A before it decides; C waits for both.
    # C gave up on B once it had seen it undecided for the deciding window, just as B decided:
    # both then timed B's config (or spent one more than the budget). B beats, so C waits for it.
    storage = make_storage(f"sqlite:///{tmp_path}/s.db")
    bench = ReplayBenchmarker(synthetic_rows([(PROBLEM.N, PROBLEM.K)], [PROBLEM.M]))
    study = optuna.create_study(storage=storage, study_name="chain", direction="minimize")
    _claim(study, OTHER, timed=None)  # A: no owner, no heartbeat, never decides
    b = _claim(study, DEFAULT, timed=None)
    storage.set_trial_system_attr(b._trial_id, "owner", {"host": "elsewhere", "pid": 1, "namespace": "another"})
    storage.record_heartbeat(b._trial_id)
    clock = _FakeClock(lambda: b.set_user_attr(TIMED, True), at=16)  # B claims ~12.5 s in
    study.enqueue_trial(DEFAULT.as_sglang())  # C
    assert _search(study, bench, clock, deciding_s=10.0).step()
    c = study.trials[-1]
    assert clock.now > 10.0 and c.user_attrs[STATUS] == "repeat"
    assert bench.measurements == 0


def test_a_live_trial_keeps_beating_and_a_finished_search_stops(tmp_path):
    # A trial's first heartbeat is written with it; one thread renews those of the trials still
    # running every interval, so a long measurement is never taken for a dead process's.
    storage = make_storage(f"sqlite:///{tmp_path}/s.db", heartbeat_s=1, grace_s=2)
    study = optuna.create_study(storage=storage, study_name="beats", direction="minimize")
    rows = StudyRows(study, RunClock())
    trial = rows.create(new_trial(state=TrialState.RUNNING))
    with Heartbeats(rows) as beats, beats.alive(trial._trial_id):
        time.sleep(3.5)
        assert storage._get_stale_trial_ids(study._study_id) == []
    time.sleep(3.5)
    assert storage._get_stale_trial_ids(study._study_id) == [trial._trial_id]


class _RetiredMidMeasurement(ReplayBenchmarker):
    """A replay whose nth measurement another process cuts short, as it does a stalled worker's.

    While this worker measures, another process (a storage of its own) finds the trial's heartbeat
    stale, fails the trial and retries its config, as Optuna's fail_stale_trials does: what a stall
    past the grace period, a Ctrl-Z or a long lock wait brings about.
    """

    def __init__(self, rows, *, url: str, at: int) -> None:
        super().__init__(rows)
        self._url, self._at = url, at
        self.retired: list[int] = []

    def measure(self, problem, config, *, prune_above_us=None):
        if self.measurements + 1 == self._at:
            other = make_storage(self._url)
            name = study_name(problem, self.device_name, self.kind, self.software)
            study = optuna.load_study(study_name=name, storage=other)
            (running,) = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            other.set_trial_state_values(running._trial_id, TrialState.FAIL)
            other.get_heartbeat_stale_trial_callback()(study, other.get_trial(running._trial_id))
            self.retired.append(running.number)
        return super().measure(problem, config, prune_above_us=prune_above_us)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_trial_another_process_retires_mid_measurement_is_noted_and_the_search_goes_on(tmp_path, capsys, backend):
    if backend == "postgresql" and POSTGRES is None:
        pytest.skip(NO_POSTGRES)
    url = f"sqlite:///{tmp_path}/s.db" if backend == "sqlite" else postgres_database("tuner_retired")
    bench = _RetiredMidMeasurement(synthetic_rows([(PROBLEM.N, PROBLEM.K)], [PROBLEM.M]), url=url, at=3)
    result = tune_problem(make_storage(url), PROBLEM, bench, TuneOptions(trials=6, seed=0), seeds=[DEFAULT])
    (retired,) = bench.retired
    assert capsys.readouterr().err.count(f"note: another process ended trial {retired} of ") == 1
    name = study_name(PROBLEM, bench.device_name, bench.kind, bench.software)
    study = optuna.load_study(study_name=name, storage=make_storage(url))
    trials = study.trials
    # Failed where the other process failed it, nothing of this worker's result written over that.
    assert trials[retired].state == TrialState.FAIL and trials[retired].user_attrs == {TIMED: True}
    (retry,) = [t for t in trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == retired]
    assert retry.state == TrialState.COMPLETE and config_of(retry) == config_of(trials[retired])
    assert result.timed == len(timed_trials(study)) == 6


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "sqlite-api"])
def test_a_creation_that_lost_the_race_to_another_processs_stores_no_trial(tmp_path, backend):
    # Two processes read the same study and propose the same config; the other one creates and
    # times it between this one's read and its write. This one's creation is refused and nothing
    # of it is stored: it proposes anew. (Optuna's own calls cannot refuse it: there, as before,
    # the trial is stored and declines as a repeat.)
    if backend == "postgresql" and POSTGRES is None:
        pytest.skip(NO_POSTGRES)
    url = {"sqlite": lambda: f"sqlite:///{tmp_path}/s.db", "postgresql": lambda: postgres_database("tuner_race"),
           "sqlite-api": lambda: widened_sqlite(tmp_path / "s.db")}[backend]()  # fmt: skip
    bench = ReplayBenchmarker(synthetic_rows([(PROBLEM.N, PROBLEM.K)], [PROBLEM.M]))
    space = search_space(128)

    def search(storage) -> Search:
        study = optuna.create_study(storage=storage, study_name="race", direction="minimize", load_if_exists=True)
        sampler = make_sampler("local", space=space, seeds=[DEFAULT], batch_size=PROBLEM.M)
        return Search(study, PROBLEM, bench, sampler, budget=4, space=space)

    mine, theirs = search(make_storage(url)), search(make_storage(url))
    propose = mine.sampler.sample_relative

    def racing(*args):
        assert theirs.step()  # the other process, between this one's read and its write
        return propose(*args)

    mine.sampler.sample_relative = racing
    assert mine.step()
    trials = optuna.load_study(study_name="race", storage=make_storage(url)).trials
    if backend == "sqlite-api":
        assert [(config_of(t), t.user_attrs[STATUS]) for t in trials] == [(DEFAULT, "ok"), (DEFAULT, "repeat")]
        return
    assert [(config_of(t), t.user_attrs[STATUS]) for t in trials] == [(DEFAULT, "ok")]
    mine.sampler.sample_relative = propose
    assert mine.step()  # proposes anew from what it reads now
    trials = optuna.load_study(study_name="race", storage=make_storage(url)).trials
    assert len(trials) == 2 and config_of(trials[1]) != DEFAULT and trials[1].user_attrs[STATUS] == "ok"
    assert bench.measurements == 2
