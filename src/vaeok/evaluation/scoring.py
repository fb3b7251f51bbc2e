"""Scoring a config: splits, per-fold generate -> label -> regress, pooled held-out metrics.

One implementation serves `run`, `sweep`, `compare` and `promote`. For generators that train
with Lightning callbacks (the VAE) the scoring runs inside `vaeok.evaluation.callback`
(at fit end, and every N epochs for pruning).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from sklearn.base import RegressorMixin
from sklearn.compose import TransformedTargetRegressor
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import has_fit_parameter

from vaeok.config.targets import build
from vaeok.core.errors import UserError, one_line
from vaeok.data.datasets import Dataset
from vaeok.data.splits import Fold, inner_folds, outer_split
from vaeok.evaluation.metrics import ks_statistic, regression_metrics
from vaeok.evaluation.result import HONEST_PREFIX, LEAKY_PREFIX, EvalResult, Reporter
from vaeok.generators.base import TrainSet, VirtualSet
from vaeok.labelers.kriging import OrdinaryKrigingLabeler


def subset(data: Dataset, idx: np.ndarray, name: str | None = None) -> Dataset:
    """Rows idx of a data set."""
    return Dataset(data.X[idx], data.y[idx], data.feature_names, data.target_name, name or data.name)


def development_rows(cfg: DictConfig, data: Dataset) -> tuple[Dataset, Dataset]:
    """Split off the untouched outer holdout (fixed by evaluation.holdout_seed)."""
    ev = cfg.evaluation
    dev_idx, hold_idx = outer_split(data.n_rows, ev)
    return subset(data, dev_idx), subset(data, hold_idx)


def make_labeler(cfg: DictConfig) -> OrdinaryKrigingLabeler:
    """The configured kriging labeler (unfitted)."""
    return build(cfg.labeler, "labeler", _convert_="all")


_LABELER_CACHE: OrderedDict[str, OrdinaryKrigingLabeler] = OrderedDict()
_LABELER_CACHE_SIZE = 256


def fitted_labeler(cfg: DictConfig, train: TrainSet) -> OrdinaryKrigingLabeler:
    """The labeler fitted on `train`, memoised on (rows, labeler settings, seed).

    The fit depends only on the fold's real training rows, which every trial of a sweep shares,
    so each fold's variogram is fitted once per process.
    """
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(train.X, dtype=float).tobytes())
    h.update(np.ascontiguousarray(train.y, dtype=float).tobytes())
    h.update(OmegaConf.to_yaml(cfg.labeler).encode() + str(cfg.seed).encode())
    key = h.hexdigest()
    if key in _LABELER_CACHE:
        _LABELER_CACHE.move_to_end(key)
        return _LABELER_CACHE[key]
    labeler = make_labeler(cfg).fit(train.X, train.y)
    _LABELER_CACHE[key] = labeler
    if len(_LABELER_CACHE) > _LABELER_CACHE_SIZE:
        _LABELER_CACHE.popitem(last=False)
    return labeler


def clear_caches() -> None:
    """Forget memoised fits (tests use this to observe every fit)."""
    _LABELER_CACHE.clear()


def make_regressor(cfg: DictConfig) -> RegressorMixin:
    """A fresh, unfitted regressor from the regressor group's `_target_`."""
    return build(cfg.regressor, "regressor", _convert_="all")


def krige_labels(cfg: DictConfig, virtual: VirtualSet, train: TrainSet) -> VirtualSet:
    """Kriging labels (and kriging std) for unlabelled virtual rows, fitted on `train` only.

    Sets that already carry labels (generator's own labels) or are empty pass through unchanged.
    """
    if virtual.y is not None or len(virtual.X) == 0:
        return virtual
    labeler = fitted_labeler(cfg, train)
    y, std = labeler.predict(virtual.X, return_std=True)
    return VirtualSet(virtual.X, y, std)


def apply_variance_policy(cfg: DictConfig, virtual: VirtualSet) -> VirtualSet:
    """Drop virtual rows above the `labeler.drop_variance_quantile` of their kriging std (if set)."""
    q = cfg.labeler.drop_variance_quantile
    if q is not None and virtual.std is not None and len(virtual.std):
        keep = virtual.std <= np.quantile(virtual.std, q)
        return VirtualSet(virtual.X[keep], None if virtual.y is None else virtual.y[keep], virtual.std[keep])
    return virtual


def label_virtual(cfg: DictConfig, virtual: VirtualSet, train: TrainSet) -> VirtualSet:
    """Give unlabelled virtual rows kriging labels fitted on `train` only; drop high-variance rows."""
    return apply_variance_policy(cfg, krige_labels(cfg, virtual, train))


