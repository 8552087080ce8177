"""A study's trials as rows of the storage: written one transaction per step, read again only where they changed.

Optuna's storage API commits every parameter and every attribute on its own (13-24 commits per
trial through `study.optimize`, milliseconds each on SQLite) and reads a study's trials through
six queries and its ORM each time. The tuner writes a timed trial twice: once as it is created
(its config, its claim on the budget or the reason it declined, its owner and its first
heartbeat) and once as it ends (the measurement's attributes, its value and its state); and it
reads a study once per trial with one query of (trial id, state) pairs, fetching in full only the
trials some other process wrote or may still change (Trials).

On an RDBStorage the writes are plain statements on Optuna's own tables (its models, as of Optuna
5.1; the datetimes converted by its model's own setters), one statement per table, on a connection
of their own that begins and commits the transaction itself (PostgreSQL's BEGIN and the lock go in
one round trip; the driver would send its own BEGIN in another). Each write takes the storage's
write lock first, so that the wait for it is counted apart (the run's clock: lock waits), and a
trial's state moves only from the state the write expects (RUNNING, or WAITING when a waiting
trial is taken), so a trial another process ended is never written over. Any other
storage (the in-memory one of tuner.evaluate) gets the same values through Optuna's public calls,
a write each.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution, distribution_to_json
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState

from tuner.benchmarkers import LOCK_WAITS, STORAGE, RunClock

_TRIALS = models.TrialModel.__table__


def rdb_of(storage: BaseStorage) -> RDBStorage | None:
    """The RDBStorage under storage (optuna.create_study wraps one in a cache per study), if any."""
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, RDBStorage) else None


@contextmanager
def _transaction(rdb: RDBStorage, clock: RunClock, row: tuple[Any, int]) -> Iterator[Any]:
    """One transaction that holds the write lock from its first statement, on a connection of its own.

    SQLite takes the whole file's lock with BEGIN IMMEDIATE (a deferred transaction that reads first
    could be refused the lock at once when another process wrote in between, instead of waiting);
    PostgreSQL takes the row (a table's model, its primary key) FOR UPDATE, in the same round trip as
    its BEGIN. That wait counts as lock waits, the rest of the transaction as storage.
    """
    model, key = row
    if rdb.engine.name == "sqlite":
        begin = "BEGIN IMMEDIATE"
    else:
        (column,) = model.__table__.primary_key.columns
        begin = f"BEGIN; SELECT 1 FROM {model.__tablename__} WHERE {column.name} = {int(key)} FOR UPDATE"
    started = time.perf_counter()
    waited = 0.0
    try:
        with rdb.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql(begin)
            waited = time.perf_counter() - started
            try:
                yield connection
            except BaseException:
                connection.exec_driver_sql("ROLLBACK")
                raise
            connection.exec_driver_sql("COMMIT")
    finally:
        clock.add(LOCK_WAITS, waited)
        clock.add(STORAGE, time.perf_counter() - started - waited)


def _insert(session: Any, model: Any, rows: list[dict[str, Any]]) -> None:
    """rows into model's table, in one statement."""
    if rows:
        session.execute(sqlalchemy.insert(model.__table__), rows)


def _replace(session: Any, model: Any, rows: list[dict[str, Any]], key: tuple[str, str]) -> None:
    """rows into model's table, each replacing the row with the same key if there is one."""
    table = model.__table__
    for row in rows:
        match = sqlalchemy.and_(*(table.c[k] == row[k] for k in key))
        if session.execute(sqlalchemy.update(table).where(match).values(row)).rowcount == 0:
            session.execute(sqlalchemy.insert(table), [row])


def _stored_times(**times: datetime.datetime | None) -> dict[str, Any]:
    """The trials row's datetime columns as Optuna's model stores them (naive UTC as of Optuna 5)."""
    row = models.TrialModel(**times)  # never added to a session: its setters convert, nothing more
    mapper = sqlalchemy.inspect(models.TrialModel)
    return {name: getattr(row, mapper.get_property_by_column(_TRIALS.c[name]).key) for name in times}


def _set_state(session: Any, trial_id: int, was: TrialState, state: TrialState, **columns: Any) -> bool:
    """Move a trial from state was to state (and set columns), locking its row; False if it was not in was."""
    match = sqlalchemy.and_(_TRIALS.c.trial_id == trial_id, _TRIALS.c.state == was)
    return session.execute(sqlalchemy.update(_TRIALS).where(match).values(state=state, **columns)).rowcount == 1


def _attr_rows(trial_id: int, attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"trial_id": trial_id, "key": key, "value_json": json.dumps(value)} for key, value in attrs.items()]


