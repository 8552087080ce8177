"""How a trial reaches the storage: one writer per kind of storage, each writing a trial in one step.

Optuna's storage API commits every parameter and every attribute on its own (13-24 commits per
trial through `study.optimize`, milliseconds each on SQLite). The tuner writes a timed trial twice:
once as it is created (its config, its claim on the budget or the reason it declined, its owner and
its first heartbeat) and once as it ends (the measurement's attributes, its value and its state).

Three writers do that, one chosen per storage (tuner.study._store):
- SqliteRows: plain statements on Optuna's own tables (its models; the datetimes converted by its
  model's own setters), a statement per table, in a transaction on a connection of its own that
  takes the file's write lock first (BEGIN IMMEDIATE), so that the wait for it is counted apart
  (the run's clock: lock waits).
- PostgresRows: the same rows as data-modifying CTEs, so a write is one statement (a round trip
  costs more than its work): moving a trial is an UPDATE that returns the trial and inserts that
  select from it, committing on its own (the UPDATE's row lock is the write's lock, and its wait
  counts as storage); creating a trial is BEGIN with the study's row FOR UPDATE in one round trip,
  the statement, and COMMIT. A timed config thus costs 5 round trips, its read included.
- ApiRows: the same values through Optuna's public calls, a write each: any other storage (MySQL,
  an untested Optuna, the in-memory one of tuner.evaluate).

A trial's state moves only from the state the write expects (RUNNING, or WAITING when a waiting
trial is taken), its other rows written only if it moved, so a trial another process ended is never
written over. A trial is created, where the caller says how many trials it expects before it, only
if the study holds that many (the row writers count them under the study's lock): a creation that
lost the race to another process is not stored at all, and the caller proposes anew.
"""

from __future__ import annotations

import datetime
import functools
import json
import random
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution, check_distribution_compatibility, distribution_to_json
from optuna.distributions import json_to_distribution as distribution_from_json
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.dialects import postgresql

from tuner.benchmarkers import LOCK_WAITS, STORAGE, RunClock
from tuner.stopping import TuningError

_TRIALS = models.TrialModel.__table__
# Creating a trial is tried this often on a lock timeout, a deadlock or a dropped connection, with
# a random pause of up to _RETRY_PAUSE_S between tries: Optuna's own creation does the same.
CREATE_TRIES = 5
_RETRY_PAUSE_S = 2.0


def new_trial(
    *,
    state: TrialState,
    params: Mapping[str, Any] | None = None,
    distributions: Mapping[str, BaseDistribution] | None = None,
    user_attrs: Mapping[str, Any] | None = None,
    system_attrs: Mapping[str, Any] | None = None,
    start: datetime.datetime | None = None,
) -> FrozenTrial:
    """A trial to create (number and id still -1), started now unless start says otherwise."""
    now = start or datetime.datetime.now()
    return FrozenTrial(
        number=-1,
        state=state,
        value=None,
        values=None,
        datetime_start=now,
        datetime_complete=now if state.is_finished() else None,
        params=dict(params or {}),
        distributions=dict(distributions or {}),
        user_attrs=dict(user_attrs or {}),
        system_attrs=dict(system_attrs or {}),
        intermediate_values={},
        trial_id=-1,
    )


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


def moved(
    trial: FrozenTrial,
    *,
    state: TrialState,
    user_attrs: Mapping[str, Any],
    system_attrs: Mapping[str, Any],
    params: Mapping[str, Any],
    distributions: Mapping[str, BaseDistribution],
    value: float | None,
    intermediate: float | None,
    now: datetime.datetime,
) -> FrozenTrial:
    """trial as a move to state with these changes leaves it (what every writer returns)."""
    return _with(
        trial,
        state=state,
        values=trial.values if value is None else [value],
        datetime_start=now if trial.state == TrialState.WAITING else trial.datetime_start,
        datetime_complete=now if state.is_finished() else trial.datetime_complete,
        params={**trial.params, **params},
        distributions={**trial.distributions, **{k: distributions[k] for k in params}},
        user_attrs={**trial.user_attrs, **user_attrs},
        system_attrs={**trial.system_attrs, **system_attrs},
        intermediate_values=trial.intermediate_values if intermediate is None else {0: intermediate},
    )


