"""One experiment: compose -> load data -> evaluate -> log everything to MLflow."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
from omegaconf import DictConfig

from vaeok.config.compose import flatten, to_yaml
from vaeok.core.runtime import configure_runtime
from vaeok.data.datasets import Dataset, load_dataset
from vaeok.evaluation.result import EvalResult, Reporter
from vaeok.evaluation.scoring import evaluate
from vaeok.tracking import plots
from vaeok.tracking import runs as tracking

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
    from vaeok.evaluation.preflight import generator_of

    reg = str(cfg.regressor._target_).rsplit(".", 1)[-1]
    generator = generator_of(cfg)
    knobs = generator.describe()
    return f"{generator.name}-{reg}" + (f"-{knobs}" if knobs else "")


def run_tags(cfg: DictConfig, data: Dataset) -> dict[str, str]:
    """Tags every run carries."""
    return {
        "data_hash": data.fingerprint(),
        "data_name": data.name,
        **tracking.source_tags(),
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
    config_text = to_yaml(cfg)
    mlflow.log_text(config_text, "config.yaml")
    expected: dict[str, int | None] = {"config.yaml": len(config_text.encode())}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "predictions.csv"
        result.predictions.to_csv(path, index=False)
        mlflow.log_artifact(str(path))
        expected["predictions.csv"] = path.stat().st_size
    if cfg.tracking.log_figures:
        import matplotlib.pyplot as plt

        if result.loss_history:
            fig = plots.loss_curves(result.loss_history)
            mlflow.log_figure(fig, "figures/loss_curves.png")
            plt.close(fig)
            expected["figures/loss_curves.png"] = None
        title = f"{run_name(cfg)}  R2={result.objective:.3f} ({cfg.evaluation.protocol})"
        fig = plots.predicted_vs_true(result.predictions, data.target_name, title)
        mlflow.log_figure(fig, "figures/predicted_vs_true.png")
        plt.close(fig)
        expected["figures/predicted_vs_true.png"] = None
    tracking.verify_artifacts(run_id, expected)  # a run is never FINISHED without what it claims


@dataclass
class RunHooks:
    """What a caller such as a sweep adds to one run: pruning reports, the parent run, tags, a
    run name, exceptions that mean "pruned", and a callback once the MLflow run exists."""

    report: Reporter | None = None
    parent_run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    pruned: tuple[type[BaseException], ...] = ()
    on_start: Callable[[str], None] | None = None


def run_experiment(cfg: DictConfig, data: Dataset | None = None, hooks: RunHooks | None = None) -> RunOutcome:
    """Evaluate one config on `data` (loaded from `cfg.data` if not given) and, if tracking is
    enabled, log it as one MLflow run."""
    hooks = hooks or RunHooks()
    configure_runtime(cfg.torch_threads)
    if data is None:
        data = load_dataset(cfg.data)
    if not cfg.tracking.enabled:
        return RunOutcome(evaluate(cfg, data, hooks.report), None, data)
    exp_id = tracking.setup(cfg.tracking)
    tags = {**run_tags(cfg, data), **hooks.tags}
    with tracking.run(exp_id, hooks.name or run_name(cfg), tags, nested=hooks.parent_run_id is not None,
                      parent_run_id=hooks.parent_run_id, pruned=hooks.pruned) as active:
        if hooks.on_start is not None:
            hooks.on_start(active.info.run_id)
        result = evaluate(cfg, data, hooks.report)
        log_result(cfg, data, result, active.info.run_id)
    return RunOutcome(result, active.info.run_id, data)