def _param_rows(trial_id: int, params: Mapping[str, Any], distributions: Mapping[str, BaseDistribution]) -> list:
    return [
        {
            "trial_id": trial_id,
            "param_name": name,
            "param_value": distributions[name].to_internal_repr(value),
            "distribution_json": distribution_to_json(distributions[name]),
        }
        for name, value in params.items()
    ]


def _value_rows(trial_id: int, value: float | None, intermediate: float | None) -> tuple[list, list]:
    values, steps = [], []
    if value is not None:
        stored, kind = models.TrialValueModel.value_to_stored_repr(value)
        values.append({"trial_id": trial_id, "objective": 0, "value": stored, "value_type": kind})
    if intermediate is not None:
        stored, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(intermediate)
        steps.append({"trial_id": trial_id, "step": 0, "intermediate_value": stored, "intermediate_value_type": kind})
    return values, steps


def _with(trial: FrozenTrial, **changes: Any) -> FrozenTrial:
    """trial with some fields changed (FrozenTrial has no replace)."""
    fields = {
        "number": trial.number,
        "state": trial.state,
        "value": None,
        "values": trial.values,
        "datetime_start": trial.datetime_start,
        "datetime_complete": trial.datetime_complete,
        "params": trial.params,
        "distributions": trial.distributions,
        "user_attrs": trial.user_attrs,
        "system_attrs": trial.system_attrs,
        "intermediate_values": trial.intermediate_values,
        "trial_id": trial._trial_id,
    }
    return FrozenTrial(**{**fields, **changes})


def create_trial(
    storage: BaseStorage,
    study_id: int,
    *,
    params: Mapping[str, Any],
    distributions: Mapping[str, BaseDistribution],
    user_attrs: Mapping[str, Any],
    system_attrs: Mapping[str, Any] | None = None,
    state: TrialState = TrialState.RUNNING,
    clock: RunClock,
) -> FrozenTrial:
    """A new trial with its parameters and attributes in one write; RUNNING ones get a first heartbeat.

    Returns the trial as written, with the number the storage gave it.
    """
    now = datetime.datetime.now()
    trial = FrozenTrial(
        number=-1,
        state=state,
        value=None,
        values=None,
        datetime_start=now,
        datetime_complete=now if state.is_finished() else None,
        params=dict(params),
        distributions=dict(distributions),
        user_attrs=dict(user_attrs),
        system_attrs=dict(system_attrs or {}),
        intermediate_values={},
        trial_id=-1,
    )
    rdb = rdb_of(storage)
    if rdb is None:
        with clock.timing(STORAGE):
            return storage.get_trial(storage.create_new_trial(study_id, template_trial=trial))

    with _transaction(rdb, clock, (models.StudyModel, study_id)) as session:
        # Its number counts the trials before it; the lock keeps other creators out until the commit.
        count = sqlalchemy.select(sqlalchemy.func.count()).where(_TRIALS.c.study_id == study_id).scalar_subquery()
        times = _stored_times(datetime_start=now, datetime_complete=trial.datetime_complete)
        row = {"study_id": study_id, "number": count, "state": state, **times}
        insert = sqlalchemy.insert(_TRIALS).values(row).returning(_TRIALS.c.trial_id, _TRIALS.c.number)
        trial_id, number = session.execute(insert).one()
        _insert(session, models.TrialParamModel, _param_rows(trial_id, trial.params, trial.distributions))
        _insert(session, models.TrialUserAttributeModel, _attr_rows(trial_id, trial.user_attrs))
        _insert(session, models.TrialSystemAttributeModel, _attr_rows(trial_id, trial.system_attrs))
        if state == TrialState.RUNNING and rdb.get_heartbeat_interval() is not None:
            _insert(session, models.TrialHeartbeatModel, [{"trial_id": trial_id}])
    return _with(trial, number=number, trial_id=trial_id)


