"""Helpers for the hardening tests (#17): the real CLI in a subprocess, and the stores read directly.

Everything here talks to vaeok only through its command line, and to the stores through sqlite3,
so the tests do not depend on where code lives inside the package.
"""

from __future__ import annotations

import os
import resource
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .conftest import cli_env

TINY = ["experiment=smoke", "trainer.max_epochs=3", "generator.n_virtual=30", "regressor.n_estimators=5",
        "tracking.log_figures=false"]
NO_AUG = ["generator=none", "regressor.n_estimators=5", "tracking.log_figures=false"]
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def vaeok(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600,
          preexec_fn: Callable[[], None] | None = None, user: str | None = None) -> subprocess.CompletedProcess[str]:
    """`vaeok <args>` in `cwd` (this checkout's package first on the path); stdout/stderr captured."""
    return subprocess.run([sys.executable, "-m", "vaeok.cli", *args], cwd=cwd, env={**cli_env(), **(env or {})},
                          capture_output=True, text=True, timeout=timeout, preexec_fn=preexec_fn, user=user)


def error_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Assert the promise: exit 2, exactly one non-empty line on stderr, `vaeok: error: ...`, no
    traceback, no 'unexpected'; each needle in that line. Returns the line."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-4000:]}"
    assert len(lines) == 1, f"{len(lines)} stderr lines:\n{proc.stderr[-4000:]}"
    line = lines[0]
    assert line.startswith("vaeok: error: ") and not line.startswith("vaeok: error: unexpected "), line
    assert "Traceback" not in proc.stderr, line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """Assert exit 0 (with the output in the message otherwise)."""
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-4000:]}"
    return proc


def query(db: Path, sql: str) -> list[tuple]:
    """Rows of `sql` on a SQLite file, read-only; [] if the file or table is missing."""
    if not db.is_file():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as con:
            return list(con.execute(sql))
    except sqlite3.DatabaseError as exc:  # a missing table, or a file the test damaged on purpose
        if "no such table" in str(exc) or "not a database" in str(exc) or "malformed" in str(exc):
            return []
        raise


def run_statuses(workdir: Path) -> list[str]:
    """Status of every MLflow run in workdir/mlruns/mlflow.db."""
    return [r[0] for r in query(workdir / "mlruns" / "mlflow.db", "SELECT status FROM runs")]


def assert_nothing_running(workdir: Path) -> None:
    """No MLflow run and no Optuna trial left RUNNING in workdir/mlruns."""
    assert "RUNNING" not in run_statuses(workdir), run_statuses(workdir)
    trials = query(workdir / "mlruns" / "optuna.db", "SELECT state FROM trials")
    assert ("RUNNING",) not in trials, trials


def registered_versions(workdir: Path) -> list[tuple]:
    """(name, version) of every registered model version in workdir/mlruns/mlflow.db."""
    return query(workdir / "mlruns" / "mlflow.db", "SELECT name, version FROM model_versions")


def file_size_limit(n_bytes: int) -> Callable[[], None]:
    """preexec_fn: RLIMIT_FSIZE (`ulimit -f`) for the child, as a full disk would stop writes."""
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, n_bytes))
    return apply


def write_spec(path: Path, body: str) -> Path:
    """Write a study spec file and return its path."""
    path.write_text(body)
    return path


TINY_SPEC = """name: {name}
sampler: {{type: random, seed: 0}}
pruner: none
n_trials: {n}
overrides: [generator=none, regressor.n_estimators=5, tracking.log_figures=false]
space:
  regressor.max_depth: int 2..4
"""


@contextmanager
def throwaway_pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database harden_<random> on 127.0.0.1:5432 (user postgres, trust auth);
    its URL is yielded and the database dropped afterwards."""
    import psycopg

    name = f"harden_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_available() -> bool:
    """True if the local PostgreSQL answers."""
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return True
    except Exception:
        return False


def world_readable_dir(base: Path) -> Path:
    """A directory every user can enter (for commands run as another user)."""
    d = base / "shared"
    d.mkdir()
    for p in (d, *d.parents):
        if str(p) in ("/", "/tmp"):
            break
        os.chmod(p, os.stat(p).st_mode | 0o755)
    return d
