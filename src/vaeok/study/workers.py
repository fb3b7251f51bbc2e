"""Several worker processes on one host sharing one study (and joining other hosts' workers).

The coordinator prepares the study and its MLflow parent run, starts N workers (forked from a
preloaded fork server, see `worker_context`) that each run `sweep.work`, shows progress from the
storage, and ends the parent run when all are done.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import socket
import sys
import time
import zlib
from dataclasses import replace

import optuna

from vaeok.core.errors import UserError
from vaeok.core.progress import trial_bar
from vaeok.core.signals import Terminated, exit_code
from vaeok.study.spec import StudySpec
from vaeok.study.sweep import Prepared, SweepOptions, done, finish, prepare, work

# What a worker's trials import. Workers are forked from a fork server that imports these once,
# started BEFORE the study is prepared so the imports run on another core meanwhile: a spawned
# worker paid ~7 s of imports before its first trial (and Lightning's again inside it).
PRELOAD = ("vaeok.study.sweep", "vaeok.evaluation.callback", "vaeok.generators.vae", "vaeok.labelers.kriging",
           "lightning.pytorch", "sklearn.ensemble", "pykrige.ok")


def worker_context() -> mp.context.BaseContext:
    """The start method of local workers: a preloaded fork server where the platform has one
    (Linux, macOS), else spawn. Starts the fork server at once (it lives until this process exits)."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    from multiprocessing import forkserver

    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(list(PRELOAD))  # only for a server not yet running (one per process)
    forkserver.ensure_running()
    return ctx


def _worker(spec: StudySpec, base_overrides: list[str], opts: SweepOptions, index: int) -> None:
    """Entry point of one worker process."""
    from vaeok.config.compose import load_config
    from vaeok.study.sweep import open_study, parent_run
    from vaeok.tracking import runs as tracking

    signal.signal(signal.SIGINT, signal.default_int_handler)
    opts = replace(opts, seed_offset=opts.seed_offset + 1000 * (index + 1) + zlib.crc32(socket.gethostname().encode()))
    cfg = load_config([*spec.overrides, *base_overrides])
    study = open_study(spec, base_overrides, opts)
    exp_id = tracking.setup(cfg.tracking)
    parent_id = study.user_attrs.get("mlflow_parent_run_id") or parent_run(study, spec, base_overrides, exp_id)
    prep = Prepared(spec, base_overrides, study, parent_id, cfg.torch_threads)
    try:
        work(prep, opts, log=lambda msg: print(f"[worker {index}] {msg}", file=sys.stderr, flush=True))
    except KeyboardInterrupt as exc:
        sys.exit(exit_code(exc))


def run_workers(spec: StudySpec, base_overrides: list[str], opts: SweepOptions, n_workers: int,
                poll_seconds: float = 1.0) -> optuna.Study:
    """Run a study with n_workers processes on this host; returns the study when they are done."""
    if n_workers < 1:
        raise UserError("--workers must be >= 1")
    ctx = worker_context()  # preloads while the study is prepared
    prep = prepare(spec, base_overrides, opts)
    worker_opts = SweepOptions(**{**opts.__dict__, "progress": False})
    procs = [ctx.Process(target=_worker, args=(prep.spec, prep.base_overrides, worker_opts, i), daemon=False)
             for i in range(n_workers)]
    n_trials = opts.n_trials or prep.spec.n_trials
    bar = trial_bar(n_trials, done(prep.study), opts.progress)
    status = "FINISHED"
    try:
        for p in procs:
            p.start()
        while any(p.is_alive() for p in procs):
            time.sleep(poll_seconds)
            if bar is not None:
                bar.update(max(0, done(prep.study) - bar.n))
        codes = [p.exitcode for p in procs]
        if done(prep.study) < n_trials and opts.timeout is None and prep.spec.timeout is None:
            status = "FAILED"
            raise UserError(f"workers ended (exit codes {codes}) before the study reached {n_trials} trials; "
                            "rerun the same command to resume")
        lost = [c for c in codes if c not in (0, None)]
        if lost:
            print(f"warning: {len(lost)} worker(s) ended abnormally (exit codes {codes}); "
                  "their trials were marked FAIL and the others finished the study", file=sys.stderr)
    except KeyboardInterrupt as exc:
        status = "KILLED"
        if isinstance(exc, Terminated):  # sent to this process only (Ctrl-C reaches the whole group)
            for p in procs:
                if p.is_alive():
                    p.terminate()  # each worker fails its trial and marks its run KILLED
        for p in procs:
            p.join(timeout=60)
        raise
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=30)
        if bar is not None:
            bar.close()
        finish(prep, status)
    return prep.study