def update_trial(
    storage: BaseStorage,
    trial: FrozenTrial,
    *,
    user_attrs: Mapping[str, Any] | None = None,
    state: TrialState | None = None,
    value: float | None = None,
    intermediate: float | None = None,
    clock: RunClock,
) -> FrozenTrial:
    """Attributes, a first estimate (step 0), a value and a new state of a live trial in one write.

    Returns trial as it is now. Raises optuna.exceptions.UpdateFinishedTrialError if another
    process ended the trial first.
    """
    trial_id = trial._trial_id
    attrs = dict(user_attrs or {})
    now = datetime.datetime.now()
    rdb = rdb_of(storage)
    if rdb is None:
        with clock.timing(STORAGE):
            storage.check_trial_is_updatable(trial_id, storage.get_trial(trial_id).state)
            for key, attr in attrs.items():
                storage.set_trial_user_attr(trial_id, key, attr)
            if intermediate is not None:
                storage.set_trial_intermediate_value(trial_id, 0, intermediate)
            if state is not None:
                storage.set_trial_state_values(trial_id, state, None if value is None else [value])
    else:
        ended = state is not None and state.is_finished()
        columns = _stored_times(datetime_complete=now) if ended else {}

        with _transaction(rdb, clock, (models.TrialModel, trial_id)) as session:
            # First: a trial another process ended is left alone.
            if not _set_state(session, trial_id, TrialState.RUNNING, state or TrialState.RUNNING, **columns):
                raise optuna.exceptions.UpdateFinishedTrialError(f"trial {trial.number} is no longer running.")
            added = {k: v for k, v in attrs.items() if k not in trial.user_attrs}
            _insert(session, models.TrialUserAttributeModel, _attr_rows(trial_id, added))
            changed = {k: v for k, v in attrs.items() if k in trial.user_attrs}
            _replace(session, models.TrialUserAttributeModel, _attr_rows(trial_id, changed), ("trial_id", "key"))
            values, steps = _value_rows(trial_id, value, intermediate)
            _insert(session, models.TrialValueModel, values)
            _insert(session, models.TrialIntermediateValueModel, steps)
    ended = state is not None and state.is_finished()
    return _with(
        trial,
        state=trial.state if state is None else state,
        values=trial.values if value is None else [value],
        user_attrs={**trial.user_attrs, **attrs},
        intermediate_values=trial.intermediate_values if intermediate is None else {0: intermediate},
        datetime_complete=now if ended else trial.datetime_complete,
    )


