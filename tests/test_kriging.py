import numpy as np
import pytest

from vaeok.core.errors import UserError
from vaeok.data.datasets import rubber_surrogate
from vaeok.labelers.kriging import OrdinaryKrigingLabeler


@pytest.mark.parametrize("backend", ["pykrige", "gstools"])
@pytest.mark.parametrize("variogram", ["gaussian", "spherical", "exponential", "linear", "power"])
def test_exact_at_training_points_with_zero_nugget(backend: str, variogram: str) -> None:
    d = rubber_surrogate()
    lab = OrdinaryKrigingLabeler(variogram=variogram, nugget=0.0, backend=backend).fit(d.X[:50], d.y[:50])
    assert lab.model_.nugget == 0.0
    mean, std = lab.predict(d.X[:50], return_std=True)
    np.testing.assert_allclose(mean, d.y[:50], rtol=0, atol=1e-4 * d.y.std())
    assert std.max() < 1e-2 * d.y.std()


def test_backends_agree_in_3d() -> None:
    d = rubber_surrogate()
    a = OrdinaryKrigingLabeler(backend="pykrige").fit(d.X[:60], d.y[:60])
    b = OrdinaryKrigingLabeler(backend="gstools").fit(d.X[:60], d.y[:60])
    assert a.chosen_ == b.chosen_
    ma, sa = a.predict(d.X[60:], return_std=True)
    mb, sb = b.predict(d.X[60:], return_std=True)
    np.testing.assert_allclose(ma, mb, rtol=1e-6)
    np.testing.assert_allclose(sa, sb, rtol=1e-3, atol=1e-3)


def test_auto_picks_lowest_loo_and_predicts_well() -> None:
    d = rubber_surrogate()
    lab = OrdinaryKrigingLabeler().fit(d.X[:60], d.y[:60])
    assert lab.chosen_ == min(lab.loo_rmse_, key=lab.loo_rmse_.get)
    assert len(lab.loo_rmse_) >= 3
    err = lab.predict(d.X[60:]) - d.y[60:]
    assert np.sqrt(np.mean(err**2)) < 0.6 * d.y.std()


def test_nd_kriging_uses_gstools() -> None:
    rng = np.random.default_rng(0)
    X = rng.random((80, 6))
    y = X @ np.arange(1, 7) + np.sin(3 * X[:, 0])
    lab = OrdinaryKrigingLabeler().fit(X[:60], y[:60])
    assert lab.backend_ == "gstools"
    pred, std = lab.predict(X[60:], return_std=True)
    assert np.corrcoef(pred, y[60:])[0, 1] > 0.9 and (std > 0).all()


def test_bad_settings() -> None:
    with pytest.raises(UserError, match="variogram"):
        OrdinaryKrigingLabeler(variogram="cubic")
    with pytest.raises(UserError, match="backend"):
        OrdinaryKrigingLabeler(backend="R")
    with pytest.raises(UserError, match="2-3 features"):
        OrdinaryKrigingLabeler(backend="pykrige").fit(np.random.rand(20, 5), np.random.rand(20))


def test_auto_fits_every_candidate_on_the_default_folds() -> None:
    from vaeok.config.compose import load_config
    from vaeok.data.splits import inner_folds
    from vaeok.evaluation.scoring import development_rows

    cfg = load_config([])
    dev, _ = development_rows(cfg, rubber_surrogate())
    for fold in inner_folds(dev.n_rows, "honest_kfold", 5, 1, 30, cfg.seed):
        lab = OrdinaryKrigingLabeler().fit(dev.X[fold.train], dev.y[fold.train])
        assert lab.fit_errors_ == {} and len(lab.loo_rmse_) == 5


def test_nugget_fraction_is_relative_to_the_fold_target_variance() -> None:
    d = rubber_surrogate()
    lab = OrdinaryKrigingLabeler(variogram="gaussian", nugget_fraction=0.2).fit(d.X[:50], d.y[:50])
    assert lab.model_.nugget == pytest.approx(0.2 * np.var(d.y[:50]))
    with pytest.raises(UserError, match="not both"):
        OrdinaryKrigingLabeler(nugget=1.0, nugget_fraction=0.1)
    with pytest.raises(UserError, match="nugget_fraction"):
        OrdinaryKrigingLabeler(nugget_fraction=1.5)
