"""Runs that a test stops mid-way, with a signal, as a user would from a terminal."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import optuna
import sqlalchemy.exc

# Hooks that Python loads in each process of a run whose PYTHONPATH names this folder (see its sitecustomize).
HOOKS = Path(__file__).parent / "paced"


def _hooked(env: dict[str, str], **variables: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(HOOKS), env.get("PYTHONPATH")]))
    return {**env, "PYTHONPATH": path, **variables}


def paced(env: dict[str, str], delay_s: float = 0.02) -> dict[str, str]:
    """env for a replay run that a test stops mid-way: each measurement takes delay_s.

    Unpaced, a run of a hundred measurements ends in about a second and can finish between two
    looks of the test that means to stop it. Only for a run stopped after it began tuning: the
    pacing loads with Python's site module, where a Ctrl-C is a fatal error of the interpreter.
    """
    return _hooked(env, TUNER_TEST_REPLAY_DELAY_S=str(delay_s))


def ctrl_c_at_exit(env: dict[str, str]) -> dict[str, str]:
    """env for a run that gets a Ctrl-C in its process's last moments, after its work is over."""
    return _hooked(env, TUNER_TEST_CTRL_C_AT_EXIT="1")


def ctrl_c_as_in_a_terminal() -> None:
    """preexec_fn: Ctrl-C's default action in the run, as under a terminal.

    A shell starts background commands with SIGINT ignored, and Python keeps it ignored: a test
    suite started in the background would else hand its runs a Ctrl-C they never see.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stored_studies(url: str) -> dict[str, list[optuna.trial.FrozenTrial]]:
    """Every study's trials, read without creating tables (the run may still be creating them)."""
    storage = optuna.storages.RDBStorage(url, skip_compatibility_check=True, skip_table_creation=True)
    try:
        return {
            s.study_name: optuna.load_study(study_name=s.study_name, storage=storage).trials
            for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
        }
    finally:
        storage.engine.dispose()


def stored_so_far(url: str) -> dict[str, list[optuna.trial.FrozenTrial]]:
    """stored_studies while a run is still writing them: none until it has made its tables.

    Optuna still stamps the schema version on opening, so a read while the run is stamping it too can
    lose that race (an IntegrityError, or Optuna's StorageInternalError around a missing table): the
    caller polls again, as the run itself retries.
    """
    try:
        return stored_studies(url)
    except (sqlalchemy.exc.DatabaseError, optuna.exceptions.StorageInternalError):
        return {}
