"""A trial's rows as each writer writes them: what Optuna reads back, and never over another process's end.

Each test runs on SQLite, on a SQLite storage whose tables differ from the tested ones (so Optuna's
own calls write it), and where TUNER_TEST_POSTGRES and TUNER_TEST_MYSQL name servers, on
PostgreSQL (whose writes are one statement each) and on MariaDB (MySQL's dialect: Optuna's calls).
"""

from __future__ import annotations

import os
import threading
import time

import optuna
import pytest
import sqlalchemy
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState

import tuner.study._rows
from tests.tuner.synthetic import (
    MYSQL,
    NO_MYSQL,
    NO_POSTGRES,
    POSTGRES,
    mysql_database,
    postgres_database,
    widened_sqlite,
)
from tuner.benchmarkers import RunClock
from tuner.samplers import distributions
from tuner.space import REASON, STATUS, TIMED, US, default_config, search_space
from tuner.study import make_storage
from tuner.study._fence import FORCE
from tuner.study._liveness import OWNER, owner
from tuner.study._rows import ApiRows, PostgresRows, SqliteRows, new_trial
from tuner.study._store import StudyRows, TunerStorage, existing_studies, set_study_attrs

DISTRIBUTIONS = distributions(search_space(128))
PARAMS = default_config(128, 128).params(tuple(DISTRIBUTIONS))
STORAGES = ["sqlite", "sqlite-api", "postgresql", "mysql"]
WRITERS = {"sqlite": SqliteRows, "sqlite-api": ApiRows, "postgresql": PostgresRows, "mysql": ApiRows}


def _url(kind: str, tmp_path) -> str:
    if kind == "sqlite-api" and os.environ.get(FORCE) == "open":
        pytest.skip("the fence is forced open: the row writes serve every SQLite storage")
    if kind == "postgresql" and POSTGRES is None:
        pytest.skip(NO_POSTGRES)
    if kind == "mysql" and MYSQL is None:
        pytest.skip(NO_MYSQL)
    return {
        "sqlite": lambda: f"sqlite:///{tmp_path}/s.db",
        "sqlite-api": lambda: widened_sqlite(tmp_path / "s.db"),
        "postgresql": lambda: postgres_database("tuner_rows"),
        "mysql": lambda: mysql_database("tuner_rows"),
    }[kind]()


@pytest.fixture(params=STORAGES)
def storage(request, tmp_path) -> TunerStorage:
    made = make_storage(_url(request.param, tmp_path))
    assert isinstance(made.rows, WRITERS[request.param])  # each variant tests the writer it means to
    return made


def _study(storage: TunerStorage) -> optuna.Study:
    return optuna.create_study(storage=storage, study_name="rows", direction="minimize")


def _beating(storage: TunerStorage) -> list[int]:
    """The trials with a heartbeat row."""
    with storage.engine.connect() as connection:
        return sorted(connection.execute(sqlalchemy.select(models.TrialHeartbeatModel.trial_id)).scalars())


def _assert_reads_back(storage: TunerStorage, written: FrozenTrial) -> None:
    """Optuna's own reading of the trial (no cache) holds what the write says it wrote."""
    stored = storage.get_trial(written._trial_id)
    assert (stored.number, stored.state, stored.values) == (written.number, written.state, written.values)
    assert stored.params == written.params and stored.distributions == written.distributions
    assert stored.user_attrs == written.user_attrs and stored.system_attrs == written.system_attrs
    assert stored.intermediate_values == written.intermediate_values
    assert (stored.datetime_complete is None) == (written.datetime_complete is None)


def _made(rows: StudyRows, **kwargs) -> FrozenTrial:
    trial = rows.create(
        new_trial(state=TrialState.RUNNING, params=PARAMS, distributions=DISTRIBUTIONS, **kwargs), expect=None
    )
    assert trial is not None
    return trial


