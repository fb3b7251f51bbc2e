"""The typed config schema (dataclasses registered in Hydra's ConfigStore) and its range checks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from vaeok.core.errors import UserError
from vaeok.data.csv_text import delimiter_char, text_codec


@dataclass
class DataConfig:
    """Where the rows come from. source=surrogate is the embedded synthetic set; csv reads `path`."""

    name: str = "rubber_surrogate"
    source: str = "surrogate"
    path: str | None = None
    target: str = "stress_600"
    features: list[str] | None = None
    n_rows: int = 86
    noise: float = 60.0
    data_seed: int = 2024
    batch_size: int = 64
    encoding: str = "utf-8"
    delimiter: str | None = None
    max_rows: int | None = 5000


@dataclass
class ModelConfig:
    """VAE architecture and optimiser (paper Table 1 defaults)."""

    hidden: int = 65
    n_layers: int = 1
    latent: int = 2
    activation: str = "relu"
    lr: float = 0.002
    beta: float = 1.0


@dataclass
class TrainerConfig:
    """Lightning Trainer arguments; everything a trial does not need is off."""

    _target_: str = "lightning.Trainer"
    max_epochs: int = 400
    accelerator: str = "cpu"
    devices: int = 1
    logger: bool = False
    enable_checkpointing: bool = False
    enable_progress_bar: bool = False
    enable_model_summary: bool = False
    num_sanity_val_steps: int = 0
    limit_val_batches: float = 0.0
    deterministic: bool = True


@dataclass
class LabelerConfig:
    """Ordinary kriging of virtual samples, fitted on a fold's training rows only."""

    _target_: str = "vaeok.labelers.kriging.OrdinaryKrigingLabeler"
    name: str = "ordinary_kriging"
    variogram: str = "auto"
    candidates: list[str] = field(
        default_factory=lambda: ["linear", "power", "gaussian", "spherical", "exponential"]
    )
    nugget: float | None = None
    nugget_fraction: float | None = None
    backend: str = "auto"
    exact: bool = True
    max_points: int | None = None
    drop_variance_quantile: float | None = None
    variance_weighting: str | None = None
    seed: int = 0


@dataclass
class EvaluationConfig:
    """How held-out scores are produced."""

    protocol: str = "honest_kfold"
    n_splits: int = 5
    n_repeats: int = 1
    loocv_below: int = 30
    holdout_fraction: float = 0.15
    holdout_seed: int = 0
    holdout_min_rows: int = 30
    eval_every_n_epochs: int = 0


@dataclass
class TrackingConfig:
    """MLflow store and experiment."""

    enabled: bool = True
    uri: str = "sqlite:///mlruns/mlflow.db"
    artifact_root: str = "mlruns/artifacts"
    experiment: str = "vaeok"
    log_figures: bool = True
    loss_log_every: int = 1


@dataclass
class CompareConfig:
    """`vaeok compare`: the generator x regressor grid, sample-count curve, KS test, SHAP, audits.

    The grid lists have no defaults here: conf/compare/*.yaml is their one home."""

    generators: list[str] = MISSING
    regressors: list[str] = MISSING
    sample_counts: list[int] = MISSING
    curve_regressors: list[str] = MISSING
    focus_generator: str = "vae_ok"
    ks_repeats: int = 100
    shap: bool = True
    shap_generator: str = "vae_ok"
    shap_regressor: str = "gbr"
    shap_max_rows: int = 200
    variance_rows: bool = True
    variance_drop_quantile: float = 0.9
    fidelity_tolerance: float = 0.05
    fidelity_plot_samples: int = 30
    scatter_counts: list[int] = MISSING
    output_dir: str | None = None


@dataclass
class Config:
    """Root config; groups are composed from conf/<group>/*.yaml."""

    seed: int = 42
    torch_threads: int = 1
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    generator: Any = None
    labeler: LabelerConfig = field(default_factory=LabelerConfig)
    regressor: Any = None
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)


def register_configs() -> None:
    """Register the typed schema that conf/config.yaml extends."""
    ConfigStore.instance().store(name="vaeok_schema", node=Config)


