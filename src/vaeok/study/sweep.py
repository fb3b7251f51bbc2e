"""Optuna studies driven from study specs: one trial = one `vaeok run` config, logged to MLflow.

A study always has storage (SQLite under mlruns/ by default) and resumes by name; the budget is
the number of COMPLETE + PRUNED trials, so failed trials are replaced rather than counted.
One MLflow parent run per study; one nested run per trial.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any

import mlflow
import optuna
from mlflow.tracking import MlflowClient
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from vaeok.config.compose import load_config, load_trial_config, to_yaml
from vaeok.config.overrides import override
from vaeok.core.errors import UserError, one_line
from vaeok.core.progress import trial_bar
from vaeok.core.redact import redact_text, redact_url
from vaeok.core.runtime import configure_runtime
from vaeok.core.signals import interrupt_in, terminate_as_interrupt
from vaeok.data.datasets import load_dataset_cached
from vaeok.evaluation.result import EvalResult
from vaeok.experiment import RunHooks, run_experiment
from vaeok.study import baseline
from vaeok.study.evidence import OOF_ATTR, OOF_Y_ATTR
from vaeok.study.samplers import make_pruner, make_sampler
from vaeok.study.spec import StudySpec, check_keys, sample
from vaeok.tracking import runs as tracking
from vaeok.tracking.sqlite import enable_wal
from vaeok.tracking.stores import init_lock, open_optuna_storage
from vaeok.tracking.tags import DUPLICATE_TAG, NOTE_TAG, ROLE_TAG, SEARCHED_TAG, STUDY_TAG, TRIAL_TAG

DEFAULT_STORAGE = "sqlite:///mlruns/optuna.db"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
PARENT_ATTR = "mlflow_parent_run_id"


@dataclass
class SweepOptions:
    """Command-line knobs of a sweep on top of its spec."""

    study: str | None = None
    storage: str | None = None
    n_trials: int | None = None
    timeout: float | None = None
    retry_failed: int = 0
    max_failures: int | None = None
    max_repeats: int | None = None  # draws in a row that repeat finished trials before giving up
    heartbeat: int = 10
    progress: bool = True
    seed_offset: int = 0


# -- Optuna objects ---------------------------------------------------------------------------
def make_storage(url: str, heartbeat: int, retry_failed: int) -> RDBStorage:
    """RDB storage with heartbeats, so trials of a killed process are marked FAIL (and retried)."""
    if url.startswith("sqlite:///"):
        url = tracking.absolute_sqlite_uri(url, "--storage")
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}}
        enable_wal()
    else:
        engine_kwargs = {"pool_pre_ping": True}
    # checked, created under a per-store lock (two sweeps on a new store), repaired if half-made and empty
    return open_optuna_storage(url, "--storage", engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat,
                               grace_period=3 * heartbeat, failed_trial_callback=_retry_stale(retry_failed))


def _retry_stale(max_retry: int) -> Any:
    """Optuna's callback that re-enqueues trials whose worker died (heartbeat went stale)."""
    if max_retry <= 0:
        return None
    storages = optuna.storages
    cls = getattr(storages, "RetryHeartbeatStaleTrialCallback", None) or storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(max_retry=max_retry)


def spec_hash(spec: StudySpec, base_overrides: list[str]) -> str:
    """Identity of what a study searches (space, objectives, base overrides)."""
    d = spec.as_dict()
    key = {k: d[k] for k in ("space", "directions", "metrics", "overrides")} | {"base": base_overrides}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def open_study(spec: StudySpec, base_overrides: list[str], opts: SweepOptions) -> optuna.Study:
    """Create or resume the study; refuse to resume a study created from a different spec."""
    name = opts.study or spec.name
    url = opts.storage or DEFAULT_STORAGE
    with init_lock(tracking.absolute_sqlite_uri(url, "--storage")):  # one process sets a new study up
        return _open_study(spec, base_overrides, opts, name, make_storage(url, opts.heartbeat, opts.retry_failed))