@pytest.mark.parametrize(
    "state, value, intermediate",
    [
        (TrialState.COMPLETE, 12.5, None),  # measured: its value
        (TrialState.PRUNED, None, 40.25),  # pruned: the first estimate at step 0
        (TrialState.FAIL, None, None),  # failed: its attributes say why
        (TrialState.COMPLETE, float("inf"), float("-inf")),  # stored as a type, not a number
    ],
)
def test_a_trial_reads_back_through_optuna_as_written(storage, state, value, intermediate):
    rows = StudyRows(_study(storage), RunClock())
    made = _made(rows, user_attrs={TIMED: True}, system_attrs={OWNER: owner()})
    assert made.number == 0
    _assert_reads_back(storage, made)
    assert _beating(storage) == [made._trial_id]
    # TIMED is replaced, the rest added.
    attrs = {TIMED: state != TrialState.FAIL, STATUS: state.name.lower(), US: 12.5, REASON: "why"}
    ended = rows.update(made, user_attrs=attrs, state=state, value=value, intermediate=intermediate)
    assert ended.user_attrs == attrs
    _assert_reads_back(storage, ended)
    second = rows.create(new_trial(state=TrialState.RUNNING))
    assert second.number == 1


def test_a_trial_is_created_only_if_the_study_holds_the_trials_expected(storage):
    # A creation that lost the race to another process's is not stored at all: the row writers
    # count the study's trials under its lock. Optuna's calls cannot refuse it: its number says.
    study = _study(storage)
    rows = StudyRows(study, RunClock())
    first = rows.create(new_trial(state=TrialState.RUNNING), expect=0)
    assert first.number == 0
    late = rows.create(new_trial(state=TrialState.RUNNING, params=PARAMS, distributions=DISTRIBUTIONS), expect=0)
    if isinstance(storage.rows, ApiRows):
        assert late.number == 1
        return
    assert late is None
    assert [t.number for t in study.get_trials(deepcopy=False)] == [0]
    with storage.engine.connect() as connection:  # nothing of it anywhere
        assert connection.execute(sqlalchemy.text("SELECT count(*) FROM trial_params")).scalar() == 0
    assert rows.create(new_trial(state=TrialState.RUNNING), expect=1).number == 1


def test_a_waiting_trial_is_taken_once_with_its_config_owner_and_heartbeat(storage):
    study = _study(storage)
    study.enqueue_trial(default_config(128, 128).as_sglang())
    (waiting,) = study.get_trials(deepcopy=False)
    rows = StudyRows(study, RunClock())
    mine = {OWNER: owner()}
    taken = rows.take(waiting, params=PARAMS, distributions=DISTRIBUTIONS, system_attrs=mine)
    assert taken.state == TrialState.RUNNING and taken.system_attrs[OWNER] == mine[OWNER]
    _assert_reads_back(storage, taken)
    assert _beating(storage) == [waiting._trial_id]
    theirs = {OWNER: {**owner(), "pid": 1}}
    assert rows.take(waiting, params=PARAMS, distributions=DISTRIBUTIONS, system_attrs=theirs) is None
    _assert_reads_back(storage, taken)  # the second process wrote nothing


def test_a_trial_another_process_ended_is_not_written_over(storage):
    rows = StudyRows(_study(storage), RunClock())
    made = _made(rows, user_attrs={})
    storage.set_trial_state_values(made._trial_id, TrialState.FAIL)  # the other process, through Optuna
    with pytest.raises(UpdateFinishedTrialError):
        rows.update(made, user_attrs={STATUS: "ok"}, state=TrialState.COMPLETE, value=1.0, intermediate=1.0)
    stored = storage.get_trial(made._trial_id)
    assert stored.state == TrialState.FAIL and stored.user_attrs == {}
    assert stored.values is None and stored.intermediate_values == {}


