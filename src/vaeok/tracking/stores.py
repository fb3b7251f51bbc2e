"""One health boundary for the MLflow and Optuna stores: damaged, unwritable, full, half-migrated.

Every command opens its stores through `open_mlflow_store` / `open_optuna_storage`. Before the
library touches an SQLite file it is checked cheaply (a directory where the file should be, a
symlink loop, a parent that is not a writable directory, a file that is not SQLite, or is shorter
than its header says); problems become one `UserError` naming the file and what to do. Creating a
store runs under a per-store lock (a file lock next to an SQLite file, an advisory lock on
PostgreSQL), so commands started together never race through MLflow's migrations or Optuna's
table creation. A store whose creation was cut short (e.g. the disk filled during MLflow's
migrations) is recreated if it holds nothing (no runs, models, experiments or studies); a store
that holds data is never modified, the error says how to upgrade or restore it. A new MLflow
SQLite store starts as a copy of a cached, migrated empty schema (`store_template`).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vaeok.core.errors import UserError
from vaeok.core.redact import redact_url

_MAGIC = b"SQLite format 3\x00"
# Rows an empty MLflow store has right after creation (nothing a user could lose).
_MLFLOW_SEED = {"alembic_version", "workspaces"}
_OPTUNA_SEED = {"alembic_version", "version_info"}
# MLflow's and Alembic's own logging repeats the error we report (40 lines of SQLAlchemy traces).
_NOISY_LOGGERS = ("mlflow.store.db.utils", "mlflow.store.tracking.sqlalchemy_store", "alembic",
                  "alembic.runtime.migration", "sqlalchemy.engine")


def quiet_store_logging() -> None:
    """Keep MLflow's migration chatter and SQLAlchemy tracebacks off the console."""
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def sqlite_file(uri: str) -> Path | None:
    """The file of a sqlite:/// URI (relative to cwd unless absolute), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


def shown(path: Path) -> str:
    """A path as the user knows it: relative to the working directory when inside it."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def check_sqlite_file(path: Path, what: str) -> None:
    """UserError naming `path` (and the setting `what`) if an SQLite store cannot live there or is damaged."""
    name = f"{shown(path)} ({what})"
    parent = Path(os.path.abspath(path)).parent
    for anc in (parent, *parent.parents):
        try:
            st = anc.stat()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise UserError(f"{name}: cannot use {shown(anc)}: {exc.strerror}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise UserError(f"{name}: {shown(anc)} is not a directory; move it away or choose another {what}")
        break
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise UserError(f"{name} is a dangling symbolic link; remove it or point it at the store") from None
        _check_writable_dir(parent, name)
        return
    except OSError as exc:
        hint = "a symbolic link loop" if exc.errno == errno.ELOOP else exc.strerror
        raise UserError(f"{name}: cannot open: {hint}; remove it or point {what} elsewhere") from None
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"{name} is a directory, not a database file; move it away or choose another {what}")
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{name} is not a regular file; choose another {what}")
    _check_writable_dir(parent, name)
    if not os.access(path, os.W_OK):
        raise UserError(f"{name} is read-only; make it writable (chmod u+w) or choose another {what}")
    for attempt in range(5):  # a checkpoint of another process may be growing the file right now
        problem = _header_problem(path)
        if problem is None or not problem.startswith("is truncated") or attempt == 4:
            break
        time.sleep(0.2)
    if problem is not None:
        raise UserError(f"{name} {problem}; it was not modified: restore it from a backup, or move it away to "
                        "start a new store")


def _header_problem(path: Path) -> str | None:
    """What is wrong with an SQLite file's 100-byte header (not SQLite, damaged, shorter than it says)."""
    size = path.stat().st_size
    if size == 0:
        return None  # a new database
    with open(path, "rb") as fh:
        header = fh.read(100)
    if len(header) < 100 or header[:16] != _MAGIC:
        return "is not an SQLite database (damaged or overwritten)"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages, counter, valid_for = (int.from_bytes(header[o:o + 4], "big") for o in (28, 24, 92))
    if page_size < 512 or page_size & (page_size - 1):
        return "has a damaged header"
    recovering = any(Path(f"{path}{s}").exists() for s in ("-journal", "-wal"))  # SQLite replays these first
    if pages and counter == valid_for and size < pages * page_size and not recovering:
        return f"is truncated ({size} of {pages * page_size} bytes)"
    return None


