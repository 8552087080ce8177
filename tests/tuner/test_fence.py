"""The row writes serve only what they were tested on; anywhere else Optuna's calls give the same trials.

Storages are real: a fresh SQLite file, one whose trials table was widened with real DDL, and where
TUNER_TEST_POSTGRES and TUNER_TEST_MYSQL name servers, PostgreSQL and MariaDB (MySQL's dialect).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from tests.tuner.synthetic import (
    MYSQL,
    NO_MYSQL,
    NO_POSTGRES,
    POSTGRES,
    mysql_database,
    postgres_database,
    synthetic_rows,
    widened_sqlite,
    write_landscape,
)
from tuner.benchmarkers import ReplayBenchmarker
from tuner.space import STATUS, Problem, config_of
from tuner.study import TuneOptions, make_storage, study_name, tune_problem
from tuner.study._fence import FORCE, TESTED_OPTUNA
from tuner.study._rows import ApiRows, PostgresRows, SqliteRows

ROOT = Path(__file__).resolve().parents[2]
ROWS_NOTE = "through Optuna's own calls"


def test_a_fresh_sqlite_storage_takes_the_row_writes_and_says_nothing(tmp_path):
    storage = make_storage(f"sqlite:///{tmp_path}/s.db")
    assert isinstance(storage.rows, SqliteRows) and storage.notes == []


def test_tables_other_than_the_tested_ones_take_optunas_calls_with_one_note(tmp_path):
    storage = make_storage(widened_sqlite(tmp_path / "s.db"))
    assert isinstance(storage.rows, ApiRows)
    (note,) = storage.notes
    assert ROWS_NOTE in note and "table trials differs from the tested one (more columns: note)" in note


def test_an_optuna_outside_the_tested_minors_takes_optunas_calls_unless_the_fence_is_forced_open(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/s.db"
    make_storage(url)  # tables made by this Optuna
    monkeypatch.setattr(optuna, "__version__", "5.2.0")
    storage = make_storage(url)
    assert isinstance(storage.rows, ApiRows)
    (note,) = storage.notes
    assert f"Optuna 5.2.0 is not one of the tested {', '.join(TESTED_OPTUNA)}" in note
    monkeypatch.setenv(FORCE, "open")  # how CI judges a newer Optuna (.ci/newest_optuna.sh)
    assert isinstance(make_storage(url).rows, SqliteRows)


@pytest.mark.skipif(POSTGRES is None, reason=NO_POSTGRES)
def test_a_fresh_postgresql_storage_takes_the_row_writes():
    storage = make_storage(postgres_database("tuner_fence"))
    assert isinstance(storage.rows, PostgresRows) and storage.notes == []


@pytest.mark.skipif(MYSQL is None, reason=NO_MYSQL)
def test_mysql_takes_optunas_calls_even_with_the_fence_forced_open(monkeypatch):
    # No RETURNING, error 1093 on the counting insert, no multi-statement BEGIN: never the row writes.
    monkeypatch.setenv(FORCE, "open")
    storage = make_storage(mysql_database("tuner_fence"))
    assert isinstance(storage.rows, ApiRows)
    (note,) = storage.notes
    assert "its dialect (mysql) is neither SQLite nor PostgreSQL" in note


def test_pyproject_pins_optuna_to_the_tested_minors():
    (pin,) = re.findall(r'^\s*"optuna(>=[^"]*)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    low, high = re.fullmatch(r">=(\d+\.\d+),<(\d+\.\d+)", pin).groups()
    major, first = map(int, low.split("."))
    assert high == f"{major}.{first + len(TESTED_OPTUNA)}"
    assert TESTED_OPTUNA == tuple(f"{major}.{minor}" for minor in range(first, first + len(TESTED_OPTUNA)))


PROBLEM = Problem(N=512, K=1024, M=16)


def _tuned(url: str) -> list[tuple]:
    """What a replay study stored, trial by trial: number, config, state and status."""
    storage = make_storage(url)
    bench = ReplayBenchmarker(synthetic_rows([(PROBLEM.N, PROBLEM.K)], [PROBLEM.M]))
    result = tune_problem(storage, PROBLEM, bench, TuneOptions(trials=12, seed=0), seeds=[])
    study = optuna.load_study(
        study_name=study_name(PROBLEM, bench.device_name, bench.kind, bench.software), storage=storage
    )
    trials = [(t.number, config_of(t), t.state, t.user_attrs.get(STATUS), t.value) for t in study.trials]
    return [*trials, (result.best, result.best_us, result.timed)]


@pytest.mark.parametrize("other", ["sqlite-api", "mysql"])
def test_optunas_calls_store_the_same_trials_and_picks_as_the_row_writes(tmp_path, other):
    if other == "mysql" and MYSQL is None:
        pytest.skip(NO_MYSQL)
    url = widened_sqlite(tmp_path / "api.db") if other == "sqlite-api" else mysql_database("tuner_picks")
    assert isinstance(make_storage(url).rows, ApiRows)
    assert _tuned(url) == _tuned(f"sqlite:///{tmp_path}/rows.db")


def test_a_run_says_once_why_its_storage_takes_optunas_calls(tmp_path):
    landscape = write_landscape(tmp_path / "l.csv", [(512, 1024)], [1, 16])
    url = widened_sqlite(tmp_path / "s.db")
    command = [sys.executable, "-m", "tuner.run", "--N", "512", "--K", "1024", "--batch-sizes", "1", "16",
               "--replay", str(landscape), "--trials", "4", "--storage", url, "--save-path", str(tmp_path / "cfg"),
               "--no-prior", "--gpus", "0,1"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert (done.stdout + done.stderr).count(ROWS_NOTE) == 1  # the parent's, not each worker's
