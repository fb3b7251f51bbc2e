"""One experiment: compose -> load data -> evaluate -> log everything to MLflow."""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from vaeok.config.compose import flatten, to_yaml
from vaeok.core.runtime import configure_runtime
from vaeok.data.datasets import Dataset, load_dataset
from vaeok.evaluation.result import HONEST_PREFIX, LEAKY_PREFIX, EvalResult, Reporter
from vaeok.evaluation.scoring import development_rows, evaluate
from vaeok.tracking import runs as tracking
from vaeok.tracking.tags import NOTE_TAG, SEARCHED_TAG

# Params are what defines an experiment; the full resolved config stays in config.yaml.
PARAM_SECTIONS = ("seed", "data.", "model.", "trainer.", "generator.", "labeler.", "regressor.", "evaluation.")
# ...minus subtrees that repeat other keys (interpolated into the generator) and plumbing that does
# not change what is computed (how a CSV is read, Lightning's logging/hardware switches).
_NOT_PARAMS = ("generator.model.", "generator.trainer.", "generator.batch_size", "generator._",
               "data.encoding", "data.delimiter", "data.max_rows", "trainer._target_", "trainer.accelerator",
               "trainer.devices", "trainer.logger", "trainer.enable_checkpointing", "trainer.enable_progress_bar",
               "trainer.enable_model_summary", "trainer.num_sanity_val_steps", "trainer.limit_val_batches",
               "trainer.deterministic")


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


def run_params(cfg: DictConfig, searched: Sequence[str] = ()) -> dict[str, str]:
    """The MLflow params of a run: the keys that define the experiment, searched keys first (the
    MLflow UI lists params in logging order, so a trial's table starts with what the study varied)."""
    flat = flatten(cfg)
    keep = {k: v for k, v in flat.items() if k.startswith(PARAM_SECTIONS) and not k.startswith(_NOT_PARAMS)}
    first = {}
    for key in searched:
        key = f"{key}.name" if key not in keep and f"{key}.name" in keep else key  # a group: its option name
        if key in keep:
            first[key] = keep[key]
    return {**first, **keep}


def objective_key(cfg: DictConfig) -> str:
    """The metric a config is judged by (`val/r2`, or `leaky/r2` under the paper's protocol)."""
    return f"{LEAKY_PREFIX if cfg.evaluation.protocol == 'paper' else HONEST_PREFIX}/r2"


def loss_series(cfg: DictConfig, loss_history: dict[str, Any]) -> dict[str, list[tuple[int, float]]]:
    """Per-epoch VAE losses (mean over fold models) as MLflow series, every `loss_log_every` epochs."""
    series: dict[str, list[tuple[int, float]]] = {}
    every = max(1, int(cfg.tracking.loss_log_every))
    for key, arr in loss_history.items():
        curve = arr.mean(axis=1)
        steps = sorted({*range(1, len(curve) + 1, every), len(curve)})  # always the last epoch
        series[f"train/{key}"] = [(e, float(curve[e - 1])) for e in steps]
    return series


def log_result(cfg: DictConfig, data: Dataset, result: EvalResult, run_id: str,
               intermediate_logged: bool = False) -> None:
    """Metrics, per-epoch losses, config, predictions and figures of one evaluation (params are
    logged when the run starts)."""
    series = loss_series(cfg, result.loss_history) if result.loss_history else {}
    if not intermediate_logged:
        for epoch, value in result.intermediate:
            series.setdefault(f"{result.objective_key}_intermediate", []).append((epoch, value))
    metrics = dict(result.metrics)
    for fm in result.fold_metrics:
        metrics[f"fold/r{fm['repeat']}f{fm['fold']}/r2"] = fm["r2"]
    tracking.log_batch(run_id, metrics=metrics, series=series)
    config_text = to_yaml(cfg)
    mlflow.log_text(config_text, "config.yaml")
    expected: dict[str, int | None] = {"config.yaml": len(config_text.encode())}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "predictions.csv"
        result.predictions.to_csv(path, index=False)
        mlflow.log_artifact(str(path))
        expected["predictions.csv"] = path.stat().st_size
    if cfg.tracking.log_figures:
        from vaeok.tracking import plots  # the plotting stack only when figures are logged (selects Agg)

        plt = plots.plt

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
    searched: Sequence[str] = ()  # the keys a study searches: tag vaeok.searched, params listed first
    note: str | None = None  # the run's MLflow description


