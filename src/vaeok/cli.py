"""`vaeok` command line: subcommands only; the work lives in library functions."""

from __future__ import annotations

import argparse
import errno
import gc
import math
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from vaeok.core.errors import EXIT_FAILURE, EXIT_USER_ERROR, UserError, one_line
from vaeok.core.redact import redact_text, redact_url
from vaeok.core.signals import exit_code, terminate_as_interrupt

# OSErrors that mean "the store cannot be written": reported as the user's to fix (exit 2).
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
                   errno.EEXIST, errno.EFBIG, errno.ELOOP}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is a UserError (one line, exit 2) instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: {message} (see {self.prog} --help)")


def _store_failure(exc: BaseException) -> str | None:
    """The one-line reason if an exception chain comes from a store (SQLite/SQLAlchemy/psycopg), else None."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if type(cur).__module__.split(".")[0] in ("sqlite3", "sqlalchemy", "psycopg", "psycopg2"):
            from vaeok.tracking.stores import reason

            return reason(exc)
        cur = cur.__cause__ or cur.__context__
    return None


def _cmd_run(args: argparse.Namespace) -> int:
    from vaeok.config.compose import load_config

    if args.cfg or args.info:
        from vaeok.config.compose import describe_config

        print(describe_config(args.overrides, cfg=args.cfg, resolve=args.resolve, info=args.info), end="")
        return 0
    if args.multirun:
        return _multirun(args)
    if args.from_run is not None:
        import re

        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", args.from_run):
            raise UserError(f"--from-run needs an MLflow run id (letters, digits, - and _), got {args.from_run[:70]!r}")
        from vaeok.experiment import RunHooks, run_experiment
        from vaeok.registry.promote import config_from_run
        from vaeok.tracking.tags import REPRODUCES_TAG

        cfg = config_from_run(args.from_run, args.overrides)
        from vaeok.evaluation.preflight import load_checked_dataset

        data = load_checked_dataset(cfg)
        outcome = run_experiment(cfg, data, RunHooks(tags={REPRODUCES_TAG: args.from_run}))
    else:
        cfg = load_config(args.overrides)  # before the heavy imports: config errors answer fast
        from vaeok.evaluation.preflight import load_checked_dataset

        data = load_checked_dataset(cfg)  # validate the data against the config before importing torch/mlflow
        from vaeok.experiment import run_experiment

        outcome = run_experiment(cfg, data)
    m = outcome.result.metrics
    p = outcome.result.objective_key.split("/")[0]
    print(f"data: {outcome.data.name} ({outcome.data.n_rows} rows, {outcome.data.n_features} features); "
          f"protocol: {cfg.evaluation.protocol}")
    print(f"pooled held-out  R2 {m[p + '/r2']:.4f}  RMSE {m[p + '/rmse']:.2f}  "
          f"MAE {m[p + '/mae']:.2f}  MAPE {m[p + '/mape']:.2f}%")
    if outcome.run_id:
        print(f"MLflow run {outcome.run_id} in {redact_url(cfg.tracking.uri)}; open the UI with: vaeok ui")
    return 0


def _multirun(args: argparse.Namespace) -> int:
    """`vaeok run -m a=1,2 b=x,y ...`: the grid of comma lists run as an Optuna grid study."""
    from vaeok.study.report import format_top
    from vaeok.study.spec import grid_spec
    from vaeok.study.sweep import DEFAULT_STORAGE, SweepOptions, run_sweep

    if args.from_run:
        raise UserError("--multirun and --from-run cannot be combined")
    spec, base = grid_spec(args.overrides)
    print(f"multirun: {spec.n_trials} combinations of {', '.join(p.key for p in spec.space)} as Optuna grid "
          f"study '{spec.name}' (resumable: rerun the same command)")
    study = run_sweep(spec, base, SweepOptions(progress=not args.no_progress))
    print(f"\ntrials of study '{study.study_name}':")
    print(format_top(study, spec, k=spec.n_trials))
    print(f"\ncompare them in the MLflow UI:  vaeok ui   (filter: tags.`vaeok.study` = '{study.study_name}'); "
          f"study dashboard: optuna-dashboard {redact_url(DEFAULT_STORAGE)}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from vaeok.study.report import format_top
    from vaeok.study.spec import load_spec
    from vaeok.study.sweep import DEFAULT_STORAGE, SweepOptions, run_sweep

    check_sweep_args(args)
    spec = load_spec(resolve_spec(args.spec))
    opts = SweepOptions(study=args.study, storage=args.storage, n_trials=args.n_trials, timeout=args.timeout,
                        retry_failed=args.retry_failed, progress=not args.no_progress,
                        heartbeat=args.heartbeat)
    if args.workers > 1:
        from vaeok.study.workers import run_workers

        study = run_workers(spec, args.overrides, opts, args.workers)
    else:
        study = run_sweep(spec, args.overrides, opts)
    print(f"\ntop trials of study '{study.study_name}':")
    print(format_top(study, spec))
    print("\ncompare them in the MLflow UI:  vaeok ui   (filter: tags.`vaeok.study` = '"
          f"{study.study_name}')")
    print(f"study dashboard:  optuna-dashboard {redact_url(args.storage or DEFAULT_STORAGE)}")
    return 0


def check_sweep_args(args: argparse.Namespace) -> None:
    """UserError naming the option if a sweep's command-line numbers or names cannot work."""
    from vaeok.core.paths import safe_name

    if args.study is not None:
        safe_name(args.study, "--study")
    for flag, value, low in (("--n-trials", args.n_trials, 1), ("--workers", args.workers, 1),
                             ("--retry-failed", args.retry_failed, 0), ("--heartbeat", args.heartbeat, 1)):
        if value is not None and value < low:
            raise UserError(f"{flag} must be >= {low}, got {value}")
    if args.timeout is not None and not 0 < args.timeout < math.inf:
        raise UserError(f"--timeout must be a positive, finite number of seconds, got {args.timeout}")
    from vaeok.study.spec import MAX_TRIALS

    if args.n_trials is not None and args.n_trials > MAX_TRIALS:
        raise UserError(f"--n-trials must be <= {MAX_TRIALS}, got {args.n_trials}")