def test_a_trial_another_process_ends_while_this_one_waits_for_it_is_not_written_over(storage):
    # The other process holds the trial's row (PostgreSQL) or the file's write lock (SQLite), having
    # failed the trial; this process's write waits for it, then finds the trial ended. (Optuna's own
    # calls read before they lock: that is Optuna's behaviour, not the tuner's.)
    if isinstance(storage.rows, ApiRows):
        pytest.skip("the row writers' locking")
    rows = StudyRows(_study(storage), RunClock())
    made = _made(rows, user_attrs={})
    other = sqlalchemy.create_engine(storage.engine.url)
    outcome: list[BaseException | FrozenTrial] = []

    def end() -> None:
        try:
            outcome.append(rows.update(made, user_attrs={STATUS: "ok"}, state=TrialState.COMPLETE, value=1.0))
        except BaseException as error:  # noqa: BLE001 - handed to the test's thread
            outcome.append(error)

    with other.connect() as connection:
        trials = models.TrialModel.__table__
        ended = sqlalchemy.update(trials).where(trials.c.trial_id == made._trial_id).values(state=TrialState.FAIL)
        connection.execute(ended)
        writer = threading.Thread(target=end)
        writer.start()
        time.sleep(0.5)
        assert writer.is_alive() and not outcome  # waiting for the other process
        connection.commit()
    writer.join(timeout=30)
    other.dispose()
    assert len(outcome) == 1 and isinstance(outcome[0], UpdateFinishedTrialError)
    stored = storage.get_trial(made._trial_id)
    assert stored.state == TrialState.FAIL and stored.user_attrs == {} and stored.values is None


def test_study_attributes_are_added_and_replaced(storage):
    study = _study(storage)
    set_study_attrs(study, {"budget": 16, "device": "x"}, clock=RunClock())
    set_study_attrs(study, {"budget": 32, "schedules": [1, 2]}, clock=RunClock())
    assert storage.get_study_user_attrs(study._study_id) == {"budget": 32, "device": "x", "schedules": [1, 2]}


def test_optunas_own_creations_go_through_the_writer_and_number_in_order(storage):
    # enqueue_trial, add_trial and Optuna's retry callbacks create trials through the storage's
    # creation funnel: the writer's one write, numbered after the trials the study holds.
    study = _study(storage)
    study.enqueue_trial(default_config(128, 128).as_sglang())
    failed = optuna.trial.create_trial(
        state=TrialState.FAIL, params=PARAMS, distributions=DISTRIBUTIONS, user_attrs={STATUS: "crash"}
    )
    study.add_trial(failed)
    RetryHeartbeatStaleTrialCallback(max_retry=1)(study, study.get_trials(deepcopy=False)[1])
    trials = study.get_trials(deepcopy=False)
    assert [t.number for t in trials] == [0, 1, 2]
    assert [t.state for t in trials] == [TrialState.WAITING, TrialState.FAIL, TrialState.WAITING]
    assert trials[2].params == PARAMS and RetryHeartbeatStaleTrialCallback.retried_trial_number(trials[2]) == 1
    assert trials[1].user_attrs == {STATUS: "crash"} and trials[2].user_attrs == {STATUS: "crash"}


@pytest.mark.skipif(POSTGRES is None, reason=NO_POSTGRES)
def test_on_postgresql_each_write_is_one_statement():
    storage = make_storage(postgres_database("tuner_rows"))
    study = _study(storage)
    sent: list[str] = []
    sqlalchemy.event.listen(storage.engine, "before_cursor_execute", lambda *args: sent.append(args[2]))
    rows = StudyRows(study, RunClock())
    _made(rows, user_attrs={})
    assert len(sent) == 4  # once per study: the distributions it holds (Optuna's rule), then the write
    sent.clear()
    made = _made(rows, user_attrs={})
    assert len(sent) == 3  # BEGIN with the study's lock, the trial's rows, COMMIT
    rows.update(made, user_attrs={STATUS: "ok", US: 1.0}, state=TrialState.COMPLETE, value=1.0)
    assert len(sent) == 4
    set_study_attrs(study, {"budget": 16, "device": "x"}, clock=RunClock())
    assert len(sent) == 5
    study.enqueue_trial({})  # Optuna's creation: the same three
    assert len(sent) == 8
    (waiting,) = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.WAITING]
    sent.clear()
    rows.take(waiting, params=PARAMS, distributions=DISTRIBUTIONS, system_attrs={OWNER: owner()})
    assert len(sent) == 1


