"""Interrupts and storage faults: SIGINT/SIGTERM during run, sweep and compare; unwritable or full stores;
an unreachable Optuna storage.

Interrupted: exit 130 (SIGINT) or 143 (SIGTERM), one line on stderr, every MLflow run KILLED (none
RUNNING), no Optuna trial RUNNING, finished trials kept, and the same sweep command resumes.
Storage faults: one line, exit 2, no run left RUNNING.
"""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import optuna
import pytest
from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from vaeok import cli
from vaeok.core.signals import Terminated, terminate_as_interrupt

from .conftest import TINY, cli_env

EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
SPEC = ("name: {name}\nsampler: {{type: tpe, seed: 0}}\npruner: none\nn_trials: 4\n"
        "space:\n  model.hidden: int 4..16\n  model.lr: float 1e-3..1e-2 log\n")


def _runs(tmp_path: Path) -> list:
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    exp = mlflow.get_experiment_by_name("vaeok")
    return MlflowClient().search_runs([exp.experiment_id], max_results=1000) if exp else []


def _statuses(tmp_path: Path) -> list[str]:
    """Run statuses straight from the SQLite store (cheap enough to poll every 0.1 s)."""
    db = tmp_path / "mlruns" / "mlflow.db"
    if not db.is_file():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return [r[0] for r in con.execute("SELECT status FROM runs")]
    except sqlite3.Error:
        return []


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- the shared SIGTERM helper (fast, in-process) -------------------------------------------------
def test_sigterm_raises_keyboard_interrupt_only_inside_the_helper() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as info, terminate_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert isinstance(info.value, KeyboardInterrupt) and info.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_during_vae_training_kills_the_run_with_exit_143(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from vaeok.generators.vae import VAEModule

    real = VAEModule.on_train_epoch_end

    def at_epoch_end(self: VAEModule) -> None:
        real(self)
        if self.current_epoch == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # lands inside Lightning's fit loop

    monkeypatch.setattr(VAEModule, "on_train_epoch_end", at_epoch_end)
    assert cli.main(["run", *TINY, "trainer.max_epochs=50"]) == 143
    assert _one_line(capsys.readouterr().err) == "vaeok: interrupted (SIGTERM)"
    (run,) = _runs(tmp_path)
    assert run.info.status == "KILLED" and run.data.tags["vaeok.state"] == "KILLED"


# -- signals to the real CLI (subprocesses) -------------------------------------------------------
def _start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "vaeok.cli", *args], cwd=cwd, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _signal_when(proc: subprocess.Popen[str], ready, sig: int, timeout: float = 240) -> float:
    """Poll every 0.1 s until ready(); send sig; return the time it was sent."""
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, f"finished before the signal: {proc.communicate()}"
        assert time.time() < deadline, "work never started"
        time.sleep(0.1)
    os.kill(proc.pid, sig)
    return time.monotonic()


