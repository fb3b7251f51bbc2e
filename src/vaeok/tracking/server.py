"""MLflow servers on 127.0.0.1: the UI over the local store, and a shared tracking server
(PostgreSQL backend, proxied artifact store) for distributed sweeps."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

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

    exp_id = tracking.setup(cfg.tracking)  # created if missing, tagged as a model-training experiment
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
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)

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


def server(port: int = 5000, backend_uri: str = DEFAULT_SERVER_BACKEND,
           artifacts: str = "mlruns/server-artifacts") -> int:
    """Start a shared MLflow tracking server (PostgreSQL backend); block until Ctrl-C."""
    _check_port(port)
    if backend_uri.startswith("postgresql"):
        ensure_postgres_database(backend_uri)
    dest = artifacts if "://" in artifacts else Path(artifacts).resolve().as_uri()
    if "://" not in artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
    print(f"MLflow tracking server: http://127.0.0.1:{port}  (backend {redact_url(backend_uri)}, artifacts {dest})\n"
          f"workers log to it with:  MLFLOW_TRACKING_URI=http://127.0.0.1:{port} vaeok sweep ... tracking=server",
          flush=True)
    return _serve(server_command(port, backend_uri, dest))
