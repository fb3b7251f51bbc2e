"""MLflow helpers: store setup, runs that always end FINISHED/FAILED/KILLED, batched logging."""

from __future__ import annotations

import functools
import os
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from vaeok.core.errors import UserError, message, one_line
from vaeok.core.redact import redact_text
from vaeok.core.signals import delivered, raise_pending
from vaeok.tracking.sqlite import enable_wal
from vaeok.tracking.stores import check_sqlite_file, init_lock, open_mlflow_store
from vaeok.tracking.tags import (
    ERROR_TAG,
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    PRUNED_SUFFIX,
    PRUNED_TAG,
    STATE_TAG,
)


def setup(tracking: DictConfig) -> str:
    """Point MLflow at the configured store; return the experiment id (created if missing)."""
    uri = absolute_sqlite_uri(str(tracking.uri))
    if uri.startswith("sqlite:"):
        enable_wal()
    mlflow.set_tracking_uri(uri)
    key = (uri, str(tracking.experiment))
    if key in _EXPERIMENT_IDS:  # one lookup per process, not per trial
        return _EXPERIMENT_IDS[key]
    open_mlflow_store(uri)  # checked, created once under a lock, repaired if half-made and empty
    with init_lock(uri):  # two commands on a new store must not both create the experiment
        _EXPERIMENT_IDS[key] = _experiment_id(tracking, uri)
    return _EXPERIMENT_IDS[key]


_EXPERIMENT_IDS: dict[tuple[str, str], str] = {}