def _check_writable_dir(directory: Path, name: str) -> None:
    if directory.is_dir() and not os.access(directory, os.W_OK | os.X_OK):
        raise UserError(f"{name}: {shown(directory)} is read-only; make it writable or choose another store")


# --- the creation lock --------------------------------------------------------------------------
@contextmanager
def init_lock(uri: str, what: str = "store") -> Iterator[None]:
    """Serialise store creation across processes: flock on `<db>.init.lock` next to an SQLite file,
    a PostgreSQL advisory lock for postgresql:// URLs, nothing for other stores. Re-entrant
    within a process (a sweep holds it around opening the storage and setting up its study)."""
    if _HELD.get(uri):
        _HELD[uri] += 1
        try:
            yield
        finally:
            _HELD[uri] -= 1
        return
    with _acquire(uri, what):
        _HELD[uri] = 1
        try:
            yield
        finally:
            _HELD.pop(uri, None)


_HELD: dict[str, int] = {}


@contextmanager
def _acquire(uri: str, what: str) -> Iterator[None]:
    path = sqlite_file(uri)
    if path is not None:
        import fcntl

        Path(os.path.abspath(path)).parent.mkdir(parents=True, exist_ok=True)
        try:
            fh = open(f"{path}.init.lock", "a")
        except OSError as exc:
            raise UserError(f"{shown(path)}: cannot create its lock file: {exc.strerror}; check the permissions "
                            f"of {shown(Path(os.path.abspath(path)).parent)}") from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield
        finally:
            fh.close()
        return
    if uri.startswith("postgresql"):
        import sqlalchemy

        key = int(hashlib.sha256(f"vaeok-init:{uri}".encode()).hexdigest()[:15], 16)
        engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool,
                                          connect_args={"connect_timeout": 10})
        try:
            conn = engine.connect()
        except Exception as exc:
            raise store_error(exc, uri, what) from None
        try:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            yield
        finally:
            try:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
            finally:
                conn.close()
                engine.dispose()
        return
    yield


# --- what a failure means ------------------------------------------------------------------------
def reason(exc: BaseException) -> str:
    """The first line of the innermost meaningful message of an exception chain (passwords masked)."""
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    for e in reversed(seen):
        text = str(getattr(e, "orig", None) or e).strip()
        if text:
            return redact_url(text.splitlines()[0])[:300]
    return type(exc).__name__


def store_error(exc: BaseException, uri: str, what: str) -> UserError:
    """A one-line UserError for an exception raised while opening or writing a store."""
    path = sqlite_file(uri)
    where = f"{shown(path)} ({what})" if path is not None else f"{what} {redact_url(uri)}"
    why = reason(exc)
    low = why.lower()
    if "disk is full" in low or "file too large" in low or (isinstance(exc, OSError) and exc.errno in (
            errno.ENOSPC, errno.EFBIG, errno.EDQUOT)):
        return UserError(f"{where}: cannot write, the disk is full (or a file-size limit was hit): {why}; "
                         "free space and rerun")
    if "readonly" in low or "read-only" in low or "permission denied" in low:
        return UserError(f"{where}: cannot write ({why}); check its permissions")
    if "malformed" in low or "not a database" in low or "corrupt" in low:
        return UserError(f"{where} is damaged ({why}); it was not modified: restore it from a backup, "
                         "or move it away to start a new store")
    if "connection refused" in low or "could not connect" in low or "timeout" in low or "resolve host" in low \
            or "connection to server" in low:
        return UserError(f"{where}: cannot connect: {why}")
    return UserError(f"{where}: cannot open the store: {why}")


