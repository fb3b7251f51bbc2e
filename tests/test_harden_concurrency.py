"""#17 classes 8-9: two sweeps starting together on a new store, and a double Ctrl-C.

Two `vaeok sweep` commands on one study started at the same moment in a fresh directory both
finish (store creation is safe under concurrency) and the study reaches its budget once. A second
Ctrl-C during a sweep's cleanup still ends it with exit 130, nothing RUNNING, and the study resumes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import cli_env
from .harden_utils import (
    TINY_SPEC,
    assert_nothing_running,
    ok,
    pg_available,
    query,
    run_statuses,
    throwaway_pg_database,
    vaeok,
)

pytestmark = pytest.mark.slow


def _start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "vaeok.cli", *args], cwd=cwd, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _together(args: list[str], cwd: Path) -> list[tuple[int, str]]:
    procs = [_start(args, cwd) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    return [(p.returncode, err) for p, (_out, err) in zip(procs, outs, strict=True)]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_sweeps_start_together_on_a_new_store(tmp_path: Path, backend: str) -> None:
    (tmp_path / "s.yaml").write_text(TINY_SPEC.format(name="duo", n=3))
    args = ["sweep", "--spec", "s.yaml", "--no-progress"]
    if backend == "postgresql":
        if not pg_available():
            pytest.skip("needs PostgreSQL on 127.0.0.1:5432")
        with throwaway_pg_database() as url:
            results = _together([*args, "--storage", url], tmp_path)
            import optuna

            trials = optuna.load_study(study_name="duo", storage=url).trials
    else:
        import optuna

        results = _together(args, tmp_path)
        trials = optuna.load_study(study_name="duo", storage=f"sqlite:///{tmp_path}/mlruns/optuna.db").trials
    for rc, err in results:
        assert rc == 0, err
    states = [t.state.name for t in trials]
    # 3 distinct configs; a worker's draw that repeats a finished one reuses it (COMPLETE, not counted)
    distinct = [t for t in trials if t.state.name == "COMPLETE" and "duplicate_of" not in t.user_attrs]
    assert len(distinct) == 3 and "RUNNING" not in states, states
    assert "RUNNING" not in run_statuses(tmp_path)


SLOW_SPEC = ("name: {name}\nsampler: {{type: random, seed: 0}}\npruner: none\nn_trials: 2\n"
             "overrides: [experiment=smoke, trainer.max_epochs=3000, generator.n_virtual=30, "
             "tracking.log_figures=false]\nspace:\n  model.hidden: int 4..8\n")


@pytest.mark.parametrize("gap", [0.05, 0.4, 1.5])
def test_double_ctrl_c_during_a_sweep(tmp_path: Path, gap: float) -> None:
    (tmp_path / "s.yaml").write_text(SLOW_SPEC.format(name="dbl"))
    args = ["sweep", "--spec", "s.yaml", "--no-progress"]
    proc = _start(args, tmp_path)
    deadline = time.monotonic() + 300
    while ("RUNNING",) not in query(tmp_path / "mlruns" / "optuna.db", "SELECT state FROM trials") \
            or "RUNNING" not in run_statuses(tmp_path):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no trial started"
        time.sleep(0.2)
    time.sleep(1.0)  # inside the trial's VAE training
    os.kill(proc.pid, signal.SIGINT)
    time.sleep(gap)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGINT)  # the second Ctrl-C lands in the cleanup
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == ["vaeok: interrupted (SIGINT)"], err
    assert_nothing_running(tmp_path)
    statuses = query(tmp_path / "mlruns" / "mlflow.db", "SELECT name, status FROM runs")
    assert ("study-dbl", "KILLED") in statuses, statuses
    ok(vaeok(*args, cwd=tmp_path))  # the same command resumes the study
    states = [r[0] for r in query(tmp_path / "mlruns" / "optuna.db", "SELECT state FROM trials")]
    assert states.count("COMPLETE") == 2, states
