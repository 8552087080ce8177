"""A study's trials as rows of the storage: written one transaction per step, read again only where they changed.

Optuna's storage API commits every parameter and every attribute on its own (13-24 commits per
trial through `study.optimize`, milliseconds each on SQLite) and reads a study's trials through
six queries and its ORM each time. The tuner writes a timed trial twice: once as it is created
(its config, its claim on the budget or the reason it declined, its owner and its first
heartbeat) and once as it ends (the measurement's attributes, its value and its state); and it
reads a study once per trial with one query of (trial id, state) pairs, fetching in full only the
trials some other process wrote or may still change (Trials).

On an RDBStorage the writes are plain statements on Optuna's own tables (its models, as of Optuna
5.1; the datetimes converted by its model's own setters), and a trial's state moves only from the
state the write expects (RUNNING, or WAITING when a waiting trial is taken), its other rows written
only if it moved, so a trial another process ended is never written over. On SQLite a write is one
statement per table, in a transaction on a connection of its own that takes the file's write lock
first (BEGIN IMMEDIATE), so that the wait for it is counted apart (the run's clock: lock waits).
PostgreSQL has data-modifying CTEs, so there a write is one statement (a round trip costs more than
its work): ending a trial or taking a waiting one is an UPDATE that returns the trial and inserts
that select from it, committing on its own (one round trip; the UPDATE's row lock is the write's
lock, and its wait counts as storage); creating a trial is BEGIN with the study's row FOR UPDATE in
one round trip (its number counts the trials before it), the statement, and COMMIT. A timed config
thus costs 5 round trips there, its read included (13 with a statement per table). Any other
storage (the in-memory one of tuner.evaluate) gets the same values through Optuna's public calls, a
write each.
"""

from __future__ import annotations

import datetime
import functools
import json
import time
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution, distribution_to_json
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.dialects import postgresql

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


def _folds(rdb: RDBStorage) -> bool:
    """Whether a write goes as one statement of data-modifying CTEs (PostgreSQL's; SQLite has none)."""
    return rdb.engine.name == "postgresql"


def _autocommit(rdb: RDBStorage) -> Any:
    """A connection whose statements each commit on their own: no BEGIN or COMMIT to wait for."""
    return rdb.engine.connect().execution_options(isolation_level="AUTOCOMMIT")


# A write's rows of one table: (Optuna's model, rows without their owner's id, whether each replaces
# the row with the same owner and key).
_Rows = tuple[Any, list[dict[str, Any]], bool]


def _insert(session: Any, model: Any, rows: list[dict[str, Any]], **owner: Any) -> None:
    """rows into model's table, each with owner's column (trial_id=...), in one statement."""
    if rows:
        session.execute(sqlalchemy.insert(model.__table__), [{**owner, **row} for row in rows])


def _replace(session: Any, model: Any, rows: list[dict[str, Any]], **owner: Any) -> None:
    """rows into model's table, each replacing the row with the same owner and key if there is one."""
    table = model.__table__
    for row in ({**owner, **row} for row in rows):
        match = sqlalchemy.and_(*(table.c[k] == row[k] for k in (*owner, "key")))
        if session.execute(sqlalchemy.update(table).where(match).values(row)).rowcount == 0:
            session.execute(sqlalchemy.insert(table), [row])


def _write(session: Any, writes: list[_Rows], **owner: Any) -> None:
    """Each table's rows of a write, a statement each (two per replaced row)."""
    for model, rows, replace in writes:
        (_replace if replace else _insert)(session, model, rows, **owner)


def _shape(writes: list[_Rows]) -> tuple:
    """What a folded write's statement depends on: its tables, their columns, whether rows replace."""
    return tuple((model, tuple(rows[0]), replace) for model, rows, replace in writes if rows)


def _arrays(writes: list[_Rows]) -> dict[str, list]:
    """The parameters of a folded write's statement: each table's rows a column at a time (see _folded)."""
    tables = [rows for _, rows, _ in writes if rows]
    return {f"rows{i}_{n}": [row[n] for row in rows] for i, rows in enumerate(tables) for n in rows[0]}


def _folded(shape: tuple, owner: Any) -> list[Any]:
    """Each table's rows of a write as a data-modifying CTE: every row once for each value of owner.

    owner is a CTE's column: the trial an INSERT or UPDATE returned (nothing is written where it
    returned none), or the study. The rows come as one array per column (unnest zips them), so the statement is
    the same whatever the values and the number of rows, and SQLAlchemy compiles it once (VALUES
    with its data is compiled anew each time: 1.4 ms for an ended trial on a 2-core VM). Rows that
    replace use ON CONFLICT: no lock.
    """
    ctes = []
    for i, (model, names, replace) in enumerate(shape):
        table = model.__table__
        source, columns = owner.table, [owner]
        if names:  # a heartbeat's row is its trial and a default
            arrays = [sqlalchemy.bindparam(f"rows{i}_{n}", type_=postgresql.ARRAY(table.c[n].type)) for n in names]
            rows = sqlalchemy.func.unnest(*arrays).table_valued(*names).render_derived()
            source, columns = source.join(rows, sqlalchemy.true()), [*columns, *rows.c]
        insert = postgresql.insert(table).from_select(
            [owner.name, *names], sqlalchemy.select(*columns).select_from(source)
        )
        if replace:
            insert = insert.on_conflict_do_update(
                index_elements=[owner.name, "key"], set_={"value_json": insert.excluded.value_json}
            )
        ctes.append(insert.cte(f"{table.name}_{i}"))
    return ctes


