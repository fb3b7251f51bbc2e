"""New MLflow SQLite stores start as a copy of an empty, fully migrated schema kept in the user's cache.

Creating an MLflow SQLite store runs every one of MLflow's Alembic migrations (about 2.4 s on this
project's 2-core reference machine), which every new project directory, test and benchmark pays.
Before its first experiment exists the migrated file is the same for a given MLflow version, so
it is built once per version into the cache directory (``$XDG_CACHE_HOME/vaeok``, by default
``~/.cache/vaeok``) and copied. MLflow then opens the copy as it opens any store: it verifies the
schema revision and creates the Default experiment under the store's own artifact root.
Whatever goes wrong here (no writable cache, an old template) falls back to MLflow's own creation.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from pathlib import Path


def cache_dir() -> Path:
    """Where vaeok keeps files it can rebuild (XDG base directory convention)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vaeok"


def _head_revision() -> str:
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()


def _revision(path: Path) -> str | None:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
            experiments = con.execute("SELECT count(*) FROM experiments").fetchone()[0]
    except sqlite3.Error:
        return None
    return row[0] if row and experiments == 0 else None


def _build(template: Path, head: str) -> None:
    """Run MLflow's table creation and migrations into a temp file, then move it into place."""
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables

    template.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(template.parent / f".{template.name}.{os.getpid()}.tmp")
    try:
        engine = sqlalchemy.create_engine(f"sqlite:///{tmp}")
        try:
            _initialize_tables(engine)
        finally:
            engine.dispose()
        with contextlib.closing(sqlite3.connect(tmp)) as con:  # one self-contained file (no -wal beside it)
            con.execute("PRAGMA journal_mode=DELETE")
        if _revision(Path(tmp)) != head:
            raise RuntimeError("migrated template is not at MLflow's head revision")
        os.replace(tmp, template)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def seed_mlflow_store(path: Path) -> bool:
    """Create the (absent) store file `path` as a copy of the cached migrated schema; False if not done."""
    if path.exists():
        return False
    try:
        import mlflow

        head = _head_revision()
        template = cache_dir() / f"mlflow-{mlflow.__version__}-{head}.db"
        if _revision(template) != head:
            _build(template, head)
        tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
        try:
            shutil.copyfile(template, tmp)  # created like any new file (the umask's permissions)
            os.link(tmp, path)  # fails if another process created the store meanwhile: theirs wins
        finally:
            os.unlink(tmp)
    except Exception:  # an optimisation only: MLflow creates the store itself
        return False
    return True
