"""A storage URL as the user gives it: a bare postgresql:// opens with the driver the [postgres] extra installs."""

from __future__ import annotations

import importlib.util

import pytest
import sqlalchemy
from sqlalchemy.dialects import postgresql

from tests.tuner.synthetic import NO_POSTGRES, POSTGRES, postgres_database
from tuner.study import make_storage
from tuner.study._rows import PostgresRows
from tuner.study._storage import explicit_driver

NO_PSYCOPG2 = importlib.util.find_spec("psycopg2") is None


def _as_sqlalchemy_2_0(monkeypatch) -> None:
    """SQLAlchemy 2.0's default driver for a bare postgresql:// (psycopg2; 2.1 takes psycopg)."""
    if not NO_PSYCOPG2:
        pytest.skip("psycopg2 is installed here: a bare URL opens as it is")
    # Where SQLAlchemy 2.0's postgresql/__init__.py sets it, as 2.1's sets psycopg's.
    monkeypatch.setattr(postgresql, "dialect", postgresql.psycopg2.dialect)
    monkeypatch.setattr(postgresql.base, "dialect", postgresql.psycopg2.dialect)


def test_under_sqlalchemy_2_0_a_bare_postgresql_url_names_psycopg_and_says_so(monkeypatch):
    _as_sqlalchemy_2_0(monkeypatch)
    url = "postgresql://tuner:secret@dbhost:5432/tuner"
    with pytest.raises(ModuleNotFoundError, match="psycopg2"):  # what README's multi-host command met
        sqlalchemy.create_engine(url)
    explicit, note = explicit_driver(url)
    assert explicit == "postgresql+psycopg://tuner:secret@dbhost:5432/tuner"
    assert note.startswith("note: postgresql://tuner:***@dbhost:5432/tuner names no driver")
    assert "would take psycopg2, which is not installed: using psycopg" in note and "secret" not in note
    sqlalchemy.create_engine(explicit).dispose()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u@h/db",  # SQLAlchemy 2.1 takes psycopg already
        "postgresql+psycopg://u@h/db",  # the user named a driver
        "sqlite:///studies/x.sqlite3",
        "mysql+pymysql://u@h/db",
    ],
)
def test_other_urls_are_left_as_given(url):
    assert explicit_driver(url) == (url, None)


@pytest.mark.skipif(POSTGRES is None, reason=NO_POSTGRES)
def test_a_bare_postgresql_url_opens_under_sqlalchemy_2_0_with_one_note(monkeypatch):
    url = postgres_database("tuner_driver")
    _as_sqlalchemy_2_0(monkeypatch)
    storage = make_storage(url)
    assert storage.engine.url.drivername == "postgresql+psycopg" and isinstance(storage.rows, PostgresRows)
    (note,) = storage.notes
    assert "names no driver" in note
