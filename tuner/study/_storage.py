"""Optuna storage and studies: one study per (shape, M), named so that a rerun finds and resumes it."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import platform
import sys
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from tuner.benchmarkers import MEASURED, STORAGE, Benchmarker, RunClock
from tuner.space import SAMPLER, STATUS, TIMED, Config, Problem, config_of, space_choices
from tuner.study._store import TunerStorage, set_study_attrs

DEFAULT_STORAGE = "sqlite:///studies/tuner.sqlite3"
# A process that stops beating for GRACE_S seconds is dead: its RUNNING trial is failed and retried.
HEARTBEAT_S = 10
GRACE_S = 30
_CREATE_ATTEMPTS = 4
# Each space's choices (space_choices) as they stood while study names did not carry them: a study
# of these choices keeps the name it had, and resumes; any other choices put their digest in the name.
_NAMED_WITHOUT_CHOICES = {"base": "25f50dcc21600afb", "hopper": "6cd3af024f572796"}


def _digest(value: Any, length: int) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:length]


def study_name(problem: Problem, device_name: str, kind: str, software: dict[str, str], space: str = "base") -> str:
    """Deterministic, so the same command maps to the same study again; replays and spaces are kept apart.

    The name ends in a hash of the software that decides the timings (a benchmarker's software:
    Triton and torch versions and the kernel's source on a GPU, the landscape's rows in replay),
    as Triton keys its own cache on its version and the kernel's source. After an upgrade or a
    kernel change the old studies are simply not found, and the same command tunes anew beside
    them: a timing made with other software says little about this one, so reusing it silently is
    wrong, and refusing would only make the user start a new storage by hand on every upgrade,
    reusing nothing either. The old studies stay readable, their software in their user
    attributes; tune_units says how many it passed over.

    The hash covers the space's choices too: a release that changes a choice tunes new studies
    rather than resuming old ones with other distributions of the same parameters (which Optuna
    refuses to mix). Studies of the choices that stood before names carried them keep their names.
    """
    p = problem
    name = f"{p.input_type}_w8a8_N{p.N}_K{p.K}_M{p.M}_block{p.block_n}x{p.block_k}_{p.out_dtype}_{device_name}"
    keyed = dict(software)
    choices = _digest(space_choices(space), 16)
    if choices != _NAMED_WITHOUT_CHOICES[space]:
        keyed["space_choices"] = choices
    return (
        name
        + ("_hopper" if space == "hopper" else "")
        + ("_replay" if kind == "replay" else "")
        + f"_{_digest(keyed, 8)}"
    )


def superseded(storage: BaseStorage, problems: Iterable[Problem], bench: Benchmarker, space: str = "base") -> list[str]:
    """Studies that other software made for those of these problems this software has no study for yet.

    What a run passes over (see study_name). A name without the software's part is from before
    names carried it. Reads the studies' names only, none of their trials.
    """
    names = {s.study_name for s in storage.get_all_studies()}
    stale = []
    for problem in problems:
        name = study_name(problem, bench.device_name, bench.kind, bench.software, space)
        if name not in names:
            stem = name.rsplit("_", 1)[0]
            stale += [other for other in names if stem in (other, other.rsplit("_", 1)[0])]
    return sorted(stale)


def masked_url(url: str) -> str:
    """The URL without its password, fit to print in an error, a report or a notebook."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL has no password we could find either
        return url


def raise_unusable(url: str, error: BaseException) -> None:
    """A one-line usage error; SQLAlchemy's further lines (the SQL, a help link) are left out."""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
    raise ValueError(f"--storage {masked_url(url)} is not usable: {type(error).__name__}: {reason}") from None