def resolve_spec(spec: str) -> str:
    """A spec path as given, else under ./sweeps, next to the config dir, or in the checkout's sweeps/."""
    from pathlib import Path

    from vaeok.config.compose import config_dir

    checkout = Path(__file__).resolve().parents[2]  # editable install: the repository root
    roots = (Path("."), Path("sweeps"), config_dir().parent, config_dir().parent / "sweeps", checkout,
             checkout / "sweeps")
    for cand in (root / spec for root in roots):
        if cand.is_file():
            return str(cand)
        if cand.with_suffix(".yaml").is_file():
            return str(cand.with_suffix(".yaml"))
    return spec


def _cmd_promote(args: argparse.Namespace) -> int:
    from vaeok.registry.promote import DEFAULT_STORAGE, promote

    result = promote(args.study, args.storage or DEFAULT_STORAGE, args.metric, args.model_name, args.trial,
                     args.overrides, allow_worse_than_baseline=args.allow_worse_than_baseline, rule=args.rule,
                     refit_all=args.refit == "all")
    print("\n".join(result.summary()))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from vaeok.registry.serving import predict  # not promote: no torch, Optuna or training code

    out = predict(args.model, args.input, args.output)
    if args.output:
        print(f"wrote {len(out)} predictions to {args.output}")
    else:
        print(out.to_csv(index=False), end="")
    return 0


def _cmd_server(args: argparse.Namespace) -> int:
    from vaeok.tracking.server import server

    return server(args.port, args.backend_store_uri, args.artifacts)


def _cmd_ui(args: argparse.Namespace) -> int:
    from vaeok.tracking.server import ui

    return ui(args.port)


def _cmd_compare(args: argparse.Namespace) -> int:
    from vaeok.report.compare import console_report, run_compare

    outcome = run_compare(args.overrides)
    print(console_report(outcome.result))
    print(f"compare wall time {outcome.wall_seconds:.1f} s; tables and figures in {outcome.out_dir}")
    if outcome.run_id:
        print(f"MLflow parent run {outcome.run_id}; open the UI with: vaeok ui")
    return 0