def validate_config(cfg: DictConfig) -> None:
    """Range checks that types alone cannot express; raise UserError naming the key."""
    from vaeok.config.targets import check_targets

    container = OmegaConf.to_container(cfg, resolve=True)
    check_targets(container)  # first, before anything is built: configs and stored study overrides are code
    n_virtual = cfg.generator.get("n_virtual", 0) if cfg.generator is not None else 0
    if isinstance(n_virtual, bool) or not isinstance(n_virtual, int):  # the generator group is untyped
        raise UserError(f"generator.n_virtual must be an integer, got {n_virtual!r}")
    checks = [
        (cfg.trainer.max_epochs >= 1, "trainer.max_epochs must be >= 1"),
        (cfg.model.hidden >= 1, "model.hidden must be >= 1"),
        (cfg.model.n_layers >= 1, "model.n_layers must be >= 1"),
        (cfg.model.latent >= 1, "model.latent must be >= 1"),
        (cfg.model.lr > 0, "model.lr must be > 0"),
        (cfg.data.batch_size >= 1, "data.batch_size must be >= 1"),
        (cfg.evaluation.n_splits >= 2, "evaluation.n_splits must be >= 2"),
        (cfg.evaluation.n_repeats >= 1, "evaluation.n_repeats must be >= 1"),
        (cfg.evaluation.holdout_min_rows >= 0, "evaluation.holdout_min_rows must be >= 0"),
        (0 <= cfg.evaluation.holdout_fraction < 0.5, "evaluation.holdout_fraction must be in [0, 0.5)"),
        (cfg.evaluation.protocol in ("honest_kfold", "loocv", "paper"),
         f"evaluation.protocol must be honest_kfold, loocv or paper, got '{cfg.evaluation.protocol}'"),
        (cfg.model.activation in ACTIVATIONS,
         f"model.activation must be one of {sorted(ACTIVATIONS)}, got '{cfg.model.activation}'"),
        (cfg.data.source in ("surrogate", "csv"), f"data.source must be surrogate or csv, got '{cfg.data.source}'"),
        (cfg.generator is not None and "_target_" in cfg.generator, "generator group is missing or has no _target_"),
        (cfg.regressor is not None and "_target_" in cfg.regressor, "regressor group is missing or has no _target_"),
        (cfg.generator is None or cfg.generator.get("n_virtual", 0) >= 0, "generator.n_virtual must be >= 0"),
        (cfg.labeler.variance_weighting in (None, "explained"),
         f"labeler.variance_weighting must be null or explained, got '{cfg.labeler.variance_weighting}'"),
        (cfg.labeler.drop_variance_quantile is None or 0 < cfg.labeler.drop_variance_quantile <= 1,
         "labeler.drop_variance_quantile must be in (0, 1]"),
        (cfg.compare.ks_repeats >= 1, "compare.ks_repeats must be >= 1"),
        (all(n >= 0 for n in cfg.compare.sample_counts), "compare.sample_counts must be >= 0"),
        (0 < cfg.compare.variance_drop_quantile <= 1, "compare.variance_drop_quantile must be in (0, 1]"),
        (cfg.compare.fidelity_tolerance > 0, "compare.fidelity_tolerance must be > 0"),
        (cfg.torch_threads >= 1, "torch_threads must be >= 1"),
        (cfg.model.beta >= 0, "model.beta must be >= 0"),
        (cfg.data.max_rows is None or cfg.data.max_rows >= 1, "data.max_rows must be >= 1 or null"),
        (cfg.data.noise >= 0, "data.noise must be >= 0"),
        (cfg.evaluation.loocv_below >= 0, "evaluation.loocv_below must be >= 0"),
        (cfg.evaluation.eval_every_n_epochs >= 0, "evaluation.eval_every_n_epochs must be >= 0"),
        (cfg.labeler.variogram in ("auto", *VARIOGRAMS),
         f"labeler.variogram must be auto or one of {', '.join(VARIOGRAMS)}, got '{cfg.labeler.variogram}'"),
        (all(c in VARIOGRAMS for c in cfg.labeler.candidates) and len(cfg.labeler.candidates) > 0,
         f"labeler.candidates must be a non-empty list of {', '.join(VARIOGRAMS)}"),
        (cfg.labeler.backend in KRIGING_BACKENDS,
         f"labeler.backend must be one of {', '.join(KRIGING_BACKENDS)}, got '{cfg.labeler.backend}'"),
        (cfg.labeler.nugget is None or cfg.labeler.nugget >= 0, "labeler.nugget must be >= 0 or null"),
        (cfg.labeler.max_points is None or cfg.labeler.max_points >= 3, "labeler.max_points must be >= 3 or null"),
        (cfg.tracking.loss_log_every >= 1, "tracking.loss_log_every must be >= 1"),
        (cfg.compare.shap_max_rows >= 1, "compare.shap_max_rows must be >= 1"),
        # upper bounds against typos that would exhaust memory rather than fail
        (cfg.model.hidden <= MAX_HIDDEN, f"model.hidden must be <= {MAX_HIDDEN}"),
        (cfg.model.n_layers <= MAX_LAYERS, f"model.n_layers must be <= {MAX_LAYERS}"),
        (cfg.generator is None or cfg.generator.get("n_virtual", 0) <= MAX_VIRTUAL,
         f"generator.n_virtual must be <= {MAX_VIRTUAL}"),
    ]
    _check_finite(container, "")
    for ok, msg in checks:
        if not ok:
            raise UserError(msg)
    text_codec(cfg.data.encoding)
    if cfg.data.delimiter is not None:
        delimiter_char(cfg.data.delimiter)
    if cfg.data.source == "csv":
        for key in ("path", "target"):
            if OmegaConf.is_missing(cfg.data, key) or cfg.data[key] in (None, ""):
                raise UserError(f"data.{key} must be set with data=csv, e.g. data.path=my.csv data.target=y")
    from vaeok.core.paths import inside

    if cfg.compare.output_dir:
        inside(Path.cwd(), cfg.compare.output_dir, "compare.output_dir")
    uri, root = str(cfg.tracking.uri), str(cfg.tracking.artifact_root)
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        inside(Path.cwd(), uri.removeprefix("sqlite:///"), "tracking.uri")
    if "://" not in root:
        inside(Path.cwd(), root, "tracking.artifact_root")


MAX_HIDDEN = 65536
MAX_LAYERS = 64
MAX_VIRTUAL = 1_000_000


def _check_finite(node: Any, prefix: str) -> None:
    """UserError naming the first float value that is inf or nan (e.g. model.lr=1e999)."""
    if isinstance(node, dict):
        for k, v in node.items():
            _check_finite(v, f"{prefix}{k}.")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_finite(v, f"{prefix[:-1]}[{i}].")
    elif isinstance(node, float) and not math.isfinite(node):
        raise UserError(f"{prefix[:-1]} must be a finite number, got {node}")


# The one home of these names: the kriging labeler and the VAE map them to implementations, and
# config checks need neither gstools nor torch.
VARIOGRAMS = ("linear", "power", "gaussian", "spherical", "exponential")
KRIGING_BACKENDS = ("auto", "pykrige", "gstools")


ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "leaky_relu", "gelu", "silu")