class Rows:
    """What the tuner asks of a storage; each writer answers it its own way (see the module's doc)."""

    def create(
        self, study_id: int, trial: FrozenTrial, *, beat: bool, expect: int | None, clock: RunClock
    ) -> FrozenTrial | None:
        """trial with its rows in one write; beat: with a first heartbeat. Returns it as written, with
        its number; None if expect is given and the study holds another number of trials (nothing
        written). A writer that cannot tell writes the trial regardless: its number says."""
        raise NotImplementedError

    def move(
        self,
        trial: FrozenTrial,
        *,
        state: TrialState,
        user_attrs: Mapping[str, Any],
        system_attrs: Mapping[str, Any],
        params: Mapping[str, Any],
        distributions: Mapping[str, BaseDistribution],
        value: float | None,
        intermediate: float | None,
        beat: bool,
        clock: RunClock,
    ) -> FrozenTrial | None:
        """Move trial from the state it was read in (RUNNING or WAITING) to state with these changes.

        Returns it as it is now; None, with nothing written, if it is no longer in that state.
        """
        raise NotImplementedError

    def set_study_attrs(self, study_id: int, attrs: Mapping[str, Any], *, clock: RunClock) -> None:
        """A study's user attributes in one write."""
        raise NotImplementedError

    def existing_studies(self, names: Collection[str]) -> set[str]:
        """Which of names are studies in the storage."""
        raise NotImplementedError

    def states(self, study_id: int) -> dict[int, TrialState] | None:
        """Each trial's state by id in one small query; None where the writer reads whole trials only."""
        return None

    def trials(self, study_id: int, trial_ids: Collection[int] | None = None) -> list[FrozenTrial]:
        """The study's trials (only those of trial_ids, if given)."""
        raise NotImplementedError

    def check_distributions(self, study_id: int, distributions: Mapping[str, BaseDistribution]) -> None:
        """Raise TuningError if the study holds other distributions of these parameters (Optuna's rule)."""


# --- the row writers: SQLite and PostgreSQL -----------------------------------------------------------

# A write's rows of one table: (Optuna's model, rows without their owner's id, whether each replaces
# the row with the same owner and key).
_Rows = tuple[Any, list[dict[str, Any]], bool]


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


def _value_rows(values: list[float] | None, steps: Mapping[int, float]) -> tuple[list, list]:
    value_rows, step_rows = [], []
    for objective, value in enumerate(values or []):
        stored, kind = models.TrialValueModel.value_to_stored_repr(value)
        value_rows.append({"objective": objective, "value": stored, "value_type": kind})
    for step, intermediate in steps.items():
        stored, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(intermediate)
        step_rows.append({"step": step, "intermediate_value": stored, "intermediate_value_type": kind})
    return value_rows, step_rows


def _attr_writes(model: Any, attrs: Mapping[str, Any], known: Mapping[str, Any]) -> list[_Rows]:
    """attrs as rows of model: those the trial holds already replace theirs, the others are added."""
    added = {k: v for k, v in attrs.items() if k not in known}
    changed = {k: v for k, v in attrs.items() if k in known}
    return [(model, _attr_rows(added), False), (model, _attr_rows(changed), True)]


def _stored_times(**times: datetime.datetime | None) -> dict[str, Any]:
    """The trials row's datetime columns as Optuna's model stores them (naive UTC as of Optuna 5)."""
    row = models.TrialModel(**times)  # never added to a session: its setters convert, nothing more
    mapper = sqlalchemy.inspect(models.TrialModel)
    return {name: getattr(row, mapper.get_property_by_column(_TRIALS.c[name]).key) for name in times}


@functools.cache
def _moving(columns: tuple[str, ...]) -> Any:
    """An UPDATE that moves trial from state was to state to (and sets columns), if it is in was."""
    match = sqlalchemy.and_(
        _TRIALS.c.trial_id == sqlalchemy.bindparam("trial"), _TRIALS.c.state == sqlalchemy.bindparam("was")
    )
    values = {c: sqlalchemy.bindparam(f"set_{c}", type_=_TRIALS.c[c].type) for c in ("state", *columns)}
    return sqlalchemy.update(_TRIALS).where(match).values(values)


_CREATED_COLUMNS = ("state", "datetime_start", "datetime_complete")


