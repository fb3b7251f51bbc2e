"""SQLite stores (MLflow's and Optuna's) in WAL mode with synchronous=NORMAL.

In the default rollback-journal mode every commit waits for an fsync; a sweep trial makes ~14
Optuna and ~8 MLflow commits. In WAL mode with synchronous=NORMAL a commit returns without an
fsync, readers (the MLflow UI, optuna-dashboard, other workers) never block the writer, and a
killed process loses nothing: only a power cut can lose the last commits, never corrupt the file.
WAL needs the database on a local file system (not NFS).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine


def _pragmas(dbapi_connection: Any, _record: Any) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def enable_wal() -> None:
    """Apply the pragmas to every SQLite connection SQLAlchemy opens from now on (idempotent)."""
    if not event.contains(Engine, "connect", _pragmas):
        event.listen(Engine, "connect", _pragmas)