def virtual_weights(cfg: DictConfig, virtual: VirtualSet, train: TrainSet) -> np.ndarray | None:
    """Sample weights of virtual rows under `labeler.variance_weighting` (None = unweighted).

    `explained`: w = clip(1 - std^2 / var(y_train), 0, 1), the share of the label variance the
    kriging estimate explains at that point (1 at training points, 0 where kriging knows no more
    than the mean). Real rows keep weight 1. Only sets with a kriging std are weighted.
    """
    mode = cfg.labeler.get("variance_weighting")
    if mode is None or virtual.std is None or len(virtual.X) == 0:
        return None
    if mode != "explained":
        raise UserError(f"labeler.variance_weighting must be null or explained, got '{mode}'")
    var = float(np.var(train.y)) or 1.0
    return np.clip(1.0 - virtual.std**2 / var, 0.0, 1.0)


def sample_weight_params(model: Any, sample_weight: np.ndarray) -> dict[str, np.ndarray]:
    """fit() keyword arguments that route sample_weight to the final estimator of a
    Pipeline / TransformedTargetRegressor / plain estimator; UserError if it cannot take weights."""
    if isinstance(model, Pipeline):
        name, last = model.steps[-1]
        return {f"{name}__{k}": v for k, v in sample_weight_params(last, sample_weight).items()}
    if isinstance(model, TransformedTargetRegressor):
        return sample_weight_params(model.regressor, sample_weight)
    if has_fit_parameter(model, "sample_weight"):
        return {"sample_weight": sample_weight}
    raise UserError(f"regressor {type(model).__name__} does not accept sample_weight "
                    "(needed by labeler.variance_weighting)")


class RegressorFitError(UserError):
    """The configured regressor raised while fitting (bad hyperparameter, unusable rows, ...)."""