@functools.cache
def _creating(expecting: bool) -> Any:
    """An INSERT of a trial of study numbered after the trials it holds; returns its id and number.

    expecting: only if the study holds `expect` trials (else it inserts nothing and returns no row).
    """
    study_id = sqlalchemy.bindparam("study", type_=_TRIALS.c.study_id.type)
    count = sqlalchemy.func.count(_TRIALS.c.trial_id)
    values = [sqlalchemy.bindparam(f"set_{c}", type_=_TRIALS.c[c].type) for c in _CREATED_COLUMNS]
    source = sqlalchemy.select(study_id, count, *values).where(_TRIALS.c.study_id == study_id)
    if expecting:
        source = source.having(count == sqlalchemy.bindparam("expect", type_=sqlalchemy.Integer))
    return (
        sqlalchemy.insert(_TRIALS)
        .from_select(["study_id", "number", *_CREATED_COLUMNS], source)
        .returning(_TRIALS.c.trial_id, _TRIALS.c.number)
    )


def _autocommit(rdb: RDBStorage) -> Any:
    """A connection whose statements each commit on their own: no BEGIN or COMMIT to wait for."""
    return rdb.engine.connect().execution_options(isolation_level="AUTOCOMMIT")


class _SqlRows(Rows):
    """What the two row writers share: the rows of a write, the reads, Optuna's distribution rule."""

    def __init__(self, rdb: RDBStorage) -> None:
        self._rdb = rdb
        self._checked: set[int] = set()  # studies whose stored distributions were compared

    # Each dialect's part.
    def _begin(self, model: Any, key: int) -> str:
        """What opens a transaction that holds the lock of the row model's key (or the whole file)."""
        raise NotImplementedError

    def _create_rows(self, session: Any, params: dict[str, Any], writes: list[_Rows], expect: int | None) -> Any:
        """(trial id, number) of the trial the statements made, or None where expect stopped it."""
        raise NotImplementedError

    def _move_rows(
        self, params: dict[str, Any], columns: tuple[str, ...], writes: list[_Rows], clock: RunClock
    ) -> bool:
        """Whether the trial moved (and its rows were written)."""
        raise NotImplementedError

    @contextmanager
    def _transaction(self, clock: RunClock, model: Any, key: int) -> Iterator[Any]:
        """One transaction that holds the write lock from its first statement, on a connection of its own.

        The wait for the lock counts as lock waits, the rest as storage. If the transaction fails
        and its ROLLBACK fails too (a connection gone, a transaction the database already ended),
        the first error is the one raised: the connection is dropped instead.
        """
        started = time.perf_counter()
        waited = 0.0
        try:
            with _autocommit(self._rdb) as connection:
                connection.exec_driver_sql(self._begin(model, key))
                waited = time.perf_counter() - started
                try:
                    yield connection
                except BaseException:
                    try:
                        connection.exec_driver_sql("ROLLBACK")
                    except Exception:  # noqa: BLE001 - the error that failed the transaction is the one to tell
                        connection.invalidate()
                    raise
                connection.exec_driver_sql("COMMIT")
        finally:
            clock.add(LOCK_WAITS, waited)
            clock.add(STORAGE, time.perf_counter() - started - waited)

    def create(
        self, study_id: int, trial: FrozenTrial, *, beat: bool, expect: int | None, clock: RunClock
    ) -> FrozenTrial | None:
        values, steps = _value_rows(trial.values, trial.intermediate_values)
        writes = [
            (models.TrialParamModel, _param_rows(trial.params, trial.distributions), False),
            (models.TrialUserAttributeModel, _attr_rows(trial.user_attrs), False),
            (models.TrialSystemAttributeModel, _attr_rows(trial.system_attrs), False),
            (models.TrialValueModel, values, False),
            (models.TrialIntermediateValueModel, steps, False),
            (models.TrialHeartbeatModel, [{}] if beat else [], False),
        ]
        times = _stored_times(datetime_start=trial.datetime_start, datetime_complete=trial.datetime_complete)
        params = {"study": study_id, **{f"set_{c}": v for c, v in {"state": trial.state, **times}.items()}}
        if expect is not None:
            params["expect"] = expect
        for attempt in range(1, CREATE_TRIES + 1):
            try:
                with self._transaction(clock, models.StudyModel, study_id) as session:
                    # Its number counts the trials before it; the lock keeps other creators out until the commit.
                    made = self._create_rows(session, params, writes, expect)
                break
            except sqlalchemy.exc.OperationalError as error:  # a lock timeout, a deadlock, a dropped connection
                if attempt == CREATE_TRIES:
                    raise optuna.exceptions.StorageInternalError(
                        f"creating a trial failed {CREATE_TRIES} times: {error}"
                    ) from error
                time.sleep(random.random() * _RETRY_PAUSE_S)
        if made is None:
            return None
        trial_id, number = made
        return _with(trial, number=number, trial_id=trial_id)

    def move(
        self,
        trial: FrozenTrial,
        *,
        state: TrialState,
        user_attrs: Mapping[str, Any],
        system_attrs: Mapping[str, Any],
        params: Mapping[str, Any],
        distributions: Mapping[str, BaseDistribution],
        value: float | None,
        intermediate: float | None,
        beat: bool,
        clock: RunClock,
    ) -> FrozenTrial | None:
        now = datetime.datetime.now()
        columns = {}
        if trial.state == TrialState.WAITING:
            columns.update(_stored_times(datetime_start=now))
        if state.is_finished():
            columns.update(_stored_times(datetime_complete=now))
        values, steps = _value_rows(
            None if value is None else [value], {} if intermediate is None else {0: intermediate}
        )
        writes = [
            (models.TrialParamModel, _param_rows(params, distributions), False),
            *_attr_writes(models.TrialUserAttributeModel, user_attrs, trial.user_attrs),
            *_attr_writes(models.TrialSystemAttributeModel, system_attrs, trial.system_attrs),
            (models.TrialValueModel, values, False),
            (models.TrialIntermediateValueModel, steps, False),
            (models.TrialHeartbeatModel, [{}] if beat else [], False),
        ]
        bound = {"trial": trial._trial_id, "was": trial.state, "set_state": state}
        bound.update({f"set_{c}": v for c, v in columns.items()})
        if not self._move_rows(bound, tuple(columns), writes, clock):
            return None
        return moved(
            trial,
            state=state,
            user_attrs=user_attrs,
            system_attrs=system_attrs,
            params=params,
            distributions=distributions,
            value=value,
            intermediate=intermediate,
            now=now,
        )

    def existing_studies(self, names: Collection[str]) -> set[str]:
        if not names:
            return set()
        column = models.StudyModel.__table__.c.study_name
        with _autocommit(self._rdb) as connection:
            return set(connection.execute(sqlalchemy.select(column).where(column.in_(list(names)))).scalars())

    def states(self, study_id: int) -> dict[int, TrialState]:
        query = sqlalchemy.select(_TRIALS.c.trial_id, _TRIALS.c.state).where(_TRIALS.c.study_id == study_id)
        with _autocommit(self._rdb) as connection:
            return dict(connection.execute(query).all())  # one query, no transaction to begin and end

    def trials(self, study_id: int, trial_ids: Collection[int] | None = None) -> list[FrozenTrial]:
        if trial_ids is None:
            return self._rdb.get_all_trials(study_id, deepcopy=False)
        if not trial_ids:
            return []
        return self._rdb._get_trials(study_id, None, set(trial_ids), max(trial_ids))

    def check_distributions(self, study_id: int, distributions: Mapping[str, BaseDistribution]) -> None:
        """Once per study: the row writes skip Optuna's check, so a study of other choices would mix them."""
        if study_id in self._checked or not distributions:
            return
        params = models.TrialParamModel.__table__
        query = (
            sqlalchemy.select(params.c.param_name, params.c.distribution_json)
            .distinct()
            .join(_TRIALS, _TRIALS.c.trial_id == params.c.trial_id)
            .where(_TRIALS.c.study_id == study_id)
        )
        with _autocommit(self._rdb) as connection:
            stored = connection.execute(query).all()
        for name, blob in stored:
            if name in distributions:
                try:
                    check_distribution_compatibility(distribution_from_json(blob), distributions[name])
                except ValueError:
                    raise TuningError(
                        f"the storage's study {study_id} holds parameter {name} as {blob}, this run would write "
                        f"{distribution_to_json(distributions[name])}: a study is one search over one space; "
                        "give another --storage to tune this space"
                    ) from None
        self._checked.add(study_id)