def _run_epilog() -> str:
    """`vaeok run --help`'s epilog: the config groups and their options, as a Hydra app lists them."""
    try:
        from vaeok.config.compose import group_options

        groups = group_options()
    except Exception:  # no config directory: --help still works
        return ""
    lines = ["== Configuration groups ==", "Compose your configuration from those groups (group=option)", ""]
    lines += [f"  {g}: {', '.join(opts)}" for g, opts in groups.items()]
    lines += ["", "Override anything in the config (model.hidden=32), see it with --cfg job, "
              "sweep comma lists with -m."]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (subcommands and their options)."""
    parser = _Parser(prog="vaeok", description="VAE + ordinary kriging augmentation studies.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="one experiment, e.g. vaeok run model.hidden=65 trainer.max_epochs=400",
                           description="One experiment (one MLflow run) with the composed Hydra config.",
                           epilog=_run_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p_run.add_argument("overrides", nargs="*", help="Hydra overrides: key=value, group=option, +key=value "
                       "(adds a key the node accepts), ~key (delete)")
    p_run.add_argument("--from-run", metavar="RUN_ID", help="re-run a logged run from its config.yaml artifact "
                       "(overrides are applied on top; key=value only)")
    p_run.add_argument("--cfg", "-c", choices=("job", "hydra", "all"),
                       help="print the composed config instead of running (job: the config, hydra: the chosen "
                            "group options, all: both), as Hydra apps do")
    p_run.add_argument("--resolve", action="store_true", help="with --cfg: resolve ${...} interpolations")
    p_run.add_argument("--info", action="store_true",
                       help="print the config search path, groups and their options, and the chosen defaults")
    p_run.add_argument("--multirun", "-m", action="store_true",
                       help="comma lists (model.hidden=16,32 generator=none,vae_ok) run as an Optuna grid study: "
                            "one trial per combination, one MLflow run each, under a study parent run")
    p_run.add_argument("--no-progress", action="store_true", help="with -m: no progress bar")
    p_run.set_defaults(func=_cmd_run)

    p_sw = sub.add_parser("sweep", help="resumable Optuna study over config keys (one MLflow run per trial)")
    p_sw.add_argument("--spec", default="sweeps/tpe.yaml", help="study spec (default: sweeps/tpe.yaml)")
    p_sw.add_argument("--n-trials", type=int, help="COMPLETE+PRUNED trials the study should reach")
    p_sw.add_argument("--timeout", type=float, help="stop starting new trials after this many seconds")
    p_sw.add_argument("--study", help="study name (default: the spec's name)")
    p_sw.add_argument("--storage", help="Optuna storage URL (default: sqlite:///mlruns/optuna.db)")
    p_sw.add_argument("--workers", type=int, default=1, help="worker processes on this host")
    p_sw.add_argument("--retry-failed", type=int, default=0, metavar="K", help="retry each failed trial up to K times")
    p_sw.add_argument("--heartbeat", type=int, default=10, metavar="S",
                      help="trial heartbeat (s); a trial silent for 3x this is marked FAIL (killed worker)")
    p_sw.add_argument("--no-progress", action="store_true", help="no progress bar")
    p_sw.add_argument("overrides", nargs="*", help="Hydra overrides applied to every trial")
    p_sw.set_defaults(func=_cmd_sweep)

    p_pro = sub.add_parser("promote", help="select from a study's out-of-fold evidence, refit on all rows, register; "
                           "move alias 'champion' if it wins")
    p_pro.add_argument("--study", required=True, help="Optuna study name")
    p_pro.add_argument("--storage", default=None, help="Optuna storage URL (default sqlite:///mlruns/optuna.db)")
    p_pro.add_argument("--metric", default="r2", help="holdout metric deciding the champion when there is a "
                       "holdout: r2|rmse|mae|mape")
    p_pro.add_argument("--model-name", default=None,
                       help="registered model name (default vaeok-<data.name>-<digest of the columns>)")
    p_pro.add_argument("--trial", type=int, default=None, help="promote this trial instead of the study's selection")
    p_pro.add_argument("--rule", choices=("best", "one_se", "ensemble"), default=None,
                       help="selection rule (default: the spec's selection.rule, else ensemble)")
    p_pro.add_argument("--refit", choices=("all", "development"), default="all",
                       help="rows the registered model is refit on (default all: development + holdout)")
    p_pro.add_argument("--allow-worse-than-baseline", action="store_true",
                       help="let a candidate that is worse than the no-augmentation baseline on the holdout "
                            "become champion (recorded in the version's tags)")
    p_pro.add_argument("overrides", nargs="*", help="extra Hydra overrides appended to the trial's")
    p_pro.set_defaults(func=_cmd_promote)
    p_pred = sub.add_parser("predict", help="predict a feature CSV with a registered model")
    p_pred.add_argument("--model", required=True, help="model URI, e.g. models:/vaeok-rubber_surrogate@champion")
    p_pred.add_argument("--input", required=True, help="CSV with exactly the model's feature columns")
    p_pred.add_argument("--output", default=None, help="output CSV (default: print to stdout)")
    p_pred.set_defaults(func=_cmd_predict)
    p_ui = sub.add_parser("ui", help="start the MLflow UI on 127.0.0.1 against the project's store")
    p_ui.add_argument("--port", type=int, default=5000)
    p_ui.set_defaults(func=_cmd_ui)
    p_srv = sub.add_parser("server", help="shared MLflow tracking server (PostgreSQL backend) for distributed sweeps")
    p_srv.add_argument("--port", type=int, default=5000)
    p_srv.add_argument("--backend-store-uri", default="postgresql://postgres@127.0.0.1:5432/mlflow",
                       help="database for runs (created if missing)")
    p_srv.add_argument("--artifacts", default="mlruns/server-artifacts", help="where the server stores artifacts")
    p_srv.set_defaults(func=_cmd_server)

    p_cmp = sub.add_parser("compare", help="generator x regressor tables, KS test, curves, figures, SHAP")
    p_cmp.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. evaluation=paper compare.ks_repeats=20")
    p_cmp.set_defaults(func=_cmd_compare)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, dispatch, and turn every failure into one line on stderr and an exit code:
    2 bad input, config or storage (UserError, disk full, unwritable store), 1 anything else,
    130 Ctrl-C, 143 SIGTERM. VAEOK_TRACEBACK=1 shows the traceback of unexpected errors."""
    # MLflow's artifact download progress bars (promote, predict, --from-run) are not ours to show
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UserError as exc:
        print(f"vaeok: error: {redact_text(str(exc))}", file=sys.stderr)
        return EXIT_USER_ERROR
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        with terminate_as_interrupt():
            return func(args)
    except UserError as exc:
        print(f"vaeok: error: {redact_text(str(exc))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as exc:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a further Ctrl-C while exiting changes nothing
        print(f"vaeok: interrupted ({str(exc) or 'SIGINT'})", file=sys.stderr)
        return exit_code(exc)
    except Exception as exc:
        if os.environ.get("VAEOK_TRACEBACK"):
            raise
        store = _store_failure(exc)
        if store is not None:
            print(f"vaeok: error: store: {redact_text(store)} (check mlruns/, tracking.uri and --storage: "
                  "free space, permissions, or a damaged database file)", file=sys.stderr)
            return EXIT_USER_ERROR
        if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
            print(f"vaeok: error: cannot write: {redact_text(str(exc))} (check free space and permissions of mlruns/, "
                  "tracking.uri and tracking.artifact_root)", file=sys.stderr)
            return EXIT_USER_ERROR
        print(f"vaeok: error: unexpected {redact_text(one_line(exc))} (rerun with VAEOK_TRACEBACK=1 for the traceback)",
              file=sys.stderr)
        return EXIT_FAILURE


def entry() -> NoReturn:
    """The `vaeok` console script and `python -m vaeok`: `main`, then exit. The objects left are
    frozen first (`gc.freeze`), so the interpreter's final garbage collections skip them: with
    torch and Lightning imported those passes took ~1.5 s after every command had finished."""
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()