def fit_regressor(cfg: DictConfig, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> Any:
    """A fresh configured regressor fitted on (X, y), with per-row weights if given;
    RegressorFitError (one line naming the regressor and its error) if its fit raises."""
    model = make_regressor(cfg)
    kwargs = {} if sample_weight is None else sample_weight_params(model, sample_weight)
    try:
        return model.fit(X, y, **kwargs)
    except Exception as exc:
        raise RegressorFitError(f"regressor {type(model).__name__} failed to fit {len(X)} rows: "
                                f"{one_line(exc)}") from exc


def augmented(cfg: DictConfig, train: TrainSet,
              virtual: VirtualSet) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Real + labelled virtual rows and their sample weights (None = unweighted; real rows weigh 1)."""
    if not len(virtual.X):
        return train.X, train.y, None
    w = virtual_weights(cfg, virtual, train)
    sw = None if w is None else np.r_[np.ones(len(train.y)), w]
    return np.vstack([train.X, virtual.X]), np.concatenate([train.y, virtual.y]), sw


def fit_predict(cfg: DictConfig, train: TrainSet, virtual: VirtualSet, X_test: np.ndarray) -> np.ndarray:
    """Fit the regressor on real+virtual training rows; predict X_test."""
    return fit_regressor(cfg, *augmented(cfg, train, virtual)).predict(X_test)


def pooled_metrics(pred: pd.DataFrame, prefix: str) -> dict[str, float]:
    """Metrics of predictions pooled over the folds of each repeat, averaged over repeats."""
    per_repeat = [regression_metrics(g.y_true.to_numpy(), g.y_pred.to_numpy()) for _, g in pred.groupby("repeat")]
    return {f"{prefix}/{k}": float(np.mean([m[k] for m in per_repeat])) for k in per_repeat[0]}


def score_folds(cfg: DictConfig, dev: Dataset, folds: Sequence[Fold], virtual_sets: Sequence[VirtualSet]) -> EvalResult:
    """Honest scoring: each fold labels its virtual rows and fits its regressor on its own
    training rows only, and is scored on its real held-out rows."""
    rows, fold_metrics, labelled, ks = [], [], [], []
    for fold, virtual in zip(folds, virtual_sets, strict=True):
        train = TrainSet(dev.X[fold.train], dev.y[fold.train])
        virtual = label_virtual(cfg, virtual, train)
        y_pred = fit_predict(cfg, train, virtual, dev.X[fold.test])
        labelled.append(virtual)
        ks.append(ks_statistic(train.y, virtual.y)[0] if virtual.y is not None else np.nan)
        rows.append(pd.DataFrame({
            "row": fold.test, "repeat": fold.repeat, "fold": fold.index,
            "y_true": dev.y[fold.test], "y_pred": y_pred,
        }))
        if len(fold.test) > 1:
            fold_metrics.append({"repeat": fold.repeat, "fold": fold.index,
                                 **regression_metrics(dev.y[fold.test], y_pred)})
    pred = pd.concat(rows, ignore_index=True)
    metrics = pooled_metrics(pred, HONEST_PREFIX)
    ks_valid = [k for k in ks if np.isfinite(k)]
    if ks_valid:
        metrics[f"{HONEST_PREFIX}/ks"] = float(np.mean(ks_valid))
    metrics[f"{HONEST_PREFIX}/n_virtual"] = float(np.mean([len(v.X) for v in labelled]))
    return EvalResult(metrics, pred, fold_metrics, labelled)


def score_paper(cfg: DictConfig, dev: Dataset, virtual_sets: Sequence[VirtualSet]) -> EvalResult:
    """The paper's LEAKY protocol: virtual rows generated and labelled from all development rows,
    then real+virtual rows are split together, so virtual rows reach the test folds."""
    train = TrainSet(dev.X, dev.y)
    virtual = label_virtual(cfg, virtual_sets[0], train)
    X, y, sw = augmented(cfg, train, virtual)
    is_virtual = np.r_[np.zeros(len(dev.X), bool), np.ones(len(virtual.X), bool)]
    ev = cfg.evaluation
    folds = inner_folds(len(X), "honest_kfold", ev.n_splits, ev.n_repeats, 0, cfg.seed)
    rows = []
    for fold in folds:
        model = fit_regressor(cfg, X[fold.train], y[fold.train], None if sw is None else sw[fold.train])
        rows.append(pd.DataFrame({
            "row": fold.test, "repeat": fold.repeat, "fold": fold.index, "y_true": y[fold.test],
            "y_pred": model.predict(X[fold.test]), "is_virtual": is_virtual[fold.test],
        }))
    pred = pd.concat(rows, ignore_index=True)
    metrics = pooled_metrics(pred, LEAKY_PREFIX)
    real = pooled_metrics(pred[~pred.is_virtual], LEAKY_PREFIX)
    metrics.update({f"{k}_real_rows": v for k, v in real.items()})
    metrics[f"{LEAKY_PREFIX}/test_virtual_share"] = float(pred.is_virtual.mean())
    if len(virtual.X):
        metrics[f"{LEAKY_PREFIX}/ks"] = ks_statistic(dev.y, virtual.y)[0]
    return EvalResult(metrics, pred, [], [virtual], objective_key=f"{LEAKY_PREFIX}/r2")


def generate_and_score(cfg: DictConfig, train_sets: Sequence[TrainSet],
                       score: Callable[[list[VirtualSet]], EvalResult], report: Reporter | None) -> EvalResult:
    """Run the configured generator on the training sets and score its virtual samples."""
    generator = build(cfg.generator, "generator", _recursive_=False)
    if generator.trains_with_callbacks:  # scored by a Lightning callback, during and after training
        from vaeok.evaluation.callback import EvaluationCallback

        callback = EvaluationCallback(score, generator, cfg.evaluation.eval_every_n_epochs, report)
        try:
            module = generator.fit(train_sets, cfg.seed, callbacks=[callback])
        except Exception as exc:  # e.g. pruned mid-training: the run still logs what was trained
            history = getattr(getattr(generator, "module", None), "loss_history", None)
            if history is not None:
                exc.loss_history = history()  # type: ignore[attr-defined]
            raise
        assert callback.result is not None
        history = getattr(module, "loss_history", None)
        callback.result.loss_history = history() if history is not None else {}
        callback.result.intermediate = callback.intermediate
        return callback.result
    result = score(generator.generate(train_sets, cfg.seed))
    if report is not None:
        report(1, result.objective)
    return result


def evaluate(cfg: DictConfig, data: Dataset, report: Reporter | None = None) -> EvalResult:
    """Score a config on the development rows under its evaluation protocol."""
    dev, _ = development_rows(cfg, data)
    ev = cfg.evaluation
    if ev.protocol == "paper":
        return generate_and_score(cfg, [TrainSet(dev.X, dev.y)], lambda v: score_paper(cfg, dev, v), report)
    folds = inner_folds(dev.n_rows, ev.protocol, ev.n_splits, ev.n_repeats, ev.loocv_below, cfg.seed)
    train_sets = [TrainSet(dev.X[f.train], dev.y[f.train]) for f in folds]
    return generate_and_score(cfg, train_sets, lambda v: score_folds(cfg, dev, folds, v), report)