def _write(session: Any, writes: list[_Rows], **owner: Any) -> None:
    """Each table's rows of a write, a statement each (two per replaced row)."""
    for model, rows, replace in writes:
        table = model.__table__
        if not replace:
            if rows:
                session.execute(sqlalchemy.insert(table), [{**owner, **row} for row in rows])
            continue
        for row in ({**owner, **row} for row in rows):
            match = sqlalchemy.and_(*(table.c[k] == row[k] for k in (*owner, "key")))
            if session.execute(sqlalchemy.update(table).where(match).values(row)).rowcount == 0:
                session.execute(sqlalchemy.insert(table), [row])


class SqliteRows(_SqlRows):
    """A statement per table, in a transaction that takes the file's write lock first (BEGIN IMMEDIATE).

    A deferred transaction that reads first could be refused the lock at once when another process
    wrote in between, instead of waiting for it.
    """

    def _begin(self, model: Any, key: int) -> str:
        return "BEGIN IMMEDIATE"

    def _create_rows(self, session: Any, params: dict[str, Any], writes: list[_Rows], expect: int | None) -> Any:
        made = session.execute(_creating(expect is not None), params).one_or_none()
        if made is not None:
            _write(session, writes, trial_id=made[0])
        return made

    def _move_rows(
        self, params: dict[str, Any], columns: tuple[str, ...], writes: list[_Rows], clock: RunClock
    ) -> bool:
        with self._transaction(clock, models.TrialModel, params["trial"]) as session:
            if session.execute(_moving(columns), params).rowcount != 1:
                return False  # first: a trial another process moved is left alone
            _write(session, writes, trial_id=params["trial"])
        return True

    def set_study_attrs(self, study_id: int, attrs: Mapping[str, Any], *, clock: RunClock) -> None:
        with self._transaction(clock, models.StudyModel, study_id) as session:
            _write(session, [(models.StudyUserAttributeModel, _attr_rows(attrs), True)], study_id=study_id)


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
    returned none), or the study. The rows come as one array per column (unnest zips them), so the
    statement is the same whatever the values and the number of rows, and SQLAlchemy compiles it
    once (VALUES with its data is compiled anew each time: 1.4 ms for an ended trial on a 2-core
    VM). Rows that replace use ON CONFLICT: no lock.
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


