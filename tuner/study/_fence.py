"""Whether the tuner's direct row writes may serve a storage: only as far as they were tested.

The row writes (tuner.study._rows) are statements on Optuna's own tables, written against Optuna
5.0 and 5.1 on SQLite and PostgreSQL. Elsewhere they could write rows that Optuna reads otherwise,
or fail: MySQL has no RETURNING, refuses an INSERT that counts the table it inserts into (error
1093) and runs no multi-statement BEGIN. So they serve a storage only where its dialect is one of
those two, Optuna's version one of the tested minors, and the tables they write hold exactly the
columns they were tested on, read from the live schema once per storage (with Optuna's schema
revision, which any change of its tables comes with). Anywhere else the same writes go through
Optuna's public calls: the same trials and the same picks, slower.
"""

from __future__ import annotations

import os
import sqlite3

import optuna
import sqlalchemy
from optuna.storages import RDBStorage

# The Optuna minors the row writes were tested on; pyproject.toml pins Optuna to them.
TESTED_OPTUNA = ("5.0", "5.1")
# TUNER_ROWS_FENCE=open takes the row writes on SQLite and PostgreSQL whatever Optuna's version and
# the tables' columns: how CI judges the newest Optuna before the pin admits it (.ci/newest_optuna.sh).
FORCE = "TUNER_ROWS_FENCE"
FAST_DIALECTS = ("sqlite", "postgresql")
# What the row writes read and write, as Optuna 5.0 and 5.1 make them: each table's columns, the
# schema version Optuna stamps in version_info, and its alembic revision.
TESTED_COLUMNS: dict[str, tuple[str, ...]] = {
    "studies": ("study_id", "study_name"),
    "study_user_attributes": ("study_user_attribute_id", "study_id", "key", "value_json"),
    "trials": ("trial_id", "number", "study_id", "state", "datetime_start", "datetime_complete"),
    "trial_params": ("param_id", "trial_id", "param_name", "param_value", "distribution_json"),
    "trial_values": ("trial_value_id", "trial_id", "objective", "value", "value_type"),
    "trial_intermediate_values": (
        "trial_intermediate_value_id",
        "trial_id",
        "step",
        "intermediate_value",
        "intermediate_value_type",
    ),
    "trial_user_attributes": ("trial_user_attribute_id", "trial_id", "key", "value_json"),
    "trial_system_attributes": ("trial_system_attribute_id", "trial_id", "key", "value_json"),
    "trial_heartbeats": ("trial_heartbeat_id", "trial_id", "heartbeat"),
    "version_info": ("version_info_id", "schema_version", "library_version"),
}
TESTED_SCHEMA_VERSION = 12
TESTED_REVISION = "v3.2.0.a"
# RETURNING came with SQLite 3.35; ON CONFLICT with PostgreSQL 9.5.
_SQLITE_RETURNING = (3, 35, 0)
_POSTGRES_ON_CONFLICT = (9, 5)


def row_dialect(rdb: RDBStorage) -> tuple[str | None, str | None]:
    """The dialect whose row writes serve rdb ('sqlite' or 'postgresql'), or None and why not.

    The reason names everything that closes the fence, so one note says it all.
    """
    dialect = rdb.engine.name
    if dialect not in FAST_DIALECTS:
        return None, f"its dialect ({dialect}) is neither SQLite nor PostgreSQL"
    if os.environ.get(FORCE) == "open":
        return dialect, None
    why = [*version_gaps(rdb), *schema_gaps(rdb)]
    return (None, "; ".join(why)) if why else (dialect, None)


def version_gaps(rdb: RDBStorage) -> list[str]:
    """How Optuna's and the database's versions differ from those the row writes were tested on."""
    gaps = []
    minor = ".".join(optuna.__version__.split(".")[:2])
    if minor not in TESTED_OPTUNA:
        gaps.append(f"Optuna {optuna.__version__} is not one of the tested {', '.join(TESTED_OPTUNA)}")
    server = rdb.engine.dialect.server_version_info
    if rdb.engine.name == "sqlite" and tuple(sqlite3.sqlite_version_info) < _SQLITE_RETURNING:
        gaps.append(f"SQLite {sqlite3.sqlite_version} has no RETURNING (3.35 has)")
    if rdb.engine.name == "postgresql" and server is not None and tuple(server[:2]) < _POSTGRES_ON_CONFLICT:
        gaps.append(f"PostgreSQL {'.'.join(map(str, server))} has no ON CONFLICT (9.5 has)")
    return gaps


def schema_gaps(rdb: RDBStorage) -> list[str]:
    """How the live tables differ from those the row writes were tested on (empty if they match)."""
    inspector = sqlalchemy.inspect(rdb.engine)
    gaps = []
    for table, tested in TESTED_COLUMNS.items():
        live = {column["name"] for column in inspector.get_columns(table)} if inspector.has_table(table) else set()
        if live != set(tested):
            more, fewer = sorted(live - set(tested)), sorted(set(tested) - live)
            gaps.append(
                f"table {table} differs from the tested one"
                + (f" (more columns: {', '.join(more)})" if more else "")
                + (f" (missing: {', '.join(fewer)})" if fewer else "")
            )
    with rdb.engine.connect() as connection:
        version = connection.execute(sqlalchemy.text("SELECT schema_version FROM version_info")).scalar()
    if version != TESTED_SCHEMA_VERSION:
        gaps.append(f"schema version {version}, not the tested {TESTED_SCHEMA_VERSION}")
    revision = rdb.get_current_version()
    if revision != TESTED_REVISION:
        gaps.append(f"schema revision {revision}, not the tested {TESTED_REVISION}")
    return gaps
