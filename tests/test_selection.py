"""Selection rules and estimates on OOF predictions (vaeok.study.selection)."""

from __future__ import annotations

import numpy as np
import pytest

from vaeok.study.selection import (
    argmax_rule,
    bbc_cv,
    combine,
    ensemble_rule,
    ensemble_weights,
    one_se_choice,
    one_se_rule,
    paired_bootstrap,
    r2_score_columns,
)


def noise_pool(n: int = 40, k: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Configs that know nothing: every column is the target's mean plus independent noise."""
    rng = np.random.default_rng(seed)
    y = rng.normal(size=n)
    return y, rng.normal(scale=0.3, size=(n, k))


def signal_pool(n: int = 60, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Column 0 good, column 1 slightly worse, column 2 useless."""
    rng = np.random.default_rng(seed)
    y = rng.normal(size=n)
    P = np.column_stack([y + rng.normal(scale=0.3, size=n), y + rng.normal(scale=0.5, size=n),
                         rng.normal(size=n)])
    return y, P


def test_r2_columns_matches_sklearn() -> None:
    from sklearn.metrics import r2_score

    y, P = signal_pool()
    assert np.allclose(r2_score_columns(y, P), [r2_score(y, P[:, j]) for j in range(3)])
    assert r2_score_columns(y, P[:, 0]) == pytest.approx(r2_score(y, P[:, 0]))


def test_paired_bootstrap_identical_predictions_is_a_coin_flip() -> None:
    y, P = signal_pool()
    res = paired_bootstrap(y, P[:, 0], P[:, 0].copy(), n_boot=500, seed=3)
    assert res.p_a_better == pytest.approx(0.5)
    assert res.diff == 0.0 and res.ci_low == 0.0 and res.ci_high == 0.0


def test_paired_bootstrap_detects_the_better_one_and_ci_contains_diff() -> None:
    y, P = signal_pool()
    res = paired_bootstrap(y, P[:, 0], P[:, 2], n_boot=1000, seed=0)
    assert res.p_a_better > 0.99
    assert res.ci_low < res.diff < res.ci_high and res.ci_low > 0
    rev = paired_bootstrap(y, P[:, 2], P[:, 0], n_boot=1000, seed=0)
    assert rev.p_a_better < 0.01


def test_bbc_is_below_the_raw_best_on_pure_noise() -> None:
    for seed in range(3):
        y, P = noise_pool(seed=seed)
        raw_best = float(r2_score_columns(y, P).max())
        res = bbc_cv(y, P, argmax_rule(), n_boot=300, seed=seed)
        assert res.apparent == pytest.approx(raw_best)
        assert res.estimate < raw_best - 0.05
        assert res.ci_low < res.estimate < res.ci_high


def test_bbc_close_to_truth_when_one_config_is_clearly_best() -> None:
    y, P = signal_pool(n=200)
    res = bbc_cv(y, P, argmax_rule(), n_boot=300, seed=0)
    assert abs(res.estimate - r2_score_columns(y, P[:, 0])) < 0.05


def test_ensemble_weights_sum_and_prefer_good_columns() -> None:
    y, P = signal_pool()
    w = ensemble_weights(y, P, n_iter=25)
    assert w.dtype.kind == "i" and w.sum() == 25 and w.min() >= 0
    assert w[0] == w.max() and w[2] <= 2
    # the ensemble is at least as good on the OOF rows as its first pick (the best single column)
    assert r2_score_columns(y, combine(P, w)) >= r2_score_columns(y, P).max() - 1e-12
    w_top = ensemble_weights(y, P, n_iter=10, top_k=1)
    assert list(w_top) == [10, 0, 0]


def test_ensemble_of_two_complementary_models_mixes_them() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=100)
    e = rng.normal(scale=0.5, size=100)
    P = np.column_stack([y + e, y - e])  # opposite errors: the average is exact
    w = ensemble_weights(y, P, n_iter=10)
    assert list(w) == [5, 5]


def test_one_se_keeps_the_default_unless_clearly_beaten() -> None:
    y, P = signal_pool()
    cmp = paired_bootstrap(y, P[:, 0], P[:, 1], n_boot=300, seed=0)
    assert one_se_choice(y, P, default=1, seed=0) == (0 if cmp.diff > cmp.se else 1)
    assert one_se_choice(y, P, default=2, seed=0) == 0     # useless default is beaten
    y, N = noise_pool(k=10)
    r = r2_score_columns(y, N)
    d = int(np.argsort(r)[-2])                               # runner-up: within noise of the best
    assert one_se_choice(y, N, default=d, seed=0) == d
    assert one_se_choice(y, N, default=[d, int(np.argmax(r))], seed=0) == int(np.argmax(r))


def test_rules_are_deterministic_and_bbc_takes_any_rule() -> None:
    y, P = noise_pool(k=8)
    for rule in (argmax_rule(), one_se_rule(0), ensemble_rule(20), ensemble_rule(20, top_k=3)):
        a = bbc_cv(y, P, rule, n_boot=60, seed=7)
        b = bbc_cv(y, P, rule, n_boot=60, seed=7)
        assert a == b
    assert bbc_cv(y, P, n_boot=60, seed=1) != bbc_cv(y, P, n_boot=60, seed=2)
    assert paired_bootstrap(y, P[:, 0], P[:, 1], seed=4) == paired_bootstrap(y, P[:, 0], P[:, 1], seed=4)


def test_bad_inputs_are_refused() -> None:
    y, P = signal_pool()
    with pytest.raises(ValueError, match="rows"):
        bbc_cv(y[:-1], P)
    with pytest.raises(ValueError, match="finite"):
        paired_bootstrap(y, np.full(len(y), np.nan), P[:, 0])
    with pytest.raises(ValueError, match="weights"):
        combine(P, np.zeros(3))
