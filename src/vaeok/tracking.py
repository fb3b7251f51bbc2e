"""MLflow helpers: store setup, runs that always end FINISHED/FAILED/KILLED, batched logging."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from vaeok.errors import UserError

MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100


def setup(tracking: DictConfig) -> str:
    """Point MLflow at the configured store; return the experiment id (created if missing)."""
    uri = str(tracking.uri)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    try:
        exp = mlflow.get_experiment_by_name(tracking.experiment)
        if exp is not None:
            return exp.experiment_id
        root = Path(tracking.artifact_root)
        location = root.resolve().as_uri() if "://" not in str(root) else str(root)
        return mlflow.create_experiment(tracking.experiment, artifact_location=location)
    except mlflow.exceptions.MlflowException as exc:
        if "already exists" in str(exc):  # created concurrently by another worker
            return mlflow.get_experiment_by_name(tracking.experiment).experiment_id
        raise UserError(f"MLflow store {uri}: {str(exc).splitlines()[0]}") from None


@contextmanager
def run(experiment_id: str, run_name: str, tags: Mapping[str, str] | None = None,
        nested: bool = False, parent_run_id: str | None = None) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run that ends FINISHED, FAILED (exception) or KILLED (interrupt), never RUNNING."""
    active = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=dict(tags or {}),
                              nested=nested, parent_run_id=parent_run_id)
    try:
        yield active
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    else:
        mlflow.end_run("FINISHED")


def log_batch(run_id: str, metrics: Mapping[str, float] | None = None, params: Mapping[str, str] | None = None,
              tags: Mapping[str, str] | None = None, series: Mapping[str, list[float]] | None = None) -> None:
    """Log scalars, params, tags and per-step series in as few requests as MLflow allows."""
    client = MlflowClient()
    ts = _now_ms()
    ms = [Metric(k, float(v), ts, 0) for k, v in (metrics or {}).items()]
    for key, values in (series or {}).items():
        ms.extend(Metric(key, float(v), ts, step) for step, v in enumerate(values, start=1))
    ps = [Param(k, str(v)[:6000]) for k, v in (params or {}).items()]
    tg = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
    for i in range(0, max(len(ms), 1), MAX_METRICS_PER_BATCH):
        chunk_p = ps[:MAX_PARAMS_PER_BATCH] if i == 0 else []
        client.log_batch(run_id, metrics=ms[i:i + MAX_METRICS_PER_BATCH], params=chunk_p, tags=tg if i == 0 else [])
    for i in range(MAX_PARAMS_PER_BATCH, len(ps), MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, params=ps[i:i + MAX_PARAMS_PER_BATCH])


def git_commit() -> str:
    """The checkout's commit hash, or 'unknown' outside git."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