def _assert_interrupted(proc: subprocess.Popen[str], sent: float, sig: int) -> None:
    _out, err = proc.communicate(timeout=120)
    assert time.monotonic() - sent < 60, "did not exit promptly"
    assert proc.returncode == EXIT[sig], err
    assert _one_line(err) == f"vaeok: interrupted ({signal.Signals(sig).name})"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("command", [
    ["run", *TINY, "trainer.max_epochs=5000"],  # ~10 s of VAE training
    ["compare", "experiment=compare_fast", "trainer.max_epochs=3000", "compare.ks_repeats=20"],
], ids=["run", "compare"])
def test_signal_during_run_or_compare_kills_its_runs(tmp_path: Path, command: list[str], sig: int) -> None:
    proc = _start(command, tmp_path)
    sent = _signal_when(proc, lambda: "RUNNING" in _statuses(tmp_path), sig)
    _assert_interrupted(proc, sent, sig)
    runs = _runs(tmp_path)
    assert runs and all(r.info.status == "KILLED" and r.data.tags.get("vaeok.state") == "KILLED" for r in runs)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_sweep_keeps_finished_trials_and_resumes_to_exactly_n_trials(tmp_path: Path, sig: int) -> None:
    (tmp_path / "r.yaml").write_text(SPEC.format(name="r"))
    storage = f"sqlite:///{tmp_path}/mlruns/optuna.db"
    cmd = ["sweep", "--spec", "r.yaml", "--no-progress", *TINY, "trainer.max_epochs=400"]  # trials of ~1-2 s

    def one_done_one_running() -> bool:
        try:
            states = [t.state for t in optuna.load_study(study_name="r", storage=storage).trials]
        except Exception:
            return False
        return TrialState.COMPLETE in states and TrialState.RUNNING in states and "RUNNING" in _statuses(tmp_path)

    proc = _start(cmd, tmp_path)
    sent = _signal_when(proc, one_done_one_running, sig)
    _assert_interrupted(proc, sent, sig)
    mid = optuna.load_study(study_name="r", storage=storage).trials
    assert TrialState.RUNNING not in [t.state for t in mid]
    done = {t.number: t.params for t in mid if t.state == TrialState.COMPLETE}
    assert done
    runs = _runs(tmp_path)
    assert "RUNNING" not in [r.info.status for r in runs]
    parent = next(r for r in runs if r.data.tags.get("vaeok.role") == "study")
    assert parent.info.status == "KILLED"
    by_trial = {int(r.data.tags["vaeok.trial"]): r for r in runs if "vaeok.trial" in r.data.tags}
    for t in mid:
        if t.state == TrialState.FAIL and t.number in by_trial:  # the interrupted trial
            assert by_trial[t.number].info.status == "KILLED"

    res = subprocess.run([sys.executable, "-m", "vaeok.cli", *cmd], cwd=tmp_path, env=cli_env(),
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    study = optuna.load_study(study_name="r", storage=storage)
    assert [t.state for t in study.trials].count(TrialState.COMPLETE) == 4
    assert {t.number: t.params for t in study.trials if t.number in done} == done  # kept, not redone
    runs = _runs(tmp_path)
    assert "RUNNING" not in [r.info.status for r in runs]
    children = [r for r in runs if "vaeok.trial" in r.data.tags]  # not the study's baseline run
    with_runs = [t for t in study.trials if "mlflow_run_id" in t.user_attrs]  # a signal may precede the run
    assert sorted(int(r.data.tags["vaeok.trial"]) for r in children) == sorted(t.number for t in with_runs)
    parents = [r for r in runs if r.data.tags.get("vaeok.role") == "study"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"


# -- storage faults (fast, in-process) ------------------------------------------------------------
def test_tracking_store_under_a_regular_file_is_a_one_line_error(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A path below a regular FILE cannot be created by anyone, root included (chmod does not stop root)."""
    (tmp_path / "blocker").write_text("not a directory")
    assert cli.main(["run", *TINY, f"tracking.uri=sqlite:///{tmp_path}/blocker/mlflow.db"]) == 2
    assert "blocker is not a directory" in _one_line(capsys.readouterr().err)  # the store-health check names it


def test_artifact_root_under_a_regular_file_fails_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "blocker").write_text("not a directory")
    assert cli.main(["run", *TINY, "generator=none", f"tracking.artifact_root={tmp_path}/blocker/artifacts"]) == 2
    assert "vaeok: error: cannot write: [Errno 20] Not a directory" in _one_line(capsys.readouterr().err)
    (run,) = _runs(tmp_path)
    assert run.info.status == "FAILED" and run.data.tags["vaeok.error"].startswith("NotADirectoryError")


def _full_disk(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    def refuse(self, local_file: str, artifact_path: str | None = None) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(LocalArtifactRepository, "log_artifact", refuse)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_disk_full_or_read_only_artifacts_fail_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str], code: int) -> None:
    _full_disk(monkeypatch, code)
    assert cli.main(["run", *TINY, "generator=none"]) == 2
    assert os.strerror(code) in _one_line(capsys.readouterr().err)
    (run,) = _runs(tmp_path)
    assert run.info.status == "FAILED" and os.strerror(code) in run.data.tags["vaeok.error"]


def test_disk_full_at_sweep_start_leaves_no_running_parent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "d.yaml").write_text(SPEC.format(name="d"))
    _full_disk(monkeypatch, errno.ENOSPC)
    assert cli.main(["sweep", "--spec", "d.yaml", "--no-progress", *TINY, "generator=none"]) == 2
    assert "No space left on device" in _one_line(capsys.readouterr().err)
    assert [r.info.status for r in _runs(tmp_path)] == ["FAILED"]


@pytest.mark.parametrize("storage", ["postgresql://postgres@127.0.0.1:1/x", "sqlite:///{tmp}/blocker/optuna.db"])
def test_unreachable_optuna_storage_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        storage: str) -> None:
    (tmp_path / "blocker").write_text("not a directory")
    (tmp_path / "u.yaml").write_text(SPEC.format(name="u"))
    args = ["sweep", "--spec", "u.yaml", "--no-progress", "--storage", storage.format(tmp=tmp_path), *TINY]
    assert cli.main(args) == 2
    line = _one_line(capsys.readouterr().err)
    assert "Optuna storage" in line or "is not a directory" in line or "cannot connect" in line
    assert "RUNNING" not in _statuses(tmp_path)


@pytest.mark.slow
def test_sigterm_to_a_multi_worker_sweep_reaches_its_workers(tmp_path: Path) -> None:
    """The coordinator forwards SIGTERM to its worker processes: prompt exit 143, nothing left RUNNING."""
    (tmp_path / "w.yaml").write_text(SPEC.format(name="w").replace("n_trials: 4", "n_trials: 30"))
    storage = f"sqlite:///{tmp_path}/mlruns/optuna.db"
    proc = _start(["sweep", "--spec", "w.yaml", "--no-progress", "--workers", "2", *TINY,
                   "trainer.max_epochs=2000"], tmp_path)

    def trial_running() -> bool:
        try:
            trials = optuna.load_study(study_name="w", storage=storage).trials
        except Exception:
            return False
        return any(t.state == TrialState.RUNNING and "mlflow_run_id" in t.user_attrs for t in trials)

    sent = _signal_when(proc, trial_running, signal.SIGTERM)
    _out, err = proc.communicate(timeout=120)
    assert time.monotonic() - sent < 30, "workers were not told"  # else they go on (joined for 60 s)
    assert proc.returncode == 143 and "Traceback" not in err, err
    states = [t.state for t in optuna.load_study(study_name="w", storage=storage).trials]
    assert TrialState.RUNNING not in states and TrialState.FAIL in states and states.count(TrialState.COMPLETE) < 30
    assert "RUNNING" not in _statuses(tmp_path) and "KILLED" in _statuses(tmp_path)