def run_experiment(cfg: DictConfig, data: Dataset | None = None, hooks: RunHooks | None = None) -> RunOutcome:
    """Evaluate one config on `data` (loaded from `cfg.data` if not given) and, if tracking is
    enabled, log it as one MLflow run.

    Params, datasets and the description (`hooks.note`) are logged when the run starts and every
    value reported to `hooks.report` (the pruner) as it arrives, so a run stopped early (pruned,
    failed, interrupted) still says what it was and how far it got; a pruned run keeps its losses."""
    hooks = hooks or RunHooks()
    configure_runtime(cfg.torch_threads)
    if data is None:
        data = load_dataset(cfg.data)
    if not cfg.tracking.enabled:
        return RunOutcome(evaluate(cfg, data, hooks.report), None, data)
    exp_id = tracking.setup(cfg.tracking)
    tags = {**run_tags(cfg, data), **hooks.tags}
    if hooks.searched:
        tags[SEARCHED_TAG] = ",".join(hooks.searched)
    if hooks.note:
        tags[NOTE_TAG] = hooks.note
    with tracking.run(exp_id, hooks.name or run_name(cfg), tags, nested=hooks.parent_run_id is not None,
                      parent_run_id=hooks.parent_run_id, pruned=hooks.pruned) as active:
        run_id = active.info.run_id
        if hooks.on_start is not None:
            hooks.on_start(run_id)
        tracking.log_batch(run_id, params=run_params(cfg, hooks.searched))
        log_datasets(cfg, data)
        live = _live_reporter(run_id, objective_key(cfg), hooks.report) if hooks.report is not None else None
        try:
            result = evaluate(cfg, data, live)
        except hooks.pruned as exc:
            history = getattr(exc, "loss_history", None)
            if history:
                tracking.log_batch(run_id, series=loss_series(cfg, history))
            raise
        log_result(cfg, data, result, run_id, intermediate_logged=live is not None)
    return RunOutcome(result, run_id, data)


def _live_reporter(run_id: str, key: str, report: Reporter) -> Reporter:
    """`report` that first logs each intermediate value as metric `<key>_intermediate` at its epoch."""
    client = MlflowClient()

    def live(step: int, value: float) -> None:
        client.log_metric(run_id, f"{key}_intermediate", float(value), step=int(step))
        report(step, value)

    return live


def log_datasets(cfg: DictConfig, data: Dataset, contexts: Sequence[str] = ("development",)) -> None:
    """`mlflow.log_input` of the rows this run uses, per split (`development`: the rows the K folds
    are cut from; `holdout`: the untouched rows only promote scores on): name, digest, rows, source."""
    dev, hold = development_rows(cfg, data)
    for context in contexts:
        mlflow.log_input(dataset_entity(cfg, data, dev if context == "development" else hold), context=context)


def dataset_entity(cfg: DictConfig, data: Dataset, part: Dataset) -> Any:
    """An MLflow pandas dataset (features and target columns) for rows `part` of `data`; its source
    is the CSV path, or the generating function of the embedded surrogate."""
    import mlflow.data
    from mlflow.data.code_dataset_source import CodeDatasetSource

    if cfg.data.source == "csv":
        source: Any = str(Path(str(cfg.data.path)).resolve())
    else:
        source = CodeDatasetSource({"mlflow.source.name": "vaeok.data.rubber_surrogate",
                                    "data_seed": str(cfg.data.data_seed), "n_rows": str(cfg.data.n_rows)})
    with warnings.catch_warnings():  # MLflow warns when it cannot infer a schema type; ours is all floats
        warnings.simplefilter("ignore")
        return mlflow.data.from_pandas(part.frame(), source=source, targets=data.target_name, name=data.name)