def _table_rows(path: Path) -> dict[str, int]:
    """Row counts of every table of an SQLite file (read-only)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as con:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {n: con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}


def holds_data(path: Path, kind: str) -> bool:
    """True if an SQLite store holds anything beyond what its creation seeds (the Default experiment)."""
    try:
        rows = _table_rows(path)
    except sqlite3.Error:
        return True  # cannot tell: treat it as precious
    seed = _MLFLOW_SEED if kind == "mlflow" else _OPTUNA_SEED
    for table, n in rows.items():
        if n == 0 or table in seed or table.startswith("_alembic_tmp_"):
            continue
        if kind == "mlflow" and table == "experiments" and n == 1:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
                if con.execute("SELECT count(*) FROM experiments WHERE experiment_id = 0").fetchone()[0] == 1:
                    continue
        return True
    return False


# What MLflow/Alembic/Optuna say when a schema was created or upgraded only part of the way.
_HALF_MIGRATED = ("already exists", "duplicate column", "no such table", "no such column", "no such index",
                  "out-of-date database schema", "online migration", "alembic", "version_info",
                  "incompatible", "can't locate revision")


def _half_migrated(exc: BaseException, path: Path) -> bool:
    """True if a failure to open an SQLite store looks like an interrupted creation or migration."""
    text = reason(exc).lower() + " " + str(exc).lower()
    if any(k in text for k in _HALF_MIGRATED):
        return True
    try:
        return any(t.startswith("_alembic_tmp_") for t in _table_rows(path))
    except sqlite3.Error:
        return False


def _remove_empty_store(path: Path) -> None:
    """Delete an empty half-created SQLite store, and the engines MLflow keeps per database URI
    (their pooled connections would go on using the deleted file)."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    engines = getattr(SqlAlchemyStore, "_engine_map", {})  # MLflow 3's per-URI engine cache (no public API)
    for key in [k for k in engines if str(k).endswith(os.path.abspath(path))]:
        engines.pop(key).dispose()


def _half_migrated_detail(path: Path) -> str:
    try:
        rows = _table_rows(path)
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
            version = con.execute("SELECT version_num FROM alembic_version").fetchone() \
                if "alembic_version" in rows else None
    except sqlite3.Error:
        return ""
    tmp = sorted(t for t in rows if t.startswith("_alembic_tmp_"))
    parts = [f"schema version {version[0] if version else 'unknown'}"]
    if tmp:
        parts.append(f"leftover table(s) {', '.join(tmp)}")
    return "; ".join(parts)


def _open_with_repair(uri: str, what: str, kind: str, opener: Any) -> Any:
    """`opener()` under the creation lock; an empty half-created SQLite store is recreated once."""
    path = sqlite_file(uri)
    if path is not None:
        check_sqlite_file(path, what)
    quiet_store_logging()
    with init_lock(uri, what):
        for attempt in range(3):
            try:
                return opener()
            except Exception as exc:
                # a process that does not take the lock (an older vaeok, a dashboard) is creating the
                # tables right now: wait for it instead of taking its half-made schema for broken
                if "already exists" in str(exc) and attempt < 2:
                    time.sleep(0.5)
                    continue
                if path is None or not path.is_file() or isinstance(exc, UserError):
                    raise store_error(exc, uri, what) from None
                first = exc
                break
        if not _half_migrated(first, path):  # e.g. locked or unwritable: nothing to repair
            raise store_error(first, uri, what) from None
        if holds_data(path, kind):
            detail = _half_migrated_detail(path)
            raise UserError(f"{shown(path)} ({what}) holds data but cannot be opened ({reason(first)}; {detail}); "
                            "it was not modified: back it up, then upgrade it with `mlflow db upgrade "
                            f"sqlite:///{os.path.abspath(path)}`" if kind == "mlflow" else
                            f"{shown(path)} ({what}) holds data but cannot be opened ({reason(first)}); it was not "
                            "modified: back it up, then upgrade it with `optuna storage upgrade --storage "
                            f"sqlite:///{os.path.abspath(path)}`") from None
        _remove_empty_store(path)  # half-created and empty: nothing to lose
        try:
            return opener()
        except Exception as exc:
            raise store_error(exc, uri, what) from None


def open_mlflow_store(uri: str, what: str = "tracking.uri") -> None:
    """Check and (first time) create the MLflow tracking store at `uri` (already made absolute)."""
    if uri.startswith(("http://", "https://", "databricks")):
        return

    def opener() -> None:
        from mlflow.tracking import MlflowClient

        path = sqlite_file(uri)
        if path is not None:
            from vaeok.tracking.store_template import seed_mlflow_store

            seed_mlflow_store(path)  # a new store: copy the migrated schema instead of migrating again
        MlflowClient(uri).search_experiments(max_results=1)

    _open_with_repair(uri, what, "mlflow", opener)


def open_optuna_storage(url: str, what: str = "--storage", **kwargs: Any) -> Any:
    """An Optuna RDBStorage for `url` (checked, created under the lock, repaired if half-made and empty)."""
    from optuna.storages import RDBStorage

    return _open_with_repair(url, what, "optuna", lambda: RDBStorage(url, **kwargs))
