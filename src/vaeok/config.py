"""Typed structured configs (registered in Hydra's ConfigStore) and config composition."""

from __future__ import annotations

import copy
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vaeok.csv_text import delimiter_char, text_codec
from vaeok.errors import UserError


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


@dataclass
class EvaluationConfig:
    """How held-out scores are produced."""

    protocol: str = "honest_kfold"
    n_splits: int = 5
    n_repeats: int = 1
    loocv_below: int = 30
    holdout_fraction: float = 0.15
    holdout_seed: int = 0
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
    """`vaeok compare`: the generator x regressor grid, sample-count curve, KS test, SHAP, audits."""

    generators: list[str] = field(default_factory=lambda: ["none", "nni_smote", "gmm_vsg", "vae_vsg", "vae_ok"])
    regressors: list[str] = field(default_factory=lambda: ["gbr", "svr", "lasso", "ann", "brr"])
    sample_counts: list[int] = field(default_factory=lambda: [0, 100, 300, 500, 1000, 2000])
    curve_regressors: list[str] = field(default_factory=lambda: ["gbr", "ann"])
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
    scatter_counts: list[int] = field(default_factory=lambda: [100, 300, 500, 1000])
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


def config_dir() -> Path:
    """The Hydra config root: $VAEOK_CONFIG_DIR, else ./conf, else the checkout's conf/."""
    env = os.environ.get("VAEOK_CONFIG_DIR")
    if env:
        return Path(env).resolve()
    cwd = Path.cwd() / "conf"
    if (cwd / "config.yaml").is_file():
        return cwd.resolve()
    return (Path(__file__).resolve().parents[2] / "conf").resolve()


def config_groups() -> set[str]:
    """Names of the config groups (sub-directories of the config root, e.g. generator, regressor)."""
    return {p.name for p in config_dir().iterdir() if p.is_dir()}


def load_config(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Compose conf/config.yaml with Hydra overrides; raise UserError on any composition problem."""
    cfg = _compose(tuple(overrides))
    _resolve(cfg)
    validate_config(cfg)
    return cfg


def _compose(overrides: tuple[str, ...]) -> DictConfig:
    """Hydra composition (interpolations not yet resolved)."""
    register_configs()
    cdir = config_dir()
    if not (cdir / "config.yaml").is_file():
        raise UserError(f"config directory not found: {cdir} (set VAEOK_CONFIG_DIR)")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(cdir), version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise UserError(f"bad config: {_one_line(exc)}{_group_options_hint(exc, cdir)}") from None
    finally:
        GlobalHydra.instance().clear()


def _group_options_hint(exc: BaseException, cdir: Path) -> str:
    """'; options of generator: gmm_vsg, none, ...' when Hydra could not find a group option."""
    m = re.search(r"Could not find '([\w/]+)/([^']*)'", str(exc))
    if not m or not (cdir / m.group(1)).is_dir():
        return ""
    options = sorted(p.stem for p in (cdir / m.group(1)).glob("*.yaml"))
    return f" (options of {m.group(1).replace('/', '.')}: {', '.join(options)})"


def _resolve(cfg: DictConfig) -> None:
    try:
        OmegaConf.resolve(cfg)
    except (OmegaConfBaseException, ValueError) as exc:
        raise UserError(f"bad config: {_one_line(exc)}") from None


_BASE_CACHE: dict[tuple[str, tuple[str, ...]], DictConfig] = {}


def load_trial_config(base_overrides: list[str] | tuple[str, ...], values: dict[str, Any]) -> DictConfig:
    """`load_config([*base_overrides, *key=value])` for sampled values, composing as little as possible.

    Hydra composition costs ~0.13 s; a sweep composes each combination of base overrides and
    config-group choices (e.g. `generator=vae_ok`) once per process and sets the trial's sampled
    leaf values on a copy of that typed, still-unresolved config (type-checked by the structured
    schema), then resolves interpolations. Equivalence is tested against load_config.
    """
    from vaeok.sweep_spec import override

    groups = config_groups()
    choices = tuple(override(k, v) for k, v in values.items() if k in groups)
    key = (str(config_dir()), (*base_overrides, *choices))
    if key not in _BASE_CACHE:
        _BASE_CACHE[key] = _compose(key[1])
    cfg = copy.deepcopy(_BASE_CACHE[key])
    for k, v in values.items():
        if k in groups:
            continue
        if OmegaConf.select(cfg, k, default=_MISSING) is _MISSING:
            raise UserError(f"bad config: Key '{k}' not in config")
        try:
            OmegaConf.update(cfg, k, v, merge=True)
        except OmegaConfBaseException as exc:
            raise UserError(f"bad config: {k}={v!r}: {str(exc).splitlines()[0]}") from None
    _resolve(cfg)
    validate_config(cfg)
    return cfg


_MISSING = object()


def validate_config(cfg: DictConfig) -> None:
    """Range checks that types alone cannot express; raise UserError naming the key."""
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
        (cfg.labeler.backend in ("auto", "pykrige", "gstools"),
         f"labeler.backend must be auto, pykrige or gstools, got '{cfg.labeler.backend}'"),
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
    _check_finite(OmegaConf.to_container(cfg, resolve=True), "")
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
    if cfg.compare.output_dir:
        from vaeok.paths import inside

        inside(Path.cwd(), cfg.compare.output_dir, "compare.output_dir")


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


# Variogram model names of vaeok.kriging.VARIOGRAM_MODELS (kept here so config checks need no gstools).
VARIOGRAMS = ("linear", "power", "gaussian", "spherical", "exponential")




ACTIVATIONS = {"relu", "tanh", "sigmoid", "elu", "leaky_relu", "gelu", "silu"}


def _one_line(exc: BaseException) -> str:
    """First meaningful line of an exception message, with the cause appended when useful."""
    text = " ".join(str(exc).split("\n")[0:1]).strip() or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause).strip() and str(cause).split("\n")[0] not in text:
        text = f"{text}: {str(cause).splitlines()[0]}"
    return text


def to_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML (passwords in URLs masked: it is logged and written to files)."""
    from vaeok.redact import redact_text

    return redact_text(OmegaConf.to_yaml(cfg, resolve=True))


def flatten(cfg: DictConfig) -> dict[str, str]:
    """Flatten a config to dotted keys (for MLflow params; passwords in URLs masked)."""
    from vaeok.redact import redact_text

    out: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = redact_text(str(node))[:500]

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out