def test_which_studies_exist_is_one_query_and_the_same_in_memory(tmp_path):
    storage = make_storage(f"sqlite:///{tmp_path}/s.db")
    for name in ("a", "b"):
        optuna.create_study(storage=storage, study_name=name)
    statements = []
    sqlalchemy.event.listen(storage.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    assert existing_studies(storage, ["a", "c", "b"]) == {"a", "b"}
    assert existing_studies(storage, []) == set()
    assert len(statements) == 1
    memory = optuna.storages.InMemoryStorage()
    optuna.create_study(storage=memory, study_name="a")
    assert existing_studies(memory, ["a", "c"]) == {"a"}


# --- failures inside a write ----------------------------------------------------------------------


def test_a_failing_rollback_does_not_hide_the_error_that_failed_the_write(tmp_path):
    # A trigger that rolls the whole transaction back: SQLite's own ROLLBACK then fails too ("no
    # transaction is active"), and the error the caller sees must be the trigger's.
    storage = make_storage(f"sqlite:///{tmp_path}/s.db")
    study = _study(storage)
    with storage.engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON trial_params BEGIN SELECT RAISE(ROLLBACK, 'params refused'); END"
        )
    with pytest.raises(sqlalchemy.exc.IntegrityError, match="params refused"):
        _made(StudyRows(study, RunClock()), user_attrs={})
    assert study.get_trials(deepcopy=False) == []  # nothing of the trial stayed
    assert StudyRows(study, RunClock()).create(new_trial(state=TrialState.RUNNING)).number == 0  # still usable


def _hold_lock(url: str, release: threading.Event, held: threading.Event, statement: str) -> None:
    """Another connection holds the write lock (SQLite) or the study's row (PostgreSQL) until release."""
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as connection:
        connection.exec_driver_sql(statement)
        held.set()
        release.wait(60)
        connection.rollback()
    engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
@pytest.mark.parametrize("held_s, tries", [(1.0, None), (None, 5)], ids=["released", "held"])
def test_creating_a_trial_is_retried_on_a_lock_timeout_like_optunas(tmp_path, monkeypatch, kind, held_s, tries):
    # A lock held past the storage's timeout fails a try (SQLite: database is locked; PostgreSQL:
    # lock_timeout); creation tries again, up to five times, as Optuna's own does.
    url = _url(kind, tmp_path)
    if kind == "sqlite":
        storage = TunerStorage(url, engine_kwargs={"connect_args": {"timeout": 0.2}})
        holding = "BEGIN IMMEDIATE"
    else:
        storage = TunerStorage(url, engine_kwargs={"connect_args": {"options": "-c lock_timeout=200"}})
        holding = "SELECT 1 FROM studies FOR UPDATE"
    study = _study(storage)
    pauses, sleep = [], time.sleep
    monkeypatch.setattr(tuner.study._rows.time, "sleep", lambda s: (pauses.append(s), sleep(0.3)))
    release, held = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_lock, args=(storage.url, release, held, holding))
    holder.start()
    assert held.wait(10)
    if held_s is not None:
        threading.Timer(held_s, release.set).start()
    rows = StudyRows(study, RunClock())
    try:
        if tries is None:
            assert rows.create(new_trial(state=TrialState.RUNNING)).number == 0
            assert 1 <= len(pauses) < 5
        else:
            with pytest.raises(optuna.exceptions.StorageInternalError, match="creating a trial failed 5 times"):
                rows.create(new_trial(state=TrialState.RUNNING))
            assert len(pauses) == 4 and all(0 <= s <= 2.0 for s in pauses)
    finally:
        release.set()
        holder.join(30)
