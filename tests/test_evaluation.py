import numpy as np
import pytest
from omegaconf import DictConfig, open_dict

import vaeok.evaluation.scoring as ev
import vaeok.generators.vae as vae_mod
from vaeok.config.compose import load_config
from vaeok.data.datasets import load_dataset
from vaeok.data.splits import inner_folds, outer_split
from vaeok.labelers.kriging import OrdinaryKrigingLabeler

from .conftest import TINY


def _rows(a: np.ndarray) -> set[tuple[float, ...]]:
    return {tuple(np.round(r, 9)) for r in np.asarray(a, dtype=float)}


def test_no_held_out_row_reaches_any_fitted_component(tiny_cfg: DictConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, list[np.ndarray]] = {"vae": [], "kriging": [], "regressor": []}

    real_build = vae_mod.build_module

    def spy_build(arrays, *a, **k):
        seen["vae"].extend(arrays)
        return real_build(arrays, *a, **k)

    real_fit = OrdinaryKrigingLabeler.fit

    def spy_fit(self, X, y):
        seen["kriging"].append(np.asarray(X))
        return real_fit(self, X, y)

    real_make = ev.make_regressor

    def spy_make(cfg):
        model = real_make(cfg)
        fit = model.fit

        def recording_fit(X, y, *a, **k):
            seen["regressor"].append(np.asarray(X))
            return fit(X, y, *a, **k)

        model.fit = recording_fit
        return model

    monkeypatch.setattr(vae_mod, "build_module", spy_build)
    monkeypatch.setattr(OrdinaryKrigingLabeler, "fit", spy_fit)
    monkeypatch.setattr(ev, "make_regressor", spy_make)

    data = load_dataset(tiny_cfg.data)
    tiny_cfg.evaluation.holdout_min_rows = 0  # keep a 13-row outer holdout: no fit may see it either
    ev.clear_caches()
    result = ev.evaluate(tiny_cfg, data)
    e = tiny_cfg.evaluation
    dev_idx, hold_idx = outer_split(data.n_rows, e)
    assert len(hold_idx) == 13
    dev = data.X[dev_idx]
    e = tiny_cfg.evaluation
    folds = inner_folds(len(dev_idx), e.protocol, e.n_splits, e.n_repeats, e.loocv_below, tiny_cfg.seed)
    assert len(seen["vae"]) == len(seen["kriging"]) == len(seen["regressor"]) == len(folds)
    holdout = _rows(data.X[hold_idx])
    for i, fold in enumerate(folds):
        forbidden = _rows(dev[fold.test]) | holdout
        train = _rows(dev[fold.train])
        for part in ("vae", "kriging", "regressor"):
            rows = _rows(seen[part][i])
            assert not rows & forbidden, f"{part} of fold {i} saw held-out rows"
            assert train <= rows, f"{part} of fold {i} did not see its training rows"
    assert set(result.predictions.row) == set(range(len(dev_idx)))
    assert len(result.predictions) == len(dev_idx) * e.n_repeats


def test_same_seed_same_numbers_other_seed_other_numbers(tiny_cfg: DictConfig) -> None:
    data = load_dataset(tiny_cfg.data)
    a = ev.evaluate(tiny_cfg, data).metrics
    b = ev.evaluate(tiny_cfg, data).metrics
    assert a == b
    other = load_config([*TINY, "tracking.enabled=false", "seed=7"])
    assert ev.evaluate(other, data).metrics["val/r2"] != a["val/r2"]


def test_pooled_metrics_repeats_and_loocv() -> None:
    cfg = load_config([*TINY, "tracking.enabled=false", "evaluation.n_repeats=2", "generator=none"])
    data = load_dataset(cfg.data)
    res = ev.evaluate(cfg, data)
    # 86 rows: a 15 % holdout would hold 13 < evaluation.holdout_min_rows rows, so every row is scored
    assert len(res.predictions) == 2 * 86 and set(res.predictions.repeat) == {0, 1}
    loo = load_config([*TINY, "tracking.enabled=false", "evaluation=loocv", "generator=none"])
    res = ev.evaluate(loo, data)
    assert len(res.predictions) == 86 and res.predictions.fold.nunique() == 86
    assert -1 < res.metrics["val/r2"] <= 1


def test_intermediate_scores_are_reported(tiny_cfg: DictConfig) -> None:
    with open_dict(tiny_cfg):
        tiny_cfg.evaluation.eval_every_n_epochs = 2
    reports: list[tuple[int, float]] = []
    res = ev.evaluate(tiny_cfg, load_dataset(tiny_cfg.data), report=lambda s, v: reports.append((s, v)))
    assert [s for s, _ in reports] == [2, 4] and reports == res.intermediate


def test_drop_high_variance_virtual_rows() -> None:
    cfg = load_config([*TINY, "tracking.enabled=false", "labeler.drop_variance_quantile=0.5"])
    res = ev.evaluate(cfg, load_dataset(cfg.data))
    assert res.metrics["val/n_virtual"] == pytest.approx(20, abs=1)
