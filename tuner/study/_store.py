"""The tuner's storage: Optuna's RDBStorage whose trial writes go through one writer, chosen once.

TunerStorage picks its writer when it opens (tuner.study._fence says whether the row writes serve
it, tuner.study._rows holds them) and routes Optuna's own trial creation through it: study.ask,
enqueue_trial, add_trial and Optuna's retry callbacks then create and number trials the way the
tuner's search does, in one write under the study's lock. StudyRows is one study's side of it: the
search's reads and writes, and the one place that reaches into Optuna's Study for its storage.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from tuner.benchmarkers import STORAGE, RunClock
from tuner.study._fence import row_dialect
from tuner.study._rows import ApiRows, PostgresRows, Rows, SqliteRows, new_trial

_WRITERS = {"sqlite": SqliteRows, "postgresql": PostgresRows}


class TunerStorage(RDBStorage):
    """An RDBStorage whose trials are created and moved by one writer, chosen when it opens.

    notes are what a run says about it once, with its storage: why the row writes do not serve it,
    where they do not (and make_storage's own).
    """

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        dialect, why = row_dialect(self)
        self.notes: list[str] = []
        if why is not None:
            self.notes.append(
                "note: the tuner writes this storage's trials through Optuna's own calls (the same trials and "
                f"picks, several times slower per config), as {why}"
            )
        if dialect is not None:
            self.rows: Rows = _WRITERS[dialect](self)
        else:  # Optuna's own creation, not this class's: that would come back here
            self.rows = ApiRows(self, create=functools.partial(RDBStorage._create_new_trial, self))

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        """Optuna's trial-creation funnel, as the writer creates a trial (with a first heartbeat if running)."""
        trial = template_trial if template_trial is not None else new_trial(state=TrialState.RUNNING)
        beat = trial.state == TrialState.RUNNING and self.heartbeat_interval is not None
        made = self.rows.create(study_id, trial, beat=beat, expect=None, clock=RunClock())
        assert made is not None  # nothing was expected, so nothing refuses it
        return made


def rows_of(storage: BaseStorage) -> Rows:
    """The writer of storage: a TunerStorage's own, else Optuna's public calls."""
    backend = getattr(storage, "_backend", storage)  # optuna.create_study wraps an RDBStorage in a cache per study
    return backend.rows if isinstance(backend, TunerStorage) else ApiRows(storage)


def existing_studies(storage: BaseStorage, names: Collection[str]) -> set[str]:
    """Which of names are studies in storage: one query on a storage the row writes serve.

    Optuna looks a study up by name in a transaction of its own, and one that is not there costs as
    much as one that is: the warm starts ask after up to 17 batch sizes a study, most not tuned yet.
    """
    return rows_of(storage).existing_studies(names)


def set_study_attrs(study: optuna.Study, attrs: Mapping[str, Any], *, clock: RunClock) -> None:
    """A study's user attributes in one write (Optuna commits each on its own)."""
    StudyRows(study, clock).set_attrs(attrs)


class StudyRows:
    """One study's trials as this process last saw them, and its writes to them.

    Each read asks the storage for every trial's id and state (one query) and fetches in full only
    the trials this process has not seen, those whose state changed, and the unfinished trials of
    other processes (whose claims may have come since); the trials this process wrote it knows
    already. A single process thus reads one small query per trial; Optuna's cache per study reads
    the latest trials through six queries and its ORM each time. A writer of Optuna's public calls
    reads the whole study each time.
    """

    def __init__(self, study: optuna.Study, clock: RunClock) -> None:
        # Optuna's Study names its storage and id nowhere public; this is the one place that reads them.
        self.storage: BaseStorage = study._storage
        self.study_id: int = study._study_id
        self._rows = rows_of(self.storage)
        self._clock = clock
        self._known: dict[int, FrozenTrial] = {}  # trial id -> trial
        self._mine: set[int] = set()
        get = getattr(self.storage, "get_heartbeat_interval", None)
        self.heartbeat_s: int | None = get() if get is not None else None
        backend = getattr(self.storage, "_backend", self.storage)
        # Optuna's default grace period is two heartbeat intervals.
        self.grace_s: int | None = getattr(backend, "grace_period", None) or (self.heartbeat_s and 2 * self.heartbeat_s)

    def stale_trial_ids(self) -> list[int]:
        """The running trials whose heartbeat is older than grace_s, by the storage's own clock."""
        return self.storage._get_stale_trial_ids(self.study_id) if self.heartbeat_s is not None else []

    def note(self, trial: FrozenTrial) -> FrozenTrial:
        """Record trial as this process wrote it; returns it."""
        self._known[trial._trial_id] = trial
        self._mine.add(trial._trial_id)
        return trial

    def read(self, category: str = STORAGE) -> list[FrozenTrial]:
        """The study's trials now, by number; the time counts against category on the clock."""
        with self._clock.timing(category):
            states = self._rows.states(self.study_id)
            if states is None:
                return self._rows.trials(self.study_id)
            stale = {
                trial_id
                for trial_id, state in states.items()
                if (known := self._known.get(trial_id)) is None
                or known.state != state
                or (not state.is_finished() and trial_id not in self._mine)
            }
            for trial in self._rows.trials(self.study_id, stale) if stale else ():
                self._known[trial._trial_id] = trial
                self._mine.discard(trial._trial_id)  # as stored now, whoever changed it
            return sorted(self._known.values(), key=lambda t: t.number)

    def create(self, trial: FrozenTrial, *, expect: int | None = None) -> FrozenTrial | None:
        """trial (see tuner.study._rows.new_trial) in one write; running, with its first heartbeat.

        With expect, only if the study holds that many trials: None (nothing written) if another
        process created one since. A storage that cannot tell creates it anyway: its number says.
        """
        self._rows.check_distributions(self.study_id, trial.distributions)
        beat = trial.state == TrialState.RUNNING and self.heartbeat_s is not None
        made = self._rows.create(self.study_id, trial, beat=beat, expect=expect, clock=self._clock)
        return None if made is None else self.note(made)

    def update(
        self,
        trial: FrozenTrial,
        *,
        user_attrs: Mapping[str, Any] | None = None,
        state: TrialState | None = None,
        value: float | None = None,
        intermediate: float | None = None,
    ) -> FrozenTrial:
        """Attributes, a first estimate (step 0), a value and a new state of a running trial in one write.

        Raises optuna.exceptions.UpdateFinishedTrialError if another process ended the trial first.
        """
        ended = self._rows.move(
            trial,
            state=state or TrialState.RUNNING,
            user_attrs=user_attrs or {},
            system_attrs={},
            params={},
            distributions={},
            value=value,
            intermediate=intermediate,
            beat=False,
            clock=self._clock,
        )
        if ended is None:
            raise optuna.exceptions.UpdateFinishedTrialError(f"trial {trial.number} is no longer running.")
        return self.note(ended)

    def take(
        self,
        trial: FrozenTrial,
        *,
        params: Mapping[str, Any],
        distributions: Mapping[str, BaseDistribution],
        system_attrs: Mapping[str, Any],
    ) -> FrozenTrial | None:
        """Start a waiting trial (a retry, or an enqueued config) as this process's, with a first heartbeat.

        params are written too where the trial holds none yet (an enqueued trial keeps its config in
        a system attribute until it runs). None if another process took it first.
        """
        if params:
            self._rows.check_distributions(self.study_id, {k: distributions[k] for k in params})
        taken = self._rows.move(
            trial,
            state=TrialState.RUNNING,
            user_attrs={},
            system_attrs=system_attrs,
            params=params,
            distributions=distributions,
            value=None,
            intermediate=None,
            beat=self.heartbeat_s is not None,
            clock=self._clock,
        )
        return None if taken is None else self.note(taken)

    def set_attrs(self, attrs: Mapping[str, Any]) -> None:
        """The study's user attributes in one write."""
        self._rows.set_study_attrs(self.study_id, attrs, clock=self._clock)
