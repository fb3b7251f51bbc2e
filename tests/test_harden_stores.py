"""#17 classes 2-4: damaged, unwritable, full and half-migrated MLflow and Optuna stores.

One store-health boundary: each case ends in one line naming the store file and what to do, exit 2,
no third-party log lines on stderr. An empty half-created store is repaired; a store holding data
is never modified (its bytes are compared before and after).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .harden_utils import (
    TINY,
    assert_nothing_running,
    error_line,
    file_size_limit,
    ok,
    query,
    run_statuses,
    vaeok,
)

# CLI subprocesses (5-10 s each): slow, run by `make test` and CI, not by the default fast `pytest`
pytestmark = pytest.mark.slow

MLFLOW_DB = Path("mlruns") / "mlflow.db"
OPTUNA_DB = Path("mlruns") / "optuna.db"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _dump(db: Path) -> list[str]:
    """Schema and rows of an SQLite file (what a user could lose; the journal mode is not data)."""
    import sqlite3

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return list(con.iterdump())


def _python(code: str, cwd: Path, limit: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300,
                          preexec_fn=file_size_limit(limit) if limit else None)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Template store files: an MLflow store holding one run, and an Optuna store holding one study."""
    d = tmp_path_factory.mktemp("stores")
    (d / "mlruns").mkdir()
    code = ("import mlflow; mlflow.set_tracking_uri('sqlite:///mlruns/mlflow.db');"
            f"e = mlflow.create_experiment('vaeok', artifact_location='file://{d}/mlruns/artifacts');"
            "r = mlflow.start_run(experiment_id=e); mlflow.log_param('p', 1); mlflow.end_run()")
    assert _python(code, d).returncode == 0
    code = "import optuna; optuna.create_study(study_name='s', storage='sqlite:///mlruns/optuna.db')"
    assert _python(code, d).returncode == 0
    return {"mlflow": d / MLFLOW_DB, "optuna": d / OPTUNA_DB}


def _place(tmp_path: Path, src: Path, rel: Path) -> Path:
    dst = tmp_path / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(64 * 1024))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _bad_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0:100] = b"\xff" * 100
    path.write_bytes(bytes(data))


DAMAGE = {"garbage": _garbage, "truncated": _truncate, "header": _bad_header}


# --- damaged MLflow store -------------------------------------------------------------------------
@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("command", [
    ["run", *TINY],
    ["run", "--from-run", "0123456789abcdef0123456789abcdef"],
    ["predict", "--model", "models:/rubber@champion", "--input", "X.csv"],
], ids=["run", "from-run", "predict"])
def test_damaged_mlflow_store(tmp_path: Path, stores: dict[str, Path], damage: str, command: list[str]) -> None:
    db = _place(tmp_path, stores["mlflow"], MLFLOW_DB)
    DAMAGE[damage](db)
    before = _digest(db)
    (tmp_path / "X.csv").write_text("omega,eps_h,eps_nh\n0.1,1,1\n")
    error_line(vaeok(*command, cwd=tmp_path), "mlruns/mlflow.db")
    assert _digest(db) == before, "a damaged store was modified"


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("command", [["sweep", "--no-progress", "--n-trials", "1"], ["promote", "--study", "s"]],
                         ids=["sweep", "promote"])
def test_damaged_optuna_store(tmp_path: Path, stores: dict[str, Path], damage: str, command: list[str]) -> None:
    db = _place(tmp_path, stores["optuna"], OPTUNA_DB)
    DAMAGE[damage](db)
    before = _digest(db)
    error_line(vaeok(*command, cwd=tmp_path), "mlruns/optuna.db")
    assert _digest(db) == before
    assert_nothing_running(tmp_path)


def test_symlink_loop_store(tmp_path: Path) -> None:
    (tmp_path / "mlruns").mkdir()
    os.symlink("other.db", tmp_path / MLFLOW_DB)
    os.symlink("mlflow.db", tmp_path / "mlruns" / "other.db")
    error_line(vaeok("run", *TINY, cwd=tmp_path), "mlruns/mlflow.db")


def test_store_directory_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "mlruns").write_text("not a directory")
    error_line(vaeok("run", *TINY, cwd=tmp_path), "mlruns")


def test_store_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / MLFLOW_DB).mkdir(parents=True)
    error_line(vaeok("run", *TINY, cwd=tmp_path), "mlruns/mlflow.db")