def _open_study(spec: StudySpec, base_overrides: list[str], opts: SweepOptions, name: str,
                storage: RDBStorage) -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=storage, directions=spec.directions,
                                sampler=make_sampler(spec), pruner=make_pruner(spec), load_if_exists=True)
    # Same seed in every worker, or again on resume, would replay the same random draws.
    study.sampler = make_sampler(spec, opts.seed_offset + len(study.get_trials(deepcopy=False)))
    h = spec_hash(spec, base_overrides)
    attrs = study.user_attrs
    if "spec_hash" in attrs and attrs["spec_hash"] != h:
        raise UserError(f"study '{name}' already exists with a different spec or overrides; "
                        f"resume it with the same arguments or pick another --study name")
    if "spec_hash" not in attrs:
        with warnings.catch_warnings():  # experimental in Optuna; optuna-dashboard labels axes with it
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(spec.metrics))
        study.set_user_attr("spec_hash", h)
        study.set_user_attr("spec", spec.as_dict())
        study.set_user_attr("base_overrides", [*spec.overrides, *base_overrides])
        if spec.sampler["type"] == "one_at_a_time":
            enqueue_one_at_a_time(study, spec, base_overrides)
        else:
            notes = baseline.enqueue_references(study, spec, base_overrides)
            study.set_user_attr("reference_notes", notes)
    return study


def enqueue_one_at_a_time(study: optuna.Study, spec: StudySpec, base_overrides: list[str]) -> None:
    """Enqueue the paper's Fig 8 design: vary one parameter over its grid, others at defaults."""
    from omegaconf import OmegaConf

    cfg = load_config([*spec.overrides, *base_overrides])
    defaults = {p.key: OmegaConf.select(cfg, p.key) for p in spec.space}
    study.set_user_attr("oat_defaults", defaults)
    seen: set[str] = set()
    for p in spec.space:
        for v in p.grid():
            point = {**defaults, p.key: v}
            key = json.dumps(point, sort_keys=True)
            if key not in seen:
                seen.add(key)
                study.enqueue_trial(point, user_attrs={"oat_param": p.key})