class _RetryWithoutClaim(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Retries a dead trial's config as a fresh trial that has claimed nothing yet.

    Optuna's callback copies the dead trial's user attributes onto the waiting retry, the claim on
    the budget ('timed') included, so the retry would count before it ran and look decided to the
    workers that wait for it. The retry keeps the config and its retry history, and decides anew.
    """

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        unclaimed = copy.deepcopy(trial)
        unclaimed.user_attrs = {}
        super().__call__(study, unclaimed)


def _sqlite_pragmas(connection: Any, record: Any) -> None:
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")


def explicit_driver(url: str) -> tuple[str, str | None]:
    """url with its PostgreSQL driver named where SQLAlchemy's default one is not installed, and a note saying so.

    A bare postgresql:// means psycopg2 to SQLAlchemy 2.0 and psycopg (3) to SQLAlchemy 2.1, while the
    [postgres] extra installs psycopg: under SQLAlchemy 2.0 without psycopg2, the URL names psycopg.
    """
    try:
        parsed = sqlalchemy.engine.make_url(url)
        if parsed.drivername != "postgresql":
            return url, None
        default = parsed.get_dialect().driver
    except Exception:  # noqa: BLE001 - an unusable URL is reported where it is opened
        return url, None
    if default == "psycopg" or _installed(default) or not _installed("psycopg"):
        return url, None  # where neither is installed, SQLAlchemy's own error names what to install
    explicit = parsed.set(drivername="postgresql+psycopg")
    note = (
        f"note: {masked_url(url)} names no driver, and SQLAlchemy {sqlalchemy.__version__} would take {default}, "
        f"which is not installed: using psycopg ({masked_url(explicit.render_as_string(hide_password=False))})"
    )
    return explicit.render_as_string(hide_password=False), note


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def make_storage(url: str, *, heartbeat_s: int = HEARTBEAT_S, grace_s: int = GRACE_S) -> TunerStorage:
    """An RDB storage with heartbeats, safe for several processes on one SQLite file or PostgreSQL.

    Its notes say what a run should say about it once: a driver named for the URL (explicit_driver),
    and why the tuner's row writes do not serve it, where they do not (tuner.study._fence).

    SQLite waits up to a minute for a lock instead of failing at once, and uses its write-ahead log
    so readers (optuna-dashboard) never block the tuner. Every connection syncs to disk at
    checkpoints only (synchronous=NORMAL, not FULL at each commit: 1.6 ms a commit instead of 4.7
    ms on a 2-core VM). Under the write-ahead log that is still safe against the tuner being killed
    at any point, kill -9 included: a committed transaction survives the process. What a power cut
    or an operating-system crash can cost is the last transactions committed since the last
    checkpoint: the measurements of the last moments, which a rerun times again. The database
    itself stays consistent either way.
    """
    given = url
    url, driver_note = explicit_driver(url)
    engine_kwargs = {}
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 60}}
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            with warnings.catch_warnings():  # heartbeats are marked experimental; they are what we need
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = TunerStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_s,
                    grace_period=grace_s,
                    heartbeat_stale_trial_callback=_RetryWithoutClaim(max_retry=1),
                )
            break
        except (sqlalchemy.exc.DatabaseError, optuna.exceptions.StorageInternalError):
            # Workers starting together on an empty storage race to create its tables and stamp its
            # schema version (Optuna wraps a failed stamp in StorageInternalError); the losers find
            # them made on a second try. A database that stays unusable is reported below.
            if attempt + 1 == _CREATE_ATTEMPTS:
                raise_unusable(given, sys.exc_info()[1])
            time.sleep(0.5 * (attempt + 1))
        except Exception as error:  # noqa: BLE001 - any driver or URL failure is a usage error here
            raise_unusable(given, error)
    if driver_note is not None:
        storage.notes.insert(0, driver_note)
    if url.startswith("sqlite:///"):
        sqlalchemy.event.listen(storage.engine, "connect", _sqlite_pragmas)
        storage.engine.dispose()  # the connections made so far predate the pragmas
    return storage


# Study user attributes besides the problem's and the software's: what the announcement of a run reads.
SCHEDULES = "schedules"  # the distinct schedules the study can time at its M: its budget's cap
BUDGET = "budget"  # the --trials the study was last run to


def open_study(
    storage: BaseStorage,
    problem: Problem,
    bench: Benchmarker,
    sampler: optuna.samplers.BaseSampler,
    *,
    space: str = "base",
    attrs: Mapping[str, Any] | None = None,
    clock: RunClock | None = None,
) -> optuna.Study:
    """Create the study for problem or load it; a new one records, in one write, what a reader needs
    to interpret it (the problem, the device, the software) and attrs."""
    clock = clock if clock is not None else RunClock()
    with clock.timing(STORAGE):
        study = optuna.create_study(
            storage=storage,
            study_name=study_name(problem, bench.device_name, bench.kind, bench.software, space),
            direction="minimize",
            sampler=sampler,
            load_if_exists=True,
        )
        made = "M" not in study.user_attrs
    if made:
        recorded = {**vars(problem), "device": bench.device_name, "timing": bench.kind, "space": space}
        recorded["python"] = platform.python_version()
        recorded.update(bench.software)  # what produced the timings, that the name's last part hashes
        set_study_attrs(study, {**recorded, **(attrs or {})}, clock=clock)
    return study


def study_attrs(storage: BaseStorage, name: str) -> dict[str, Any] | None:
    """The user attributes of the study called name, or None if there is none: two queries, no trials."""
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return None
    return storage.get_study_user_attrs(study_id)


@dataclass(frozen=True)
class StudyState:
    """What a run finds of one study before it starts: what is done, and what made it."""

    timed: int
    sampler: str | None
    budget: int | None  # the --trials it was last run to (None: from before this was recorded)
    schedules: int | None  # the distinct schedules it can time (None: likewise)

    def finished(self, trials: int) -> bool:
        """Whether a run with --trials trials has nothing left to time in it."""
        return self.timed >= (trials if self.schedules is None else min(trials, self.schedules))


def study_states(storage: BaseStorage, names: Iterable[str]) -> dict[str, StudyState | None]:
    """Each named study's state, None for a study not created yet: what a rerun finds done.

    Looks each study up by its name and reads its own trials only, so the cost does not grow with
    the other studies in the storage.
    """
    states: dict[str, StudyState | None] = {}
    for name in names:
        try:
            study_id = storage.get_study_id_from_name(name)
        except KeyError:
            states[name] = None
            continue
        attrs = storage.get_study_user_attrs(study_id)
        timed = sum(1 for t in storage.get_all_trials(study_id, deepcopy=False) if is_timed(t))
        states[name] = StudyState(
            timed=timed, sampler=made_with(attrs), budget=attrs.get(BUDGET), schedules=attrs.get(SCHEDULES)
        )
    return states


def made_with(attrs: Mapping[str, Any] | None) -> str | None:
    """The sampler that made a study, from its user attributes if they say ("local+tpe", of older runs: local)."""
    recorded = (attrs or {}).get(SAMPLER)
    return recorded.split("+")[0] if isinstance(recorded, str) else None


def is_timed(trial: FrozenTrial) -> bool:
    """Whether trial spends a measurement of the budget: it claimed one, and measures or measured it.

    A trial that claimed a measurement and then failed without one (stopped by Ctrl-C, or its process
    died and Optuna failed it by heartbeat) gave its claim back: its retry, or a later trial, spends
    it. A waiting trial has claimed nothing, whatever attributes it was created with.
    """
    if trial.user_attrs.get(TIMED) is not True or trial.state == TrialState.WAITING:
        return False
    return trial.state != TrialState.FAIL or trial.user_attrs.get(STATUS) in MEASURED


def timed_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Trials that spent a measurement (the budget's unit)."""
    return [t for t in study.get_trials(deepcopy=False) if is_timed(t)]


def best(trials: Iterable[FrozenTrial]) -> tuple[Config, float] | None:
    """The fastest completed config among trials and its latency, or None if none completed.

    Takes trials rather than a study so that a caller reads the storage once for several questions.
    """
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        return None
    trial = min(complete, key=lambda t: t.value)
    return config_of(trial), trial.value


def latency_of(trials: Iterable[FrozenTrial], config: Config) -> float | None:
    """The measured latency of config among trials, if one of them completed it.

    Takes trials rather than a study, as best does, so a caller reads the storage once.
    """
    for t in trials:
        if t.state == TrialState.COMPLETE and config_of(t) == config:
            return t.value
    return None
