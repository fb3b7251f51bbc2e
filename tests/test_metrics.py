import numpy as np
from sklearn.metrics import mean_absolute_error, mean_absolute_percentage_error, mean_squared_error, r2_score

from vaeok.evaluation.metrics import ks_statistic, regression_metrics


def test_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(2000, 300, 50)
    p = y + rng.normal(0, 100, 50)
    m = regression_metrics(y, p)
    assert np.isclose(m["r2"], r2_score(y, p))
    assert np.isclose(m["rmse"], np.sqrt(mean_squared_error(y, p)))
    assert np.isclose(m["mae"], mean_absolute_error(y, p))
    assert np.isclose(m["mape"], 100 * mean_absolute_percentage_error(y, p))


def test_ks() -> None:
    a = np.linspace(0, 1, 100)
    assert ks_statistic(a, a)[0] == 0.0
    assert ks_statistic(a, a + 2)[0] == 1.0
    assert np.isnan(ks_statistic(a, np.array([]))[0])
