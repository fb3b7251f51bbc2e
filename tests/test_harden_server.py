"""#17 class 8 (server) and 10 (ui): `vaeok server`/`ui` with unusable stores answer in one line
before an MLflow server starts, never hang, and a SIGKILLed `vaeok ui` takes its server with it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import cli_env
from .harden_utils import PG_ADMIN, error_line, pg_available, vaeok

# CLI subprocesses (5-10 s each): slow, run by `make test` and CI, not by the default fast `pytest`
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("uri,needle", [
    ("nosuchscheme://x/y", "--backend-store-uri"),
    ("postgresql://postgres@127.0.0.1:1/mlflow", "127.0.0.1:1"),
    ("sqlite:///{tmp}/garbage.db", "garbage.db"),
    ("sqlite:///{tmp}/afile/below/mlflow.db", "--backend-store-uri"),
], ids=["scheme", "pg-unreachable", "sqlite-garbage", "sqlite-below-a-file"])
def test_server_with_an_unusable_backend_is_one_line(tmp_path: Path, uri: str, needle: str) -> None:
    (tmp_path / "garbage.db").write_bytes(os.urandom(8192))
    (tmp_path / "afile").write_text("x")
    proc = vaeok("server", "--port", str(_free_port()), "--backend-store-uri", uri.format(tmp=tmp_path),
                 cwd=tmp_path, timeout=120)
    error_line(proc, needle)


@pytest.mark.skipif(not pg_available(), reason="needs PostgreSQL on 127.0.0.1:5432")
@pytest.mark.parametrize("name", ['x"; DROP DATABASE postgres; --', "a'b", "x%00y", "a" * 80, "db?host=/tmp"])
def test_malicious_postgres_database_names_are_refused(tmp_path: Path, name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN) as con:
        before = {r[0] for r in con.execute("SELECT datname FROM pg_database")}
    proc = vaeok("server", "--port", str(_free_port()), "--backend-store-uri",
                 f"postgresql://postgres@127.0.0.1:5432/{name}", cwd=tmp_path, timeout=120)
    error_line(proc, "database name")
    with psycopg.connect(PG_ADMIN) as con:
        after = {r[0] for r in con.execute("SELECT datname FROM pg_database")}
    assert after == before


@pytest.mark.slow
def test_sigkill_of_vaeok_ui_stops_its_mlflow_server(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "vaeok.cli", "ui", "--port", str(port)], cwd=tmp_path,
                            env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not _listening(port):
            assert proc.poll() is None, "vaeok ui exited"
            assert time.monotonic() < deadline, "the UI never listened"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 60  # generous: the orphaned server must notice its parent died
        while _listening(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _listening(port), "the MLflow server outlived a SIGKILLed vaeok ui"
    finally:
        if proc.poll() is None:
            proc.kill()
        _kill_listener(port)


def _kill_listener(port: int) -> None:
    """Clean up after a failed run of the test: kill the process group listening on `port`."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            if parts[1].endswith(f":{port:04X}") and parts[3] == "0A":
                inode = parts[9]
    if inode is None:
        return
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    os.killpg(os.getpgid(int(pid)), signal.SIGKILL)
                    return
            except OSError:
                continue
