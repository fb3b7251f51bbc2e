"""Generators: shapes, determinism, virtual rows in a sane range of the data, own labels."""

from __future__ import annotations

import numpy as np
import pytest
from hydra.utils import instantiate

from vaeok.config.compose import load_config
from vaeok.data.datasets import rubber_surrogate
from vaeok.generators.base import TrainSet
from vaeok.generators.gmm import GMMGenerator
from vaeok.generators.smote import NNISmoteGenerator

FAST = ["experiment=compare_fast"]


@pytest.fixture(scope="module")
def train_sets() -> list[TrainSet]:
    d = rubber_surrogate()
    return [TrainSet(d.X[:60], d.y[:60]), TrainSet(d.X[26:], d.y[26:])]


def _gen(name: str, n: int = 200):
    cfg = load_config([*FAST, f"generator={name}", f"generator.n_virtual={n}"])
    return instantiate(cfg.generator, _recursive_=False)


@pytest.mark.parametrize("name", ["none", "nni_smote", "gmm_vsg", "vae_ok", "vae_vsg"])
def test_shapes_and_labels(name: str, train_sets: list[TrainSet]) -> None:
    out = _gen(name).generate(train_sets, seed=0)
    assert len(out) == len(train_sets)
    n = 0 if name == "none" else 200
    for v in out:
        assert v.X.shape == (n, 3)
        assert np.isfinite(v.X).all()
        if name == "vae_ok":
            assert v.y is None  # labelled later by kriging
        else:
            assert v.y is not None and v.y.shape == (n,) and np.isfinite(v.y).all()


@pytest.mark.parametrize("name", ["nni_smote", "gmm_vsg", "vae_vsg"])
def test_deterministic_and_seed_dependent(name: str, train_sets: list[TrainSet]) -> None:
    a = _gen(name).generate(train_sets, seed=3)
    b = _gen(name).generate(train_sets, seed=3)
    c = _gen(name).generate(train_sets, seed=4)
    for va, vb in zip(a, b, strict=True):
        np.testing.assert_allclose(va.X, vb.X)
        np.testing.assert_allclose(va.y, vb.y)
    assert not np.allclose(a[0].X, c[0].X)
    assert not np.allclose(a[0].X, a[1].X)  # folds are fitted on their own rows


def test_smote_stays_inside_the_data_box(train_sets: list[TrainSet]) -> None:
    """Interpolation never leaves the bounding box of the rows (features and labels)."""
    t = train_sets[0]
    v = NNISmoteGenerator(n_virtual=500).generate([t], seed=1)[0]
    assert (v.X >= t.X.min(axis=0) - 1e-9).all() and (v.X <= t.X.max(axis=0) + 1e-9).all()
    assert v.y.min() >= t.y.min() - 1e-9 and v.y.max() <= t.y.max() + 1e-9


def test_smote_label_interpolated_with_feature_weight() -> None:
    """With k=1 on two rows, every virtual row lies on the segment and y uses the same weight."""
    X = np.array([[0.0, 0.0], [1.0, 2.0]])
    y = np.array([10.0, 20.0])
    v = NNISmoteGenerator(n_virtual=50, k_neighbors=1).generate([TrainSet(X, y)], seed=0)[0]
    lam = v.X[:, 0]
    np.testing.assert_allclose(v.X[:, 1], 2 * lam)
    np.testing.assert_allclose(v.y, 10 + 10 * lam)


@pytest.mark.parametrize("name", ["gmm_vsg", "vae_ok", "vae_vsg"])
def test_samples_in_sane_range(name: str, train_sets: list[TrainSet]) -> None:
    """Generative samples stay within the data range widened by one range on each side."""
    t = train_sets[0]
    v = _gen(name, 500).generate([t], seed=0)[0]
    lo, hi = t.X.min(axis=0), t.X.max(axis=0)
    span = hi - lo
    assert (v.X >= lo - span).all() and (v.X <= hi + span).all()
    if v.y is not None:
        assert t.y.min() - np.ptp(t.y) <= v.y.min() and v.y.max() <= t.y.max() + np.ptp(t.y)


def test_gmm_selects_components_by_bic(train_sets: list[TrainSet]) -> None:
    g = GMMGenerator(n_virtual=100, max_components=4)
    g.generate(train_sets, seed=0)
    assert len(g.chosen_components_) == 2
    assert all(1 <= k <= 4 for k in g.chosen_components_)


def test_gmm_sample_order_is_shuffled(train_sets: list[TrainSet]) -> None:
    """Any prefix is an iid draw (sample-count curves take prefixes)."""
    v = GMMGenerator(n_virtual=400, max_components=6).generate([train_sets[0]], seed=0)[0]
    first, second = v.y[:200], v.y[200:]
    assert abs(first.mean() - second.mean()) < 0.5 * v.y.std()


def test_bad_parameters_raise_user_error() -> None:
    from vaeok.core.errors import UserError

    with pytest.raises(UserError, match="k_neighbors"):
        NNISmoteGenerator(k_neighbors=0)
    with pytest.raises(UserError, match="covariance_type"):
        GMMGenerator(covariance_type="banana")