def _stored_times(**times: datetime.datetime | None) -> dict[str, Any]:
    """The trials row's datetime columns as Optuna's model stores them (naive UTC as of Optuna 5)."""
    row = models.TrialModel(**times)  # never added to a session: its setters convert, nothing more
    mapper = sqlalchemy.inspect(models.TrialModel)
    return {name: getattr(row, mapper.get_property_by_column(_TRIALS.c[name]).key) for name in times}


@functools.cache
def _moved(columns: tuple[str, ...]) -> Any:
    """An UPDATE that moves trial from state was to state to (and sets columns), if it is in was."""
    match = sqlalchemy.and_(
        _TRIALS.c.trial_id == sqlalchemy.bindparam("trial"), _TRIALS.c.state == sqlalchemy.bindparam("was")
    )
    values = {c: sqlalchemy.bindparam(f"set_{c}", type_=_TRIALS.c[c].type) for c in ("state", *columns)}
    return sqlalchemy.update(_TRIALS).where(match).values(values)


@functools.cache
def _move_folded(columns: tuple[str, ...], shape: tuple) -> Any:
    """_moved and a write's rows for the trial it moved, in one statement that counts the trials moved."""
    moved = _moved(columns).returning(_TRIALS.c.trial_id).cte("moved")
    return sqlalchemy.select(sqlalchemy.func.count()).select_from(moved).add_cte(*_folded(shape, moved.c.trial_id))


def _move(
    rdb: RDBStorage,
    clock: RunClock,
    trial_id: int,
    was: TrialState,
    state: TrialState,
    columns: dict[str, Any],
    writes: list[_Rows],
) -> bool:
    """Move a trial from state was to state (setting columns) and write its rows; False if it was not in was.

    On PostgreSQL one statement that commits on its own: the UPDATE returns the trial only if it
    moved, and each insert takes its trial from that, so nothing is written for a trial another
    process moved first. The UPDATE's row lock stands in for FOR UPDATE: a second process moving
    the same trial waits for it, then finds the state changed. SQLite moves it first in a
    transaction of its own.
    """
    params = {"trial": trial_id, "was": was, "set_state": state, **{f"set_{c}": v for c, v in columns.items()}}
    if _folds(rdb):
        query = _move_folded(tuple(columns), _shape(writes))
        with clock.timing(STORAGE), _autocommit(rdb) as connection:
            return connection.execute(query, {**params, **_arrays(writes)}).scalar_one() == 1
    with _transaction(rdb, clock, (models.TrialModel, trial_id)) as session:
        if session.execute(_moved(tuple(columns)), params).rowcount != 1:
            return False  # first: a trial another process moved is left alone
        _write(session, writes, trial_id=trial_id)
    return True


def _attr_rows(attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "value_json": json.dumps(value)} for key, value in attrs.items()]


def _param_rows(params: Mapping[str, Any], distributions: Mapping[str, BaseDistribution]) -> list:
    return [
        {
            "param_name": name,
            "param_value": distributions[name].to_internal_repr(value),
            "distribution_json": distribution_to_json(distributions[name]),
        }
        for name, value in params.items()
    ]


def _value_rows(value: float | None, intermediate: float | None) -> tuple[list, list]:
    values, steps = [], []
    if value is not None:
        stored, kind = models.TrialValueModel.value_to_stored_repr(value)
        values.append({"objective": 0, "value": stored, "value_type": kind})
    if intermediate is not None:
        stored, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(intermediate)
        steps.append({"step": 0, "intermediate_value": stored, "intermediate_value_type": kind})
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


@functools.cache
def _created() -> Any:
    """An INSERT of a trial of study numbered after the trials it holds; returns its id and number."""
    study_id = sqlalchemy.bindparam("study", type_=_TRIALS.c.study_id.type)
    count = sqlalchemy.select(sqlalchemy.func.count()).where(_TRIALS.c.study_id == study_id).scalar_subquery()
    columns = ("state", "datetime_start", "datetime_complete")
    values = {c: sqlalchemy.bindparam(f"set_{c}", type_=_TRIALS.c[c].type) for c in columns}
    return (
        sqlalchemy.insert(_TRIALS)
        .values(study_id=study_id, number=count, **values)
        .returning(_TRIALS.c.trial_id, _TRIALS.c.number)
    )


