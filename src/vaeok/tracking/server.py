"""MLflow servers on 127.0.0.1: the UI over the local store, and a shared tracking server
(PostgreSQL backend, proxied artifact store) for distributed sweeps."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlparse

from omegaconf import DictConfig

from vaeok.config.compose import load_config
from vaeok.core.errors import UserError, message
from vaeok.core.redact import redact_text, redact_url

DEFAULT_SERVER_BACKEND = "postgresql://postgres@127.0.0.1:5432/mlflow"


def ui_command(port: int, tracking_cfg: DictConfig) -> list[str]:
    """The `mlflow server` command line for this project's store, bound to 127.0.0.1."""
    root = Path(str(tracking_cfg.artifact_root))
    artifacts = str(root) if "://" in str(root) else root.resolve().as_uri()
    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", str(tracking_cfg.uri),
            "--default-artifact-root", artifacts, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]


def ui(port: int = 5000, overrides: Sequence[str] = ()) -> int:
    """Start `mlflow server` (the UI) against the project's store; block until it exits or Ctrl-C."""
    _check_port(port)
    cfg = load_config(overrides)
    uri = str(cfg.tracking.uri)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if "://" not in str(cfg.tracking.artifact_root):
        Path(str(cfg.tracking.artifact_root)).mkdir(parents=True, exist_ok=True)
    from vaeok.tracking import runs as tracking

    exp_id = tracking.setup(cfg.tracking)  # store checked (and made once) there; experiment tagged for model training
    # MLflow >= 3.x opens experiments in its GenAI view unless told otherwise: link the runs table
    print(f"MLflow UI: http://127.0.0.1:{port}/#/experiments/{exp_id}/runs?workflowType=machine_learning  "
          f"(experiment '{cfg.tracking.experiment}', store {redact_url(uri)}, artifacts "
          f"{cfg.tracking.artifact_root}); Ctrl-C stops it", flush=True)
    return _serve(ui_command(port, cfg.tracking))


def _check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise UserError(f"--port must be in 1..65535, got {port}")
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            raise UserError(f"port {port} on 127.0.0.1 is already in use (try --port {port + 1})")


def _serve(cmd: list[str]) -> int:
    """Run an MLflow server in its own process group; stop the whole group on Ctrl-C/SIGTERM."""
    # MLflow's background job runner (GenAI jobs; several huey worker processes) is not needed here
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, preexec_fn=_die_with_parent)

    def _terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        _stop_group(proc)
        return 0
    finally:
        if proc.poll() is None:
            _stop_group(proc)


def _die_with_parent() -> None:
    """In the server child (Linux): SIGTERM it when vaeok dies, even by SIGKILL, so no orphaned
    server keeps the port and the store open (PR_SET_PDEATHSIG; elsewhere nothing happens)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _stop_group(proc: Any) -> None:
    """Stop the server and the workers it spawned (its own process group): TERM, then KILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def ensure_postgres_database(url: str) -> None:
    """Create the database named in a postgresql:// URL if it does not exist yet."""
    import psycopg
    from psycopg import sql

    u = urlparse(url)
    name = u.path.lstrip("/")
    if not name:
        raise UserError(f"no database name in {redact_url(url)}")
    try:
        conn = psycopg.connect(host=u.hostname or "127.0.0.1", port=u.port or 5432, user=u.username or "postgres",
                               password=u.password, dbname="postgres", connect_timeout=5, autocommit=True)
    except psycopg.OperationalError as exc:
        raise UserError(redact_text(f"cannot reach PostgreSQL at {u.hostname}:{u.port or 5432}: "
                                    f"{message(exc)}")) from None
    with conn:  # autocommit: CREATE DATABASE cannot run inside a transaction
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def server_command(port: int, backend_uri: str, artifacts: str) -> list[str]:
    """`mlflow server` for a shared tracking server that proxies artifact uploads (--serve-artifacts)."""
    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
            "--artifacts-destination", artifacts, "--serve-artifacts", "--host", "127.0.0.1",
            "--port", str(port), "--workers", "2"]


_BACKEND_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg", "mysql", "mysql+pymysql", "mssql")
_PG_DATABASE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,62}")
# libpq options in a URL's query that redirect the connection somewhere else than its host part says
_PG_REDIRECTS = {"host", "hostaddr", "port", "dbname", "user", "service", "passfile", "options"}


def check_backend_uri(uri: str) -> None:
    """UserError naming --backend-store-uri unless it is a database URL MLflow can use, with a plain
    PostgreSQL database name (letters, digits, _ and -, at most 63: PostgreSQL would silently cut a
    longer one) and no query option that points the connection elsewhere."""
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme not in _BACKEND_SCHEMES:
        raise UserError(f"--backend-store-uri {redact_url(uri)[:200]}: not a database URL "
                        f"(schemes: {', '.join(_BACKEND_SCHEMES)})")
    if scheme.startswith("postgresql"):
        u = urlparse(uri)
        name = u.path.lstrip("/")
        redirects = sorted(_PG_REDIRECTS & {k for k, _ in parse_qsl(u.query)}) if u.query else []
        if not _PG_DATABASE.fullmatch(name) or redirects or u.fragment or u.params:
            raise UserError(f"--backend-store-uri: the database name must be letters, digits, _ and - (at most 63), "
                            f"without connection options ({', '.join(redirects) or 'none'}); got {name[:80]!r}")


def server(port: int = 5000, backend_uri: str = DEFAULT_SERVER_BACKEND,
           artifacts: str = "mlruns/server-artifacts") -> int:
    """Start a shared MLflow tracking server (PostgreSQL backend); block until Ctrl-C.

    The backend store is checked and created here, in this process (one line on any problem),
    before `mlflow server` starts on it."""
    from vaeok.tracking.runs import absolute_sqlite_uri
    from vaeok.tracking.stores import open_mlflow_store

    _check_port(port)
    check_backend_uri(backend_uri)
    if backend_uri.startswith("postgresql"):
        ensure_postgres_database(backend_uri)
    backend_uri = absolute_sqlite_uri(backend_uri, "--backend-store-uri")
    open_mlflow_store(backend_uri, "--backend-store-uri")
    dest = artifacts if "://" in artifacts else Path(artifacts).resolve().as_uri()
    if "://" not in artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
    print(f"MLflow tracking server: http://127.0.0.1:{port}  (backend {redact_url(backend_uri)}, artifacts {dest})\n"
          f"workers log to it with:  MLFLOW_TRACKING_URI=http://127.0.0.1:{port} vaeok sweep ... tracking=server",
          flush=True)
    return _serve(server_command(port, backend_uri, dest))
