"""The SQLite file behind a storage URL: where it lies, whether a run may make it, whether it holds a storage.

SQLAlchemy reads `sqlite:///a/b` as a path from the working folder and `sqlite:////a/b` as an
absolute one, so one slash too few puts a storage somewhere else without a word; and a file that
is not there is made, folders and all. A mistyped URL would start every study over in a new file
while the user's studies wait in the old one. So every command says which file a SQLite URL
means, a run makes a file only in a folder that exists (or in its own default folder), and a
reader opens nothing it would have to change.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import sqlalchemy

from tuner.study._storage import masked_url

# Where a replay keeps its studies unless --storage says otherwise: apart from real tuning results.
REPLAY_STORAGE = "sqlite:///studies/replay/tuner.sqlite3"
# The tables every Optuna storage has (Optuna 5's schema): a file without them holds no storage.
_OPTUNA_TABLES = frozenset({"studies", "trials", "version_info"})


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite storage URL names, as given (relative to the working folder, or absolute); None
    for another database. An in-memory SQLite database is a usage error: it dies with the process that
    made it, so nothing could resume it, and no worker or reader could share it."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        return None  # not a URL at all: opening it says so
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if parsed.query.get("uri") == "true" and database.startswith("file:"):
        database = "" if parsed.query.get("mode") == "memory" else database.removeprefix("file:")
    if database in ("", ":memory:"):
        raise ValueError(
            f"--storage {url} is an in-memory SQLite database, which is gone when the process ends: nothing "
            "could resume its studies or read them; give a file, e.g. sqlite:///studies/tuner.sqlite3."
        )
    return Path(database)


def storage_place(url: str) -> str:
    """Where a storage is, for a line that a user checks: a SQLite file's absolute path, else the URL
    without its password."""
    path = sqlite_file(url)
    return str(path.absolute()) if path is not None else masked_url(url)


def check_new_file(url: str) -> None:
    """Refuse a SQLite storage in a folder that does not exist: most likely a mistyped path, not a wish
    for new folders (a run makes its own default folders, and nothing else)."""
    path = sqlite_file(url)
    if path is None or path.exists() or path.absolute().parent.is_dir():
        return
    how = (
        "sqlite:/// names a path from the working folder, sqlite://// an absolute one"
        if not path.is_absolute()
        else "is the path mistyped?"
    )
    raise ValueError(
        f"--storage {url} names a file in {path.absolute().parent}, a folder that does not exist ({how}); "
        "make the folder first, or give a file in one that exists."
    )


def check_storage_file(url: str) -> None:
    """Refuse, without changing it, a SQLite file that holds no Optuna storage, or is not there: a reader
    that opened it with Optuna would write Optuna's tables into it (or make it) before finding nothing.

    A replay's storage is named where it exists, since that is where a run without a GPU put its studies.
    """
    path = sqlite_file(url)
    if path is None:
        return
    if not path.is_file():
        replay = sqlite_file(REPLAY_STORAGE)
        hint = f"; a replay's studies are in {REPLAY_STORAGE}" if replay.is_file() and replay != path else ""
        raise ValueError(f"--storage {url}: no SQLite file at {path.absolute()}{hint}.")
    try:  # read-only: neither the file nor a journal beside it is written
        with closing(sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)) as connection:
            tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as error:
        raise ValueError(f"--storage {url}: {path.absolute()} is not a SQLite database ({error}).") from None
    if not _OPTUNA_TABLES <= tables:
        held = f"its tables: {', '.join(sorted(tables))}" if tables else "it has no table"
        raise ValueError(f"--storage {url}: {path.absolute()} holds no Optuna storage ({held}); it is left as it is.")