@functools.cache
def _move_folded(columns: tuple[str, ...], shape: tuple) -> Any:
    """_moving and a write's rows for the trial it moved, in one statement that counts the trials moved."""
    moving = _moving(columns).returning(_TRIALS.c.trial_id).cte("moved")
    return sqlalchemy.select(sqlalchemy.func.count()).select_from(moving).add_cte(*_folded(shape, moving.c.trial_id))


@functools.cache
def _create_folded(shape: tuple, expecting: bool) -> Any:
    """_creating and a write's rows for the trial it made, in one statement."""
    new = _creating(expecting).cte("new")
    return sqlalchemy.select(new.c.trial_id, new.c.number).add_cte(*_folded(shape, new.c.trial_id))


@functools.cache
def _study_attrs_folded(shape: tuple) -> Any:
    """A study's attributes written in one statement (see _folded)."""
    study = sqlalchemy.select(sqlalchemy.bindparam("study", type_=sqlalchemy.Integer).label("study_id")).cte("study")
    return sqlalchemy.select(sqlalchemy.func.count()).select_from(study).add_cte(*_folded(shape, study.c.study_id))


class PostgresRows(_SqlRows):
    """Each write one statement of data-modifying CTEs; creating one between BEGIN (with the study's
    row FOR UPDATE, in the same round trip) and COMMIT."""

    def _begin(self, model: Any, key: int) -> str:
        (column,) = model.__table__.primary_key.columns
        return f"BEGIN; SELECT 1 FROM {model.__tablename__} WHERE {column.name} = {int(key)} FOR UPDATE"

    def _create_rows(self, session: Any, params: dict[str, Any], writes: list[_Rows], expect: int | None) -> Any:
        # The other tables' rows in the same statement, their trial from its INSERT.
        query = _create_folded(_shape(writes), expect is not None)
        return session.execute(query, {**params, **_arrays(writes)}).one_or_none()

    def _move_rows(
        self, params: dict[str, Any], columns: tuple[str, ...], writes: list[_Rows], clock: RunClock
    ) -> bool:
        # The UPDATE returns the trial only if it moved, and each insert takes its trial from that, so
        # nothing is written for a trial another process moved first. The UPDATE's row lock stands in
        # for FOR UPDATE: a second process moving the same trial waits for it, then finds the state changed.
        query = _move_folded(columns, _shape(writes))
        with clock.timing(STORAGE), _autocommit(self._rdb) as connection:
            return connection.execute(query, {**params, **_arrays(writes)}).scalar_one() == 1

    def set_study_attrs(self, study_id: int, attrs: Mapping[str, Any], *, clock: RunClock) -> None:
        writes = [(models.StudyUserAttributeModel, _attr_rows(attrs), True)]
        if attrs:  # one statement, each attribute inserted or replaced as it finds it
            with clock.timing(STORAGE), _autocommit(self._rdb) as connection:
                connection.execute(_study_attrs_folded(_shape(writes)), {"study": study_id, **_arrays(writes)})