# -- MLflow parent run ------------------------------------------------------------------------
def parent_run(study: optuna.Study, spec: StudySpec, base_overrides: list[str], experiment_id: str) -> str:
    """The study's MLflow parent run (created once, reopened on resume)."""
    client = MlflowClient()
    run_id = study.user_attrs.get(PARENT_ATTR)
    if run_id:
        try:
            client.update_run(run_id, status="RUNNING")
            return run_id
        except mlflow.exceptions.MlflowException:
            pass  # parent lost (e.g. tracking store changed): make a new one
    run = client.create_run(experiment_id, run_name=f"study-{study.study_name}",
                            tags={STUDY_TAG: study.study_name, ROLE_TAG: "study",
                                  **tracking.source_tags()})
    run_id = run.info.run_id
    try:
        study.set_user_attr(PARENT_ATTR, run_id)
        params = {f"spec.{k}": json.dumps(v, default=str) for k, v in spec.as_dict().items()}
        params["base_overrides"] = " ".join(base_overrides)
        zero = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0}
        tracking.log_batch(run_id, params=params, tags={NOTE_TAG: study_note(study, spec, zero, None)})
        cfg = load_config([*spec.overrides, *base_overrides])
        client.log_text(run_id, to_yaml(cfg), "base_config.yaml")
        client.log_text(run_id, json.dumps(spec.as_dict(), indent=2, default=str), "spec.json")
    except BaseException as exc:  # e.g. artifact store full or read-only: no parent left RUNNING
        with suppress(Exception):
            client.set_tag(run_id, tracking.ERROR_TAG, one_line(exc))
            client.set_terminated(run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    return run_id


def reconcile_mlflow(study: optuna.Study) -> None:
    """Make MLflow agree with Optuna about failed trials: a trial that FAILED (e.g. its worker was
    killed, possibly after its run ended but before Optuna heard the result) must not look
    RUNNING or FINISHED in MLflow."""
    client = MlflowClient()
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        rid = t.user_attrs.get("mlflow_run_id")
        if not rid:
            continue
        try:
            if client.get_run(rid).info.status in ("RUNNING", "FINISHED"):
                client.set_tag(rid, tracking.STATE_TAG, "FAILED")
                client.set_terminated(rid, "KILLED")
        except mlflow.exceptions.MlflowException:
            continue


# -- the objective ----------------------------------------------------------------------------
def make_objective(spec: StudySpec, base_overrides: list[str], parent_id: str,
                   reuse_duplicates: bool = True) -> Callable[[optuna.Trial], Any]:
    """Objective: compose the trial's config, run the shared evaluation, return the metric(s).
    With `reuse_duplicates`, parameters that repeat a COMPLETE trial return its result.

    Every trial gets exactly one MLflow run under the study's parent, whatever its state: a
    reused duplicate gets a run with the original's params and metrics (nothing trained), and a
    trial whose config cannot even be composed gets a FAILED run with the error."""
    prune = not spec.multi_objective and spec.pruner["type"] != "none"
    searched = [p.key for p in spec.space]
    experiment_id: list[str] = []

    def exp_id() -> str:
        if not experiment_id:
            experiment_id.append(MlflowClient().get_run(parent_id).info.experiment_id)
        return experiment_id[0]

    def objective(trial: optuna.Trial) -> float | list[float]:
        sampled = sample(spec.space, trial)
        name = f"{trial.study.study_name}-t{trial.number:03d}"
        role = trial.user_attrs.get(baseline.ROLE)
        tags = {STUDY_TAG: trial.study.study_name, TRIAL_TAG: str(trial.number),
                **({baseline.ROLE: role} if role else {})}
        same = duplicate_of(trial.study, sampled) if reuse_duplicates else None
        if same is not None:  # a config is deterministic: re-running it would only repeat its numbers
            trial.set_user_attr("duplicate_of", same.number)
            log_duplicate_run(trial, same, exp_id(), parent_id, name, tags, searched)
            return list(same.values) if spec.multi_objective else same.values[0]
        overrides = [*spec.overrides, *base_overrides, *(override(k, v) for k, v in sampled.items())]
        trial.set_user_attr("overrides", overrides)  # what promote / reproduction compose with Hydra
        note = trial_note(trial, spec, sampled)
        try:
            try:
                cfg = load_trial_config([*spec.overrides, *base_overrides], sampled)
            except Exception as exc:
                log_failed_run(trial, exc, exp_id(), parent_id, name, tags, sampled, searched, note)
                raise

            def report(step: int, value: float) -> None:
                trial.report(value, step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {step} with {spec.metrics[0]}={value:.4f}")

            hooks = RunHooks(
                report=report if prune else None, parent_run_id=parent_id, tags=tags, name=name,
                pruned=(optuna.TrialPruned,), on_start=lambda rid: trial.set_user_attr("mlflow_run_id", rid),
                searched=searched, note=note,
            )
            outcome = run_experiment(cfg, load_dataset_cached(cfg.data), hooks)
        except optuna.TrialPruned as exc:
            rid = trial.user_attrs.get("mlflow_run_id")
            if rid:
                with suppress(Exception):
                    MlflowClient().set_tag(rid, NOTE_TAG, f"{note}\n\n**Pruned** ({exc}): the pruner "
                                           "stopped it; its intermediate values are metric "
                                           f"`{spec.metrics[0]}_intermediate`.")
            raise
        except Exception as exc:
            trial.set_user_attr("error", one_line(exc))
            raise
        metrics = outcome.result.metrics
        missing = [m for m in spec.metrics if m not in metrics]
        if missing:
            raise UserError(f"objective metric(s) {missing} not produced; available: {sorted(metrics)}")
        trial.set_user_attr("metrics", {k: v for k, v in metrics.items() if k.count("/") == 1})  # one write
        oof = out_of_fold(outcome.result)
        if oof is not None:  # the evidence promote selects with (honest protocols only)
            trial.set_user_attr(OOF_ATTR, oof[1])
            if OOF_Y_ATTR not in trial.study.user_attrs:
                trial.study.set_user_attr(OOF_Y_ATTR, oof[0])
        values = [metrics[m] for m in spec.metrics]
        return values if spec.multi_objective else values[0]

    return objective


def out_of_fold(result: EvalResult) -> tuple[list[float], list[float]] | None:
    """(targets, out-of-fold predictions) per development row, averaged over CV repeats; None for
    the paper's leaky protocol (its test rows include virtual ones)."""
    if not result.objective_key.startswith("val/"):
        return None
    per_row = result.predictions.groupby("row")[["y_true", "y_pred"]].mean().sort_index()
    return per_row["y_true"].astype(float).tolist(), per_row["y_pred"].astype(float).tolist()


def trial_note(trial: optuna.Trial, spec: StudySpec, sampled: dict[str, Any]) -> str:
    """A trial run's MLflow description: which study, what was sampled, what is optimised."""
    role = trial.user_attrs.get(baseline.ROLE)
    what = f" ({role} reference trial)" if role else ""
    values = ", ".join(f"`{k}={v}`" for k, v in sampled.items()) or "(nothing sampled)"
    objective = ", ".join(f"{d} `{m}`" for d, m in zip(spec.directions, spec.metrics))
    return (f"Trial {trial.number}{what} of Optuna study `{trial.study.study_name}`: {values}. "
            f"Objective: {objective}.")


def log_duplicate_run(trial: optuna.Trial, same: FrozenTrial, experiment_id: str, parent_id: str, name: str,
                      tags: dict[str, str], searched: list[str]) -> None:
    """The run of a trial that repeated COMPLETE trial `same`'s parameters: the original's params,
    metrics and datasets, tag `vaeok.duplicate_of`, nothing trained."""
    client = MlflowClient()
    orig_id = same.user_attrs.get("mlflow_run_id")
    orig = None
    if orig_id:
        with suppress(mlflow.exceptions.MlflowException):
            orig = client.get_run(orig_id)
    note = (f"Trial {trial.number} of Optuna study `{trial.study.study_name}` sampled the same parameters as "
            f"trial {same.number}: its result is reused, nothing was trained. Original run: `{orig_id}`.")
    dup_tags = {**tags, DUPLICATE_TAG: str(same.number), NOTE_TAG: note, SEARCHED_TAG: ",".join(searched)}
    if orig is not None:
        dup_tags.update({k: v for k, v in orig.data.tags.items() if k in _COPIED_TAGS})
    with tracking.run(experiment_id, f"{name}-dup-t{same.number:03d}", dup_tags, nested=True,
                      parent_run_id=parent_id) as active:
        rid = active.info.run_id
        trial.set_user_attr("mlflow_run_id", rid)
        params = dict(orig.data.params) if orig is not None else {k: str(v) for k, v in same.params.items()}
        metrics = dict(orig.data.metrics) if orig is not None else dict(same.user_attrs.get("metrics", {}))
        tracking.log_batch(rid, params=params, metrics=metrics)
        if orig is not None and orig.inputs is not None and orig.inputs.dataset_inputs:
            client.log_inputs(rid, datasets=list(orig.inputs.dataset_inputs))


# tags describing the data and config of a run, copied onto the run of a duplicate trial
_COPIED_TAGS = ("data_hash", "data_name", "protocol", "generator", "regressor", "seed", "mlflow.source.git.commit")


def log_failed_run(trial: optuna.Trial, exc: BaseException, experiment_id: str, parent_id: str, name: str,
                   tags: dict[str, str], sampled: dict[str, Any], searched: list[str], note: str) -> None:
    """A FAILED run (params = the sampled values, error tagged) for a trial that failed before its
    experiment could start, e.g. a sampled value the config refuses."""
    with suppress(Exception), tracking.run(experiment_id, name, {**tags, NOTE_TAG: note,
                                               SEARCHED_TAG: ",".join(searched)}, nested=True,
                                               parent_run_id=parent_id) as active:
        trial.set_user_attr("mlflow_run_id", active.info.run_id)
        tracking.log_batch(active.info.run_id, params={k: str(v) for k, v in sampled.items()})
        raise exc


def duplicate_of(study: optuna.Study, params: dict[str, Any]) -> FrozenTrial | None:
    """A COMPLETE trial of the study with exactly these parameters (e.g. generator=none, which has
    no other searched keys), or None."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.params == params:
            return t
    return None


# -- the loop ---------------------------------------------------------------------------------
def count(study: optuna.Study, states: tuple[TrialState, ...]) -> int:
    """Number of trials in the given states."""
    return len(study.get_trials(deepcopy=False, states=states))


MAX_REPEATS_IN_A_ROW = 50  # (at least; 5 x n_trials for larger budgets) before a session gives up


def done(study: optuna.Study) -> int:
    """Trials that count toward the budget: COMPLETE or PRUNED, and not a reused duplicate of an
    earlier trial (a study ends with n_trials distinct configs)."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=FINISHED) if "duplicate_of" not in t.user_attrs)


def enqueue_retries(study: optuna.Study, max_retry: int) -> None:
    """Re-enqueue the parameters of failed trials, at most max_retry times per original trial."""
    if max_retry <= 0:
        return
    retried = set(study.user_attrs.get("retried", []))
    # trials of dead workers were already re-enqueued by Optuna's heartbeat callback
    retried |= {t.system_attrs["failed_trial"] for t in study.get_trials(deepcopy=False)
                if "failed_trial" in t.system_attrs}
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        if t.number in retried or not t.params:
            continue
        origin = t.user_attrs.get("retry_of", t.number)
        attempt = t.user_attrs.get("retry_attempt", 0) + 1
        retried.add(t.number)
        if attempt <= max_retry:
            attrs = {"retry_of": origin, "retry_attempt": attempt}
            if baseline.ROLE in t.user_attrs:
                attrs[baseline.ROLE] = t.user_attrs[baseline.ROLE]
            study.enqueue_trial(t.params, user_attrs=attrs)
    study.set_user_attr("retried", sorted(retried))


# Per-trial PNGs cost ~20 % of a trial (the study logs its own plots); per-epoch loss metrics
# (1200 rows per trial) ~15 %: trials log every 10th epoch. Both measured in benchmarks/.
TRIAL_DEFAULTS = ["tracking.log_figures=false", "tracking.loss_log_every=10"]


@dataclass
class Prepared:
    """A study ready for workers: spec with trial defaults, the study and its MLflow parent run."""

    spec: StudySpec
    base_overrides: list[str]
    study: optuna.Study
    parent_id: str
    torch_threads: int


def prepare(spec: StudySpec, base_overrides: list[str], opts: SweepOptions) -> Prepared:
    """Validate the spec, open (or resume) the study and its MLflow parent run."""
    spec = replace(spec, overrides=[*TRIAL_DEFAULTS, *spec.overrides])
    base_cfg = load_config([*spec.overrides, *base_overrides])
    configure_runtime(base_cfg.torch_threads)
    check_keys(spec, base_overrides)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # we print one line per failure
    study = open_study(spec, base_overrides, opts)
    exp_id = tracking.setup(base_cfg.tracking)
    parent_id = parent_run(study, spec, base_overrides, exp_id)
    reconcile_mlflow(study)
    return Prepared(spec, list(base_overrides), study, parent_id, base_cfg.torch_threads)


def run_baseline(prep: Prepared, lock: SlotLock, log: Callable[[str], None] = print) -> None:
    """Evaluate the no-augmentation baseline once per study as its own MLflow run (for specs that
    do not search `generator`); its metrics are kept in the study's user attributes."""
    study = prep.study
    lock.acquire()  # other workers of a distributed study must not run it too
    try:
        if baseline.BASELINE_ATTR in study.user_attrs:
            return
        name = study.study_name
        try:
            cfg = load_config(baseline.baseline_overrides(prep.spec, prep.base_overrides))
            hooks = RunHooks(parent_run_id=prep.parent_id, name=f"{name}-baseline",
                             tags={STUDY_TAG: name, baseline.ROLE: baseline.BASELINE})
            outcome = run_experiment(cfg, load_dataset_cached(cfg.data), hooks)
        except Exception as exc:  # the sweep goes on without a baseline; the next session retries
            log(f"baseline (generator=none) FAILED: {one_line(exc)}")
            return
        metrics = {k: v for k, v in outcome.result.metrics.items() if k.count("/") == 1}
        study.set_user_attr(baseline.BASELINE_ATTR, {"metrics": metrics, "mlflow_run_id": outcome.run_id})
    finally:
        lock.release()


def run_sweep(spec: StudySpec, base_overrides: list[str], opts: SweepOptions,
              log: Callable[[str], None] = print) -> optuna.Study:
    """Run (or resume) a study in this process until it has n_trials COMPLETE/PRUNED trials
    (or the timeout passes); the study's MLflow parent run ends with the sweep. UserError if the
    session stopped on too many failed trials (the study stays resumable)."""
    prep = prepare(spec, base_overrides, opts)
    status = "FINISHED"
    try:
        status = work(prep, opts, log)
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        finish(prep, status)
    if status == "FAILED":
        last = _last_own_trial(prep.study)
        reason = last.user_attrs.get("error", "see the MLflow runs") if last is not None else "see the MLflow runs"
        raise UserError(f"study '{prep.study.study_name}' stopped: too many failed trials in this session "
                        f"(last: {reason}); fix the cause and rerun (same spec and overrides resume this study)")
    return prep.study


def finish(prep: Prepared, status: str) -> None:
    """Close a study session: no trial run left RUNNING, study artifacts logged, parent ended."""
    reconcile_mlflow(prep.study)
    _finish_parent(prep.study, prep.spec, prep.parent_id, status)


def work(prep: Prepared, opts: SweepOptions, log: Callable[[str], None] = print,
         poll_seconds: float = 2.0) -> str:
    """Run trials until the study's budget is met; safe to run in many processes at once.

    Before each trial a lock around "count + create trial" (PostgreSQL advisory lock, or a file
    lock for SQLite) ensures concurrent workers never start more than n_trials trials; a worker
    whose budget is held by RUNNING trials of others waits (and reaps stale ones) instead.
    Returns the MLflow status the session ended with.
    """
    study, spec = prep.study, prep.spec
    configure_runtime(prep.torch_threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    n_trials = opts.n_trials or spec.n_trials
    timeout = opts.timeout if opts.timeout is not None else spec.timeout
    max_failures = opts.max_failures if opts.max_failures is not None else max(3, n_trials)
    max_repeats = opts.max_repeats if opts.max_repeats is not None else max(MAX_REPEATS_IN_A_ROW, 5 * n_trials)
    lock = SlotLock(opts.storage or DEFAULT_STORAGE, study.study_name)
    inner = make_objective(spec, prep.base_overrides, prep.parent_id)

    def objective(trial: optuna.Trial) -> Any:
        lock.release()  # the trial exists now; other workers may count it
        trial.set_user_attr("pid", os.getpid())
        return inner(trial)

    done0 = done(study)
    log(f"study '{study.study_name}' ({redact_url(opts.storage or DEFAULT_STORAGE)}): {done0}/{n_trials} trials done")
    bar = trial_bar(n_trials, done0, opts.progress)
    start, failures, duplicates, status = time.monotonic(), 0, 0, "FINISHED"
    try:
        with terminate_as_interrupt():
            if not baseline.searches_baseline(spec):
                run_baseline(prep, lock, log)
            while True:
                if timeout is not None and time.monotonic() - start >= timeout:
                    log(f"timeout of {timeout:g} s reached")
                    break
                if failures >= max_failures:
                    log(f"stopping: {failures} failed trials in this session (see the 'error' of each trial)")
                    status = "FAILED"
                    break
                lock.acquire()
                try:
                    finished = done(study)
                    running = count(study, (TrialState.RUNNING,))
                    if finished >= n_trials:
                        break
                    if finished + running >= n_trials:  # the rest is being run by other workers
                        lock.release()
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            optuna.storages.fail_stale_trials(study)
                        time.sleep(poll_seconds)
                        continue
                    enqueue_retries(study, opts.retry_failed)
                    try:
                        study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=False)
                    except Exception as exc:  # Optuna's bookkeeping cut short by a Ctrl-C: it is the Ctrl-C
                        interrupt = interrupt_in(exc)
                        if interrupt is None:
                            raise
                        raise interrupt from None
                finally:
                    lock.release()
                last = _last_own_trial(study)
                # a sampler that prefers an arm with no knobs (e.g. generator=none) repeats it often; only
                # a long run of nothing but repeats means the space is used up
                duplicates = duplicates + 1 if last is not None and "duplicate_of" in last.user_attrs else 0
                if duplicates >= max_repeats:
                    log(f"stopping: the last {duplicates} draws repeated finished trials; the search space "
                        f"has no new points left ({done(study)} distinct configs)")
                    break
                if last is not None and last.state == TrialState.FAIL:
                    failures += 1
                    log(f"trial {last.number} FAILED: {last.user_attrs.get('error', 'see MLflow run')}")
                _update_progress(bar, study, spec)
                _log_best(study, spec, prep.parent_id)
    except KeyboardInterrupt:
        fail_own_running(study)
        raise
    finally:
        if bar is not None:
            bar.close()
    return status


def fail_own_running(study: optuna.Study) -> None:
    """Mark FAIL any trial this process left RUNNING (an interrupt that landed while Optuna was
    recording the trial's end), so a resumed study does not wait for its heartbeat to go stale."""
    pid = os.getpid()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("pid") == pid:
            with suppress(Exception):
                study.tell(t.number, state=TrialState.FAIL)


def _last_own_trial(study: optuna.Study) -> FrozenTrial | None:
    pid = os.getpid()
    own = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("pid") == pid]
    return own[-1] if own else None


class SlotLock:
    """Cross-process mutex around "check the budget + create a trial" for one study."""

    def __init__(self, storage_url: str, study_name: str) -> None:
        self.url = storage_url
        self.key = int(hashlib.sha256(study_name.encode()).hexdigest()[:15], 16)
        self._held = False
        self._conn: Any = None
        self._file: Any = None

    def acquire(self) -> None:
        if self._held:
            return
        if self.url.startswith("postgresql"):
            import sqlalchemy

            if self._conn is None:
                engine = sqlalchemy.create_engine(self.url, poolclass=sqlalchemy.pool.NullPool)
                self._conn = engine.connect()
            self._conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": self.key})
        elif self.url.startswith("sqlite:///"):
            import fcntl

            path = tracking.absolute_sqlite_uri(self.url).removeprefix("sqlite:///") + ".lock"
            self._file = open(path, "a")
            fcntl.flock(self._file, fcntl.LOCK_EX)
        self._held = True

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        if self._conn is not None:
            import sqlalchemy

            self._conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            self._conn.commit()
        if self._file is not None:
            import fcntl

            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def _finish_parent(study: optuna.Study, spec: StudySpec, parent_id: str, status: str) -> None:
    from vaeok.study.report import log_study_artifacts

    try:
        log_study_artifacts(study, spec, parent_id)
    finally:
        MlflowClient().set_terminated(parent_id, status)


def _log_best(study: optuna.Study, spec: StudySpec, parent_id: str) -> None:
    from vaeok.study.report import top_trials

    states = {s.name: count(study, (s,)) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    metrics = {f"trials/{k.lower()}": float(v) for k, v in states.items()}
    top = top_trials(study, 1) if states["COMPLETE"] else []
    metrics.update(baseline.summary_metrics(study, spec, top[0] if top else None))
    tags = {NOTE_TAG: study_note(study, spec, states, top[0] if top else None)}
    if top:
        tags["best_trial"] = str(top[0].number)
    tracking.log_batch(parent_id, metrics=metrics, tags=tags)


def study_note(study: optuna.Study, spec: StudySpec, states: dict[str, int], best: FrozenTrial | None) -> str:
    """The study parent run's MLflow description (Markdown): spec, budget, progress, best so far."""
    attrs = study.user_attrs
    spec_d = attrs.get("spec", spec.as_dict())
    objective = ", ".join(f"{d} `{m}`" for d, m in zip(spec.directions, spec.metrics))
    sampler = ", ".join(f"{k}={v}" for k, v in spec.sampler.items() if k != "type")
    pruner = ", ".join(f"{k}={v}" for k, v in spec.pruner.items() if k != "type")
    dups = sum(1 for t in study.get_trials(deepcopy=False) if "duplicate_of" in t.user_attrs)
    lines = [
        f"**Optuna study `{study.study_name}`**" + (f" ({spec.source})" if spec.source else ""),
        "",
        f"- objective: {objective}; sampler `{spec.sampler['type']}` ({sampler or 'defaults'}), "
        f"pruner `{spec.pruner['type']}` ({pruner or 'defaults'})",
        f"- budget: {spec_d.get('n_trials', spec.n_trials)} COMPLETE + PRUNED trials; so far "
        f"{states['COMPLETE']} complete ({dups} reused duplicates), {states['PRUNED']} pruned, "
        f"{states['FAIL']} failed",
        "- searched: " + ", ".join(f"`{k}` {v}" for k, v in spec_d.get("space", {}).items()),
    ]
    if attrs.get("base_overrides"):
        lines.append("- overrides: " + " ".join(f"`{o}`" for o in attrs["base_overrides"]))
    if best is not None and not spec.multi_objective:
        line = f"- best so far: trial {best.number}, `{spec.metrics[0]}` = {best.values[0]:.4f}"
        ref = baseline.references(study, spec).get(baseline.BASELINE)
        if ref is not None:
            line += f" (no-augmentation baseline: {ref.values[0]:.4f}, gain {best.values[0] - ref.values[0]:+.4f})"
        lines.append(line)
    lines += ["", f"Trials are the nested runs `{study.study_name}-tNNN` (`-pruned`: stopped by the pruner; "
              "`-dup-tNNN`: repeated that trial's parameters, result reused). Filter: "
              f"`tags.vaeok.study = '{study.study_name}'`."]
    return redact_text("\n".join(lines))


def _update_progress(bar, study: optuna.Study, spec: StudySpec) -> None:
    if bar is None:
        return
    bar.update(max(0, done(study) - bar.n))
    if not spec.multi_objective and count(study, (TrialState.COMPLETE,)):
        bar.set_postfix_str(f"best {spec.metrics[0]}={study.best_value:.4f} (trial {study.best_trial.number})")

