"""One experiment: compose -> load data -> evaluate -> log everything to MLflow."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
from omegaconf import DictConfig

from vaeok import plots, tracking
from vaeok.config import flatten, to_yaml
from vaeok.data import Dataset, load_dataset
from vaeok.evaluation import EvalResult, Reporter, evaluate
from vaeok.runtime import configure_runtime

# Config subtrees that only repeat other keys (interpolated into the generator) are not params.
_DUPLICATE_PARAM_PREFIXES = ("generator.model.", "generator.trainer.", "generator.batch_size", "generator._")


@dataclass
class RunOutcome:
    """What a finished experiment produced."""

    result: EvalResult
    run_id: str | None
    data: Dataset


def run_name(cfg: DictConfig) -> str:
    """Meaningful MLflow run name: generator, regressor and the swept VAE knobs."""
    reg = str(cfg.regressor._target_).rsplit(".", 1)[-1]
    gen = cfg.generator.get("name", "gen")
    if gen.startswith("vae"):
        return (f"{gen}-{reg}-h{cfg.model.hidden}-e{cfg.trainer.max_epochs}"
                f"-lr{cfg.model.lr:g}-b{cfg.data.batch_size}")
    return f"{gen}-{reg}"


def run_tags(cfg: DictConfig, data: Dataset) -> dict[str, str]:
    """Tags every run carries."""
    return {
        "data_hash": data.fingerprint(),
        "data_name": data.name,
        "git_commit": tracking.git_commit(),
        "protocol": cfg.evaluation.protocol,
        "generator": str(cfg.generator.get("name", "")),
        "regressor": str(cfg.regressor._target_).rsplit(".", 1)[-1],
        "seed": str(cfg.seed),
    }


def log_result(cfg: DictConfig, data: Dataset, result: EvalResult, run_id: str) -> None:
    """Params, metrics, per-epoch losses, config, predictions and figures of one evaluation."""
    params = {k: v for k, v in flatten(cfg).items() if not k.startswith(_DUPLICATE_PARAM_PREFIXES)}
    series: dict[str, list[tuple[int, float]]] = {}
    if result.loss_history:
        every = max(1, int(cfg.tracking.loss_log_every))
        for key, arr in result.loss_history.items():
            curve = arr.mean(axis=1)
            steps = sorted({*range(1, len(curve) + 1, every), len(curve)})  # always the last epoch
            series[f"train/{key}"] = [(e, float(curve[e - 1])) for e in steps]
    for epoch, value in result.intermediate:
        series.setdefault(f"{result.objective_key}_intermediate", []).append((epoch, value))
    metrics = dict(result.metrics)
    for fm in result.fold_metrics:
        metrics[f"fold/r{fm['repeat']}f{fm['fold']}/r2"] = fm["r2"]
    tracking.log_batch(run_id, metrics=metrics, params=params, series=series)
    mlflow.log_text(to_yaml(cfg), "config.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "predictions.csv"
        result.predictions.to_csv(path, index=False)
        mlflow.log_artifact(str(path))
    if cfg.tracking.log_figures:
        import matplotlib.pyplot as plt

        if result.loss_history:
            fig = plots.loss_curves(result.loss_history)
            mlflow.log_figure(fig, "figures/loss_curves.png")
            plt.close(fig)
        title = f"{run_name(cfg)}  R2={result.objective:.3f} ({cfg.evaluation.protocol})"
        fig = plots.predicted_vs_true(result.predictions, data.target_name, title)
        mlflow.log_figure(fig, "figures/predicted_vs_true.png")
        plt.close(fig)


def run_experiment(cfg: DictConfig, report: Reporter | None = None, parent_run_id: str | None = None,
                   extra_tags: dict[str, str] | None = None, name: str | None = None,
                   pruned: tuple[type[BaseException], ...] = (),
                   on_start: Callable[[str], None] | None = None) -> RunOutcome:
    """Evaluate one config and (if tracking is enabled) log it as one MLflow run."""
    configure_runtime(cfg.torch_threads)
    data = load_dataset(cfg.data)
    if not cfg.tracking.enabled:
        return RunOutcome(evaluate(cfg, data, report), None, data)
    exp_id = tracking.setup(cfg.tracking)
    tags = {**run_tags(cfg, data), **(extra_tags or {})}
    with tracking.run(exp_id, name or run_name(cfg), tags, nested=parent_run_id is not None,
                      parent_run_id=parent_run_id, pruned=pruned) as active:
        if on_start is not None:
            on_start(active.info.run_id)
        result = evaluate(cfg, data, report)
        log_result(cfg, data, result, active.info.run_id)
    return RunOutcome(result, active.info.run_id, data)
