"""GPR and kriging as regressors (vaeok.regressors), alone and through the config/evaluation path."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import r2_score

from vaeok.config import load_config
from vaeok.data import rubber_surrogate
from vaeok.evaluation import evaluate, make_regressor
from vaeok.kriging import OrdinaryKrigingLabeler
from vaeok.preflight import check_regressor
from vaeok.regressors import GPRRegressor, KrigingRegressor


def smooth(n: int = 40, d: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, d)) * np.array([1.0, 100.0, 0.01])[:d]   # wildly different scales
    y = np.sin(3 * X[:, 0]) + X[:, 1] / 100 + rng.normal(scale=0.05, size=n)
    return X, y


def test_gpr_fits_smooth_data_with_one_length_scale_per_feature() -> None:
    X, y = smooth()
    Xt, yt = smooth(seed=1)
    gpr = GPRRegressor(random_state=0).fit(X, y)
    assert r2_score(yt, gpr.predict(Xt)) > 0.8
    length = gpr.gp_.kernel_.k1.k2.length_scale
    assert np.shape(length) == (3,)
    # the irrelevant third feature gets a longer length scale than the first
    assert length[2] > length[0]
    mean, std = gpr.predict(Xt, return_std=True)
    assert mean.shape == std.shape == (len(Xt),) and np.all(std > 0)


def test_gpr_is_deterministic_and_clonable() -> None:
    X, y = smooth()
    a = GPRRegressor(n_restarts_optimizer=2, random_state=3).fit(X, y).predict(X[:5])
    b = clone(GPRRegressor(n_restarts_optimizer=2, random_state=3)).fit(X, y).predict(X[:5])
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="2-D X"):
        GPRRegressor().fit(X[:, 0], y)


def test_kriging_regressor_equals_the_labeler() -> None:
    X, y = smooth(d=2)
    Xt, _ = smooth(d=2, seed=2)
    est = KrigingRegressor(variogram="gaussian").fit(X, y)
    ref = OrdinaryKrigingLabeler(variogram="gaussian").fit(X, y)
    m, s = est.predict(Xt, return_std=True)
    rm, rs = ref.predict(Xt, return_std=True)
    assert np.allclose(m, rm) and np.allclose(s, rs)
    assert np.allclose(est.predict(X), y, atol=1e-6)   # exact kriging reproduces training labels


@pytest.mark.parametrize("name", ["gpr", "kriging"])
def test_regressor_groups_compose_validate_and_evaluate(name: str) -> None:
    cfg = load_config(["tracking.enabled=false", "generator=none", f"regressor={name}", "seed=5"])
    check_regressor(cfg)
    assert make_regressor(cfg).random_state == 5
    if name == "kriging":                          # settings follow the labeler group
        other = load_config(["tracking.enabled=false", "generator=none", "regressor=kriging",
                             "labeler.variogram=gaussian", "labeler.nugget_fraction=0.1"])
        model = make_regressor(other)
        assert (model.variogram, model.nugget_fraction) == ("gaussian", 0.1)
    data = rubber_surrogate(n_rows=40)
    res = evaluate(cfg, data)
    assert res.objective > 0.5
    assert res.predictions.y_pred.notna().all()