# --- Optuna's public calls ----------------------------------------------------------------------------


class ApiRows(Rows):
    """The same writes through Optuna's public storage calls, each its own commit.

    create makes the trial through create (Optuna's creation of storage, by default), which numbers
    it as Optuna does and cannot refuse a lost race: the caller tells one by the trial's number.
    """

    def __init__(self, storage: BaseStorage, create: Callable[[int, FrozenTrial], FrozenTrial] | None = None) -> None:
        self._storage = storage
        self._create = create or (lambda study_id, t: storage.get_trial(storage.create_new_trial(study_id, t)))

    def _beat(self, trial_id: int) -> None:
        self._storage.record_heartbeat(trial_id)

    def create(
        self, study_id: int, trial: FrozenTrial, *, beat: bool, expect: int | None, clock: RunClock
    ) -> FrozenTrial | None:
        with clock.timing(STORAGE):
            made = self._create(study_id, trial)
            if beat:
                self._beat(made._trial_id)
        return made

    def move(
        self,
        trial: FrozenTrial,
        *,
        state: TrialState,
        user_attrs: Mapping[str, Any],
        system_attrs: Mapping[str, Any],
        params: Mapping[str, Any],
        distributions: Mapping[str, BaseDistribution],
        value: float | None,
        intermediate: float | None,
        beat: bool,
        clock: RunClock,
    ) -> FrozenTrial | None:
        storage, trial_id = self._storage, trial._trial_id
        now = datetime.datetime.now()
        with clock.timing(STORAGE):
            if trial.state == TrialState.WAITING:
                if not storage.set_trial_state_values(trial_id, TrialState.RUNNING):
                    return None  # another process took it
            elif storage.get_trial(trial_id).state != trial.state:
                return None
            for name, param in params.items():
                storage.set_trial_param(
                    trial_id, name, distributions[name].to_internal_repr(param), distributions[name]
                )
            for key, attr in system_attrs.items():
                storage.set_trial_system_attr(trial_id, key, attr)
            for key, attr in user_attrs.items():
                storage.set_trial_user_attr(trial_id, key, attr)
            if intermediate is not None:
                storage.set_trial_intermediate_value(trial_id, 0, intermediate)
            if beat:
                self._beat(trial_id)
            if state != TrialState.RUNNING:
                storage.set_trial_state_values(trial_id, state, None if value is None else [value])
        return moved(
            trial,
            state=state,
            user_attrs=user_attrs,
            system_attrs=system_attrs,
            params=params,
            distributions=distributions,
            value=value,
            intermediate=intermediate,
            now=now,
        )

    def set_study_attrs(self, study_id: int, attrs: Mapping[str, Any], *, clock: RunClock) -> None:
        with clock.timing(STORAGE):
            for key, value in attrs.items():
                self._storage.set_study_user_attr(study_id, key, value)

    def existing_studies(self, names: Collection[str]) -> set[str]:
        if not names:
            return set()
        return set(names) & {study.study_name for study in self._storage.get_all_studies()}

    def trials(self, study_id: int, trial_ids: Collection[int] | None = None) -> list[FrozenTrial]:
        trials = self._storage.get_all_trials(study_id, deepcopy=False)
        return trials if trial_ids is None else [t for t in trials if t._trial_id in trial_ids]