def test_read_only_store_as_an_unprivileged_user(tmp_path: Path, stores: dict[str, Path]) -> None:
    """chmod does not stop root: the command runs as `nobody` in a world-readable directory."""
    if os.geteuid() != 0:
        work = tmp_path
        user = None
    else:
        import pwd

        try:
            pwd.getpwnam("nobody")
        except KeyError:
            pytest.skip("no user 'nobody'")
        import subprocess
        import sys

        probe = subprocess.run(["runuser", "-u", "nobody", "--", sys.executable, "-c", "pass"],
                               capture_output=True, check=False)
        if probe.returncode != 0:  # e.g. the interpreter lives under /root (pyenv), unreadable to nobody
            pytest.skip("user 'nobody' cannot run this Python interpreter")
        work = Path("/tmp") / f"harden-ro-{os.getpid()}-{tmp_path.name}"
        work.mkdir()
        user = "nobody"
    try:
        _place(work, stores["mlflow"], MLFLOW_DB)
        for p in (work / MLFLOW_DB, work / "mlruns", work):
            os.chmod(p, 0o555 if p.is_dir() else 0o444)
        proc = vaeok("run", *TINY, cwd=work, user=user, env={"HOME": str(work)})
        error_line(proc, "mlruns")
    finally:
        if user is not None:
            os.chmod(work, 0o755)
            os.chmod(work / "mlruns", 0o755)
            shutil.rmtree(work)


# --- half-created stores --------------------------------------------------------------------------
def _half_created_mlflow(tmp_path: Path) -> Path:
    """A store whose creation was cut short by a file-size limit while MLflow ran its migrations."""
    (tmp_path / "mlruns").mkdir(exist_ok=True)
    code = "import mlflow; mlflow.MlflowClient('sqlite:///mlruns/mlflow.db').search_experiments()"
    probe = tmp_path / "probe"
    (probe / "mlruns").mkdir(parents=True)
    for kib in (160, 96, 128, 192, 224, 256, 64):
        (tmp_path / MLFLOW_DB).unlink(missing_ok=True)
        if _python(code, tmp_path, kib * 1024).returncode != 0 and (tmp_path / MLFLOW_DB).is_file():
            shutil.copyfile(tmp_path / MLFLOW_DB, probe / MLFLOW_DB)  # MLflow alone cannot open it again
            if _python(code, probe).returncode != 0:
                shutil.rmtree(probe)
                return tmp_path / MLFLOW_DB
    pytest.fail("could not produce a half-migrated store")


def test_half_migrated_empty_mlflow_store_is_repaired(tmp_path: Path) -> None:
    _half_created_mlflow(tmp_path)
    (tmp_path / "X.csv").write_text("omega,eps_h,eps_nh\n0.1,1,1\n")
    # predict opens the store: after the repair, the model is simply not there yet
    error_line(vaeok("predict", "--model", "models:/rubber@champion", "--input", "X.csv", cwd=tmp_path),
               "no registered model 'rubber'")


def test_half_migrated_store_holding_data_is_left_alone(tmp_path: Path, stores: dict[str, Path]) -> None:
    db = _place(tmp_path, stores["mlflow"], MLFLOW_DB)
    import sqlite3

    with sqlite3.connect(db) as con:  # what an interrupted upgrade leaves behind
        con.execute("CREATE TABLE _alembic_tmp_datasets (x INTEGER)")
        con.execute("UPDATE alembic_version SET version_num = '0584bdc529eb'")
    before = _dump(db)
    error_line(vaeok("run", *TINY, cwd=tmp_path), "mlruns/mlflow.db", "holds")
    assert _dump(db) == before, "a store holding data was modified"
    assert run_statuses(tmp_path) == ["FINISHED"]


# --- full disk (file-size limit) -------------------------------------------------------------------
@pytest.mark.slow
def test_file_size_limit_during_the_first_run_then_the_store_works(tmp_path: Path) -> None:
    proc = vaeok("run", *TINY, cwd=tmp_path, preexec_fn=file_size_limit(200 * 1024))
    error_line(proc)
    assert "FINISHED" not in run_statuses(tmp_path)
    assert_nothing_running(tmp_path)
    ok(vaeok("run", *TINY, cwd=tmp_path))  # space is back: the store is usable (repaired if half-made)
    assert "FINISHED" in run_statuses(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("extra_kib", [8, 64, 160])
def test_a_run_reported_finished_has_all_its_artifacts(tmp_path: Path, extra_kib: int) -> None:
    """With the store already created, a size limit a little above it fails some write of the run:
    exit 2 and the run not FINISHED, or exit 0 and every artifact the run lists is complete."""
    ok(vaeok("run", *TINY, cwd=tmp_path))
    size = (tmp_path / MLFLOW_DB).stat().st_size
    proc = vaeok("run", *TINY, "tracking.log_figures=true", cwd=tmp_path,
                 preexec_fn=file_size_limit(size + extra_kib * 1024))
    statuses = run_statuses(tmp_path)
    if proc.returncode == 0:
        run_id = proc.stdout.split("MLflow run ")[1].split()[0]
        root = tmp_path / "mlruns" / "artifacts" / run_id / "artifacts"
        for name in ("config.yaml", "predictions.csv", "figures/predicted_vs_true.png"):
            assert (root / name).is_file() and (root / name).stat().st_size > 0, name
    else:
        error_line(proc)
        assert statuses.count("FINISHED") == 1, statuses
    assert "RUNNING" not in statuses
    assert query(tmp_path / MLFLOW_DB, "SELECT count(*) FROM runs")[0][0] == 2