def take_waiting(
    storage: BaseStorage,
    trial: FrozenTrial,
    *,
    params: Mapping[str, Any],
    distributions: Mapping[str, BaseDistribution],
    system_attrs: Mapping[str, Any],
    clock: RunClock,
) -> FrozenTrial | None:
    """Start a waiting trial (a retry, or an enqueued config) as this process's, with a first heartbeat.

    params are written too where the trial holds none yet (an enqueued trial keeps its config in a
    system attribute until it runs). Returns the trial as it is now, None if another process took
    it first.
    """
    trial_id = trial._trial_id
    now = datetime.datetime.now()
    rdb = rdb_of(storage)
    if rdb is None:
        with clock.timing(STORAGE):
            if not storage.set_trial_state_values(trial_id, TrialState.RUNNING):
                return None
            for name, value in params.items():
                internal = distributions[name].to_internal_repr(value)
                storage.set_trial_param(trial_id, name, internal, distributions[name])
            for key, attr in system_attrs.items():
                storage.set_trial_system_attr(trial_id, key, attr)
    else:
        started = _stored_times(datetime_start=now)

        with _transaction(rdb, clock, (models.TrialModel, trial_id)) as session:
            if not _set_state(session, trial_id, TrialState.WAITING, TrialState.RUNNING, **started):
                return None  # another process took it
            _insert(session, models.TrialParamModel, _param_rows(trial_id, params, distributions))
            _replace(session, models.TrialSystemAttributeModel, _attr_rows(trial_id, system_attrs), ("trial_id", "key"))
            if rdb.get_heartbeat_interval() is not None:
                _insert(session, models.TrialHeartbeatModel, [{"trial_id": trial_id}])
    return _with(
        trial,
        state=TrialState.RUNNING,
        datetime_start=now,
        params={**trial.params, **params},
        distributions={**trial.distributions, **{k: distributions[k] for k in params}},
        system_attrs={**trial.system_attrs, **system_attrs},
    )


def set_study_attrs(storage: BaseStorage, study_id: int, attrs: Mapping[str, Any], *, clock: RunClock) -> None:
    """A study's user attributes in one write (Optuna commits each on its own)."""
    rdb = rdb_of(storage)
    if rdb is None:
        with clock.timing(STORAGE):
            for key, value in attrs.items():
                storage.set_study_user_attr(study_id, key, value)
        return

    rows = [{"study_id": study_id, "key": key, "value_json": json.dumps(value)} for key, value in attrs.items()]
    with _transaction(rdb, clock, (models.StudyModel, study_id)) as session:
        _replace(session, models.StudyUserAttributeModel, rows, ("study_id", "key"))


class Trials:
    """A study's trials as this process last saw them, read again only where they may have changed.

    Each read asks the storage for every trial's id and state (one query) and fetches in full the
    trials this process has not seen, those whose state changed, and the unfinished trials of
    other processes (whose claims may have come since). The trials this process wrote it knows
    already (note). A single process thus reads one small query per trial; Optuna's cache per
    study reads the latest trials through six queries and its ORM each time.
    """

    def __init__(self, study: optuna.Study, clock: RunClock) -> None:
        self._study = study
        self._rdb = rdb_of(study._storage)
        self._clock = clock
        self._known: dict[int, FrozenTrial] = {}  # trial id -> trial
        self._mine: set[int] = set()

    def note(self, trial: FrozenTrial) -> FrozenTrial:
        """Record trial as this process wrote it; returns it."""
        self._known[trial._trial_id] = trial
        self._mine.add(trial._trial_id)
        return trial

    def read(self, category: str = STORAGE) -> list[FrozenTrial]:
        """The study's trials now, by number; the time counts against category on the clock."""
        with self._clock.timing(category):
            if self._rdb is None:
                return self._study.get_trials(deepcopy=False)
            study_id = self._study._study_id
            query = sqlalchemy.select(_TRIALS.c.trial_id, _TRIALS.c.state).where(_TRIALS.c.study_id == study_id)
            with self._rdb.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                states = dict(connection.execute(query).all())  # one query, no transaction to begin and end
            stale = {
                trial_id
                for trial_id, state in states.items()
                if (known := self._known.get(trial_id)) is None
                or known.state != state
                or (not state.is_finished() and trial_id not in self._mine)
            }
            if stale:
                for trial in self._rdb._get_trials(study_id, None, stale, max(stale)):
                    self._known[trial._trial_id] = trial
                    self._mine.discard(trial._trial_id)  # as stored now, whoever changed it
            return sorted(self._known.values(), key=lambda t: t.number)