@functools.cache
def _create_folded(shape: tuple) -> Any:
    """_created and a write's rows for the trial it made, in one statement."""
    new = _created().cte("new")
    return sqlalchemy.select(new.c.trial_id, new.c.number).add_cte(*_folded(shape, new.c.trial_id))


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

    beat = state == TrialState.RUNNING and rdb.get_heartbeat_interval() is not None
    writes = [
        (models.TrialParamModel, _param_rows(trial.params, trial.distributions), False),
        (models.TrialUserAttributeModel, _attr_rows(trial.user_attrs), False),
        (models.TrialSystemAttributeModel, _attr_rows(trial.system_attrs), False),
        (models.TrialHeartbeatModel, [{}] if beat else [], False),
    ]
    times = _stored_times(datetime_start=now, datetime_complete=trial.datetime_complete)
    params = {"study": study_id, **{f"set_{c}": v for c, v in {"state": state, **times}.items()}}
    with _transaction(rdb, clock, (models.StudyModel, study_id)) as session:
        # Its number counts the trials before it; the lock keeps other creators out until the commit.
        if _folds(rdb):  # the other tables' rows in the same statement, their trial from its INSERT
            trial_id, number = session.execute(_create_folded(_shape(writes)), {**params, **_arrays(writes)}).one()
        else:
            trial_id, number = session.execute(_created(), params).one()
            _write(session, writes, trial_id=trial_id)
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
        added = {k: v for k, v in attrs.items() if k not in trial.user_attrs}
        changed = {k: v for k, v in attrs.items() if k in trial.user_attrs}
        values, steps = _value_rows(value, intermediate)
        writes = [
            (models.TrialUserAttributeModel, _attr_rows(added), False),
            (models.TrialUserAttributeModel, _attr_rows(changed), True),
            (models.TrialValueModel, values, False),
            (models.TrialIntermediateValueModel, steps, False),
        ]
        if not _move(rdb, clock, trial_id, TrialState.RUNNING, state or TrialState.RUNNING, columns, writes):
            raise optuna.exceptions.UpdateFinishedTrialError(f"trial {trial.number} is no longer running.")
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
        beat = rdb.get_heartbeat_interval() is not None
        writes = [
            (models.TrialParamModel, _param_rows(params, distributions), False),
            (models.TrialSystemAttributeModel, _attr_rows(system_attrs), True),
            (models.TrialHeartbeatModel, [{}] if beat else [], False),
        ]
        started = _stored_times(datetime_start=now)
        if not _move(rdb, clock, trial_id, TrialState.WAITING, TrialState.RUNNING, started, writes):
            return None  # another process took it
    return _with(
        trial,
        state=TrialState.RUNNING,
        datetime_start=now,
        params={**trial.params, **params},
        distributions={**trial.distributions, **{k: distributions[k] for k in params}},
        system_attrs={**trial.system_attrs, **system_attrs},
    )


@functools.cache
def _study_attrs_folded(shape: tuple) -> Any:
    """A study's attributes written in one statement (see _folded)."""
    study = sqlalchemy.select(sqlalchemy.bindparam("study", type_=sqlalchemy.Integer).label("study_id")).cte("study")
    return sqlalchemy.select(sqlalchemy.func.count()).select_from(study).add_cte(*_folded(shape, study.c.study_id))


def set_study_attrs(storage: BaseStorage, study_id: int, attrs: Mapping[str, Any], *, clock: RunClock) -> None:
    """A study's user attributes in one write (Optuna commits each on its own)."""
    rdb = rdb_of(storage)
    if rdb is None:
        with clock.timing(STORAGE):
            for key, value in attrs.items():
                storage.set_study_user_attr(study_id, key, value)
        return

    rows = _attr_rows(attrs)
    if _folds(rdb):  # one statement, each attribute inserted or replaced as it finds it
        writes = [(models.StudyUserAttributeModel, rows, True)]
        if rows:
            with clock.timing(STORAGE), _autocommit(rdb) as connection:
                connection.execute(_study_attrs_folded(_shape(writes)), {"study": study_id, **_arrays(writes)})
        return
    with _transaction(rdb, clock, (models.StudyModel, study_id)) as session:
        _replace(session, models.StudyUserAttributeModel, rows, study_id=study_id)


def existing_studies(storage: BaseStorage, names: Collection[str]) -> set[str]:
    """Which of names are studies in storage: one query on an RDBStorage.

    Optuna looks a study up by name in a transaction of its own, and one that is not there costs as
    much as one that is: the warm starts ask after up to 17 batch sizes a study, most not tuned yet.
    """
    rdb = rdb_of(storage)
    if not names:
        return set()
    if rdb is None:
        return set(names) & {study.study_name for study in storage.get_all_studies()}
    column = models.StudyModel.__table__.c.study_name
    with _autocommit(rdb) as connection:
        return set(connection.execute(sqlalchemy.select(column).where(column.in_(list(names)))).scalars())


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
            with _autocommit(self._rdb) as connection:
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