def _experiment_id(tracking: DictConfig, uri: str) -> str:
    try:
        exp = mlflow.get_experiment_by_name(tracking.experiment)
        if exp is not None:
            if EXPERIMENT_KIND_TAG not in exp.tags:  # stores created before vaeok set it
                MlflowClient().set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
            return exp.experiment_id
        tags = {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
        if uri.startswith(("http://", "https://")):  # the server decides (proxied artifacts)
            return mlflow.create_experiment(tracking.experiment, tags=tags)
        root = Path(tracking.artifact_root)
        location = root.resolve().as_uri() if "://" not in str(root) else str(root)
        return mlflow.create_experiment(tracking.experiment, artifact_location=location, tags=tags)
    except mlflow.exceptions.MlflowException as exc:
        if "already exists" in str(exc):  # created concurrently by another worker
            return mlflow.get_experiment_by_name(tracking.experiment).experiment_id
        raise UserError(redact_text(f"MLflow store {uri}: {message(exc)}")) from None




def absolute_sqlite_uri(uri: str, what: str = "tracking.uri") -> str:
    """sqlite:///relative.db -> sqlite:////abs/relative.db (parent created); other URIs unchanged.

    MLflow caches one store per URI string, so a cwd-relative URI must not be reused from
    another directory in the same process.
    """
    if not uri.startswith("sqlite:///"):
        return uri
    check_sqlite_file(Path(uri.removeprefix("sqlite:///")), what)  # one line for a damaged or unusable file
    path = Path(os.path.abspath(uri.removeprefix("sqlite:///")))  # not resolve(): a symlink loop is reported above
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the store directory for {uri}: {exc.strerror}") from None
    return f"sqlite:///{path}"



@contextmanager
def run(experiment_id: str, run_name: str, tags: Mapping[str, str] | None = None,
        nested: bool = False, parent_run_id: str | None = None,
        pruned: tuple[type[BaseException], ...] = ()) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run that always ends: FINISHED, FAILED (exception, message tagged), KILLED
    (interrupt), or - for an exception listed in `pruned` - FINISHED with tag vaeok.state=PRUNED,
    the reason in `vaeok.pruned` and the run name suffixed `-pruned`. (Pruning is a normal outcome
    of a search, as in Optuna's own MLflow callback: KILLED would draw the same red mark as a
    failure in the MLflow UI.)

    On the failure paths a store that refuses the closing writes (disk full, read-only) never
    hides the original exception."""
    try:
        active = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=dict(tags or {}),
                                  nested=nested, parent_run_id=parent_run_id)
    except mlflow.exceptions.MlflowException as exc:
        raise UserError(f"MLflow store {mlflow.get_tracking_uri()}: cannot start a run: "
                        f"{message(exc)}") from None
    try:
        yield active
        raise_pending()  # a Ctrl-C that Python swallowed during the run still ends it KILLED
    except KeyboardInterrupt:
        delivered()
        _end("KILLED", "KILLED", quiet=True)
        raise
    except pruned as exc:
        with suppress(Exception):
            mlflow.set_tags({PRUNED_TAG: one_line(exc)[:5000], "mlflow.runName": f"{run_name}{PRUNED_SUFFIX}"})
        _end("PRUNED", "FINISHED", quiet=True)
        raise
    except BaseException as exc:
        with suppress(Exception):
            mlflow.set_tag(ERROR_TAG, one_line(exc)[:5000])
        with suppress(Exception):
            mlflow.log_text(traceback.format_exc(), "error.txt")
        _end("FAILED", "FAILED", quiet=True)
        raise
    else:
        _end("COMPLETE", "FINISHED")


def _end(state: str, status: str, quiet: bool = False) -> None:
    """Tag vaeok.state and end the active run; quiet: swallow store errors (an exception is in flight)."""
    try:
        mlflow.set_tag(STATE_TAG, state)
    except Exception:
        if not quiet:
            mlflow.end_run(status)
            raise
    try:
        mlflow.end_run(status)  # pops the run even if the store then refuses the update
    except Exception:
        if not quiet:
            raise


def log_batch(run_id: str, metrics: Mapping[str, float] | None = None, params: Mapping[str, str] | None = None,
              tags: Mapping[str, str] | None = None,
              series: Mapping[str, Sequence[tuple[int, float]]] | None = None) -> None:
    """Log scalars, params, tags and (step, value) series in one `log_batch` (MLflow splits it
    into as many requests as its limits need); passwords in values are masked."""
    ts = int(time.time() * 1000)
    ms = [Metric(k, float(v), ts, 0) for k, v in (metrics or {}).items()]
    for key, points in (series or {}).items():
        ms.extend(Metric(key, float(v), ts, int(step)) for step, v in points)
    ps = [Param(k, redact_text(str(v))[:6000]) for k, v in (params or {}).items()]
    tg = [RunTag(k, redact_text(str(v))) for k, v in (tags or {}).items()]
    MlflowClient().log_batch(run_id, metrics=ms, params=ps, tags=tg)



def verify_artifacts(run_id: str, expected: Mapping[str, int | None]) -> None:
    """UserError (the run then ends FAILED) unless every expected artifact is in the artifact store
    with the expected size (None: any non-empty size), e.g. after a write the full disk cut short."""
    client = MlflowClient()
    listed: dict[str, int | None] = {}
    for folder in sorted({p.rpartition("/")[0] for p in expected}):
        try:
            listed.update({f.path: f.file_size for f in client.list_artifacts(run_id, folder or None)})
        except (mlflow.exceptions.MlflowException, OSError) as exc:
            raise UserError(f"cannot list the artifacts of run {run_id}: {one_line(exc)}") from None
    for path, size in expected.items():
        got = listed.get(path)
        if not got or (size is not None and got != size):
            where = redact_text(client.get_run(run_id).info.artifact_uri)
            raise UserError(f"artifact {path} of run {run_id} is {'incomplete' if got else 'missing'} in {where} "
                            f"({got or 0} of {size if size is not None else 'some'} bytes): the artifact store could "
                            "not be written completely (disk full or a file-size limit?)")


@functools.cache
def source_tags() -> dict[str, str]:
    """MLflow's source system tag for the code that runs: the git commit of the vaeok package's
    checkout (not of the working directory), if it is one."""
    from mlflow.utils.git_utils import get_git_commit

    import vaeok

    commit = get_git_commit(str(Path(vaeok.__file__).resolve().parent))
    return {"mlflow.source.git.commit": commit} if commit else {}
