"""`vaeok` command line: subcommands only; the work lives in library functions."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from vaeok.errors import EXIT_INTERRUPTED, EXIT_USER_ERROR, UserError


def _cmd_run(args: argparse.Namespace) -> int:
    from vaeok.config import load_config
    from vaeok.run import run_experiment

    cfg = load_config(args.overrides)
    outcome = run_experiment(cfg)
    m = outcome.result.metrics
    p = outcome.result.objective_key.split("/")[0]
    print(f"data: {outcome.data.name} ({outcome.data.n_rows} rows, {outcome.data.n_features} features); "
          f"protocol: {cfg.evaluation.protocol}")
    print(f"pooled held-out  R2 {m[p + '/r2']:.4f}  RMSE {m[p + '/rmse']:.2f}  "
          f"MAE {m[p + '/mae']:.2f}  MAPE {m[p + '/mape']:.2f}%")
    if outcome.run_id:
        print(f"MLflow run {outcome.run_id} in {cfg.tracking.uri}; open the UI with: vaeok ui")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from vaeok.report.compare import console_report, run_compare

    outcome = run_compare(args.overrides)
    print(console_report(outcome.result))
    print(f"compare wall time {outcome.wall_seconds:.1f} s; tables and figures in {outcome.out_dir}")
    if outcome.run_id:
        print(f"MLflow parent run {outcome.run_id}; open the UI with: vaeok ui")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (subcommands and their options)."""
    parser = argparse.ArgumentParser(prog="vaeok", description="VAE + ordinary kriging augmentation studies.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="one experiment, e.g. vaeok run model.hidden=65 trainer.max_epochs=400")
    p_run.add_argument("overrides", nargs="*", help="Hydra overrides (key=value)")
    p_run.set_defaults(func=_cmd_run)
    p_cmp = sub.add_parser("compare", help="generator x regressor tables, KS test, curves, figures, SHAP")
    p_cmp.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. evaluation=paper compare.ks_repeats=20")
    p_cmp.set_defaults(func=_cmd_compare)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, dispatch, turn user errors into one line and exit code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UserError as exc:
        print(f"vaeok: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("vaeok: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
