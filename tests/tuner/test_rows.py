"""A trial's rows as the tuner writes them: what Optuna reads back, and never over another process's end.

Each test runs on SQLite and, where TUNER_TEST_POSTGRES names a server, on PostgreSQL, whose writes
are one statement each (the trial's creation three: BEGIN with the study's lock, the rows, COMMIT).
"""

from __future__ import annotations

import threading
import time

import optuna
import pytest
import sqlalchemy
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState

from tests.tuner.synthetic import NO_POSTGRES, POSTGRES, postgres_database
from tuner.benchmarkers import RunClock
from tuner.samplers import distributions
from tuner.space import REASON, STATUS, TIMED, US, default_config, search_space
from tuner.study import make_storage
from tuner.study._liveness import OWNER, owner
from tuner.study._rows import create_trial, existing_studies, set_study_attrs, take_waiting, update_trial

DISTRIBUTIONS = distributions(search_space(128))
PARAMS = default_config(128, 128).params(tuple(DISTRIBUTIONS))


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, tmp_path) -> RDBStorage:
    if request.param == "postgresql" and POSTGRES is None:
        pytest.skip(NO_POSTGRES)
    return make_storage(f"sqlite:///{tmp_path}/s.db" if request.param == "sqlite" else postgres_database("tuner_rows"))


def _study(storage: RDBStorage) -> optuna.Study:
    return optuna.create_study(storage=storage, study_name="rows", direction="minimize")


def _beating(storage: RDBStorage) -> list[int]:
    """The trials with a heartbeat row."""
    with storage.engine.connect() as connection:
        return sorted(connection.execute(sqlalchemy.select(models.TrialHeartbeatModel.trial_id)).scalars())


def _assert_reads_back(storage: RDBStorage, written: FrozenTrial) -> None:
    """Optuna's own reading of the trial (no cache) holds what the write says it wrote."""
    stored = storage.get_trial(written._trial_id)
    assert (stored.number, stored.state, stored.values) == (written.number, written.state, written.values)
    assert stored.params == written.params and stored.distributions == written.distributions
    assert stored.user_attrs == written.user_attrs and stored.system_attrs == written.system_attrs
    assert stored.intermediate_values == written.intermediate_values
    assert (stored.datetime_complete is None) == (written.datetime_complete is None)


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
    study = _study(storage)
    clock = RunClock()
    made = create_trial(
        storage,
        study._study_id,
        params=PARAMS,
        distributions=DISTRIBUTIONS,
        user_attrs={TIMED: True},
        system_attrs={OWNER: owner()},
        clock=clock,
    )
    assert made.number == 0
    _assert_reads_back(storage, made)
    assert _beating(storage) == [made._trial_id]
    # TIMED is replaced, the rest added.
    attrs = {TIMED: state != TrialState.FAIL, STATUS: state.name.lower(), US: 12.5, REASON: "why"}
    ended = update_trial(
        storage, made, user_attrs=attrs, state=state, value=value, intermediate=intermediate, clock=clock
    )
    assert ended.user_attrs == attrs
    _assert_reads_back(storage, ended)
    second = create_trial(storage, study._study_id, params={}, distributions={}, user_attrs={}, clock=clock)
    assert second.number == 1


def test_a_waiting_trial_is_taken_once_with_its_config_owner_and_heartbeat(storage):
    study = _study(storage)
    study.enqueue_trial(default_config(128, 128).as_sglang())
    (waiting,) = study.get_trials(deepcopy=False)
    clock = RunClock()
    mine = {OWNER: owner()}
    taken = take_waiting(storage, waiting, params=PARAMS, distributions=DISTRIBUTIONS, system_attrs=mine, clock=clock)
    assert taken.state == TrialState.RUNNING and taken.system_attrs[OWNER] == mine[OWNER]
    _assert_reads_back(storage, taken)
    assert _beating(storage) == [waiting._trial_id]
    theirs = {OWNER: {**owner(), "pid": 1}}
    again = take_waiting(storage, waiting, params=PARAMS, distributions=DISTRIBUTIONS, system_attrs=theirs, clock=clock)
    assert again is None
    _assert_reads_back(storage, taken)  # the second process wrote nothing


def test_a_trial_another_process_ended_is_not_written_over(storage):
    study = _study(storage)
    clock = RunClock()
    made = create_trial(
        storage, study._study_id, params=PARAMS, distributions=DISTRIBUTIONS, user_attrs={}, clock=clock
    )
    storage.set_trial_state_values(made._trial_id, TrialState.FAIL)  # the other process, through Optuna
    with pytest.raises(UpdateFinishedTrialError):
        update_trial(
            storage,
            made,
            user_attrs={STATUS: "ok"},
            state=TrialState.COMPLETE,
            value=1.0,
            intermediate=1.0,
            clock=clock,
        )
    stored = storage.get_trial(made._trial_id)
    assert stored.state == TrialState.FAIL and stored.user_attrs == {}
    assert stored.values is None and stored.intermediate_values == {}


def test_a_trial_another_process_ends_while_this_one_waits_for_it_is_not_written_over(storage):
    # The other process holds the trial's row (PostgreSQL) or the file's write lock (SQLite), having
    # failed the trial; this process's write waits for it, then finds the trial ended.
    study = _study(storage)
    clock = RunClock()
    made = create_trial(
        storage, study._study_id, params=PARAMS, distributions=DISTRIBUTIONS, user_attrs={}, clock=clock
    )
    other = sqlalchemy.create_engine(storage.engine.url)
    outcome: list[BaseException | FrozenTrial] = []

    def end() -> None:
        try:
            outcome.append(
                update_trial(
                    storage, made, user_attrs={STATUS: "ok"}, state=TrialState.COMPLETE, value=1.0, clock=clock
                )
            )
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
    set_study_attrs(storage, study._study_id, {"budget": 16, "device": "x"}, clock=RunClock())
    set_study_attrs(storage, study._study_id, {"budget": 32, "schedules": [1, 2]}, clock=RunClock())
    assert storage.get_study_user_attrs(study._study_id) == {"budget": 32, "device": "x", "schedules": [1, 2]}


@pytest.mark.skipif(POSTGRES is None, reason=NO_POSTGRES)
def test_on_postgresql_each_write_is_one_statement():
    storage = make_storage(postgres_database("tuner_rows"))
    study = _study(storage)
    sent: list[str] = []
    sqlalchemy.event.listen(storage.engine, "before_cursor_execute", lambda *args: sent.append(args[2]))
    clock = RunClock()
    made = create_trial(
        storage, study._study_id, params=PARAMS, distributions=DISTRIBUTIONS, user_attrs={}, clock=clock
    )
    assert len(sent) == 3  # BEGIN with the study's lock, the trial's rows, COMMIT
    update_trial(storage, made, user_attrs={STATUS: "ok", US: 1.0}, state=TrialState.COMPLETE, value=1.0, clock=clock)
    assert len(sent) == 4
    set_study_attrs(storage, study._study_id, {"budget": 16, "device": "x"}, clock=clock)
    assert len(sent) == 5
    study.enqueue_trial({})
    (waiting,) = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.WAITING]
    sent.clear()
    take_waiting(
        storage, waiting, params=PARAMS, distributions=DISTRIBUTIONS, system_attrs={OWNER: owner()}, clock=clock
    )
    assert len(sent) == 1


def test_which_studies_exist_is_one_query_and_the_same_in_memory(storage):
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
