"""`vaeok compare`: table layout, KS summary, leakage (paper vs honest protocol), SHAP, CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vaeok.config.compose import load_config
from vaeok.core.errors import UserError
from vaeok.data.datasets import rubber_surrogate
from vaeok.data.splits import inner_folds
from vaeok.evaluation import scoring as evaluation
from vaeok.evaluation.scoring import development_rows, fit_regressor, score_folds, score_paper
from vaeok.generators.base import TrainSet, VirtualSet
from vaeok.generators.smote import NNISmoteGenerator
from vaeok.report import compare as C
from vaeok.report.ks import ks_repeats, ks_summary
from vaeok.report.shap_report import explain

FAST = ["experiment=compare_fast", "tracking.enabled=false"]
SMALL_GRID = [*FAST, "compare.generators=[none,nni_smote,gmm_vsg]", "compare.regressors=[gbr,brr]",
              "compare.curve_regressors=[brr]", "compare.ks_repeats=3", "compare.shap=false"]


@pytest.fixture(scope="module")
def paper_result() -> C.CompareResult:
    base, gens, regs = C.compose_grid([*SMALL_GRID, "evaluation=paper"])
    data = rubber_surrogate()
    return C.compute(base, gens, regs, data, log=lambda _: None)


def test_table_layout(paper_result: C.CompareResult) -> None:
    cells = paper_result.cells
    assert list(cells.generator.unique()) == ["none", "nni_smote", "gmm_vsg"]
    assert len(cells) == 3 * 2
    for m in ("r2", "rmse", "mae", "mape"):
        for p in ("honest", "paper"):
            assert cells[f"{p}_{m}"].notna().all()
        np.testing.assert_allclose(cells[f"diff_{m}"], cells[f"paper_{m}"] - cells[f"honest_{m}"])
    tables = C.tables(paper_result)
    r2 = tables["r2_honest"]
    assert list(r2.index) == ["none", "nni_smote", "gmm_vsg"] and list(r2.columns) == ["gbr", "brr"]
    assert {"r2_paper", "r2_paper_minus_honest", "r2_leakage_audit", "rmse_honest", "mape_paper"} <= set(tables)
    audit = tables["r2_leakage_audit"].loc["none", "gbr"]
    h, p = cells.set_index(["generator", "regressor"]).loc[("none", "gbr"), ["honest_r2", "paper_r2"]]
    assert audit == f"{h:.3f} / {p:.3f} ({p - h:+.3f})"
    gain = tables["r2_honest_gain_over_none"]
    assert list(gain.columns) == ["gbr", "gbr gain over none", "brr", "brr gain over none"]
    for reg in ("gbr", "brr"):
        np.testing.assert_allclose(gain[f"{reg} gain over none"], r2[reg] - r2.loc["none", reg])
    assert (gain.loc["none", ["gbr gain over none", "brr gain over none"]] == 0).all()
    assert "gbr gain over none" in C.console_report(paper_result)
    md = C.to_markdown(r2)
    assert md.splitlines()[0] == "| generator | gbr | brr |" and len(md.splitlines()) == 2 + 3
    # the none baseline has no virtual rows, so its KS cell is empty and n_virtual is 0
    none = cells[cells.generator == "none"]
    assert (none.n_virtual == 0).all() and none.honest_ks.isna().all()
    # the curve starts at the no-augmentation baseline for every generator
    curve = paper_result.curve
    assert set(curve.n_virtual) == {0, 20, 50}
    assert np.allclose(curve[curve.n_virtual == 0].r2, paper_result.baseline["brr"])
    assert "none" not in set(curve.generator)


def test_console_report_and_artifacts(paper_result: C.CompareResult, tmp_path) -> None:
    text = C.console_report(paper_result)
    assert "R2 leakage audit" in text and "best honest cell" in text
    files = C.write_artifacts(paper_result, tmp_path)
    names = {f.name for f in files}
    assert {"r2_honest.csv", "r2_honest.md", "r2_leakage_audit.md", "fig11_r2_bars.png",
            "fig12_r2_vs_n_virtual.png", "fig09_label_distributions.png", "fig04_real_data.png",
            "fig10_label_fidelity.png", "ks_table2.csv", "label_fidelity.csv"} <= names
    assert all(f.stat().st_size > 0 for f in files)
    back = pd.read_csv(tmp_path / "tables" / "r2_honest.csv", index_col=0)
    assert list(back.columns) == ["gbr", "brr"]


def test_ks_summary_statistics() -> None:
    per = {"g": pd.DataFrame({"repeat": [0, 1, 2], "ks": [0.1, 0.2, 0.3], "p_value": [0.5, 0.01, 0.2],
                              "n_virtual": 10})}
    s = ks_summary(per).set_index("stat")
    assert s.loc["mean", "ks"] == pytest.approx(0.2)
    assert s.loc["max", "ks"] == pytest.approx(0.3) and s.loc["min", "p_value"] == pytest.approx(0.01)
    assert s.loc["share p>0.05", "p_value"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("gen", ["nni_smote", "vae_ok"])
def test_ks_repeats_are_independent_draws(gen: str) -> None:
    cfg = load_config([*FAST, f"generator={gen}"])
    dev, _ = development_rows(cfg, rubber_surrogate())
    df = ks_repeats(cfg, dev, 4)
    assert len(df) == 4 and df.ks.between(0, 1).all() and df.p_value.between(0, 1).all()
    assert df.ks.nunique() > 1  # different seeds give different virtual sets
    assert (df.n_virtual == 50).all()


def _dev_folds(cfg):
    dev, _ = development_rows(cfg, rubber_surrogate())
    ev = cfg.evaluation
    return dev, inner_folds(dev.n_rows, "honest_kfold", ev.n_splits, 1, ev.loocv_below, cfg.seed)


def test_paper_protocol_puts_virtual_rows_in_test_folds() -> None:
    cfg = load_config([*FAST, "generator=nni_smote", "evaluation=paper"])
    dev, _ = _dev_folds(cfg)
    virtual = NNISmoteGenerator(n_virtual=200).generate([TrainSet(dev.X, dev.y)], seed=0)
    res = score_paper(cfg, dev, virtual)
    assert res.predictions.is_virtual.any()
    share = res.metrics["leaky/test_virtual_share"]
    assert share == pytest.approx(200 / (200 + dev.n_rows))


def test_honest_protocol_never_tests_or_fits_on_held_out_rows(monkeypatch) -> None:
    """Every test row is a real development row; labeler and regressor never see a fold's test
    rows, and virtual rows never reach the test side."""
    cfg = load_config([*FAST, "generator=vae_ok", "regressor=brr"])
    dev, folds = _dev_folds(cfg)
    evaluation.clear_caches()  # a labeler memoised by an earlier test would skip the spied fit
    seen_fit: list[np.ndarray] = []
    seen_test: list[np.ndarray] = []
    real_fit = evaluation.OrdinaryKrigingLabeler.fit

    def spy_fit(self, X, y):
        seen_fit.append(np.asarray(X).copy())
        return real_fit(self, X, y)

    real_fp = evaluation.fit_predict

    def spy_fp(cfg_, train, virtual, X_test):
        seen_test.append(np.asarray(X_test).copy())
        seen_fit.append(np.vstack([train.X, virtual.X]) if len(virtual.X) else train.X)
        return real_fp(cfg_, train, virtual, X_test)

    monkeypatch.setattr(evaluation.OrdinaryKrigingLabeler, "fit", spy_fit)
    monkeypatch.setattr(evaluation, "fit_predict", spy_fp)
    rng = np.random.default_rng(0)
    virtual = [VirtualSet(dev.X[f.train][rng.integers(0, len(f.train), 30)] * 1.001) for f in folds]
    res = score_folds(cfg, dev, folds, virtual)
    pred = res.predictions
    assert "is_virtual" not in pred and len(pred) == dev.n_rows
    assert sorted(pred.row) == list(range(dev.n_rows))
    np.testing.assert_allclose(pred.y_true, dev.y[pred.row])
    for fold, X_test in zip(folds, seen_test, strict=True):
        np.testing.assert_allclose(X_test, dev.X[fold.test])
    real_rows = {tuple(r) for r in dev.X}
    for i, fold in enumerate(folds):
        test_rows = {tuple(r) for r in dev.X[fold.test]}
        for X in seen_fit[2 * i: 2 * i + 2]:  # kriging fit, then regressor fit of fold i
            assert not test_rows & {tuple(r) for r in X}
    assert all(tuple(r) in real_rows for X in seen_test for r in X)


def test_grid_generation_fits_each_fold_on_its_training_rows_only() -> None:
    """NNI-SMOTE rows of fold i interpolate only that fold's training rows (never its test rows)."""
    _, gens, _ = C.compose_grid([*FAST, "compare.generators=[nni_smote]", "compare.regressors=[gbr]",
                                    "compare.curve_regressors=[gbr]"])
    cfg = gens["nni_smote"]
    dev, folds = _dev_folds(cfg)
    sets = C.generate_labelled(cfg, dev, folds, 50)
    assert len(sets.folds) == len(folds) and len(sets.dev.X) == 50
    for f, v in zip(folds, sets.folds, strict=True):
        lo, hi = dev.X[f.train].min(axis=0), dev.X[f.train].max(axis=0)
        assert ((v.X >= lo - 1e-9) & (v.X <= hi + 1e-9)).all()


def test_variance_rows_for_kriged_generators() -> None:
    base, gens, regs = C.compose_grid([*FAST, "compare.generators=[vae_ok]", "compare.regressors=[gbr,ann]",
                                       "compare.curve_regressors=[gbr]", "compare.ks_repeats=2",
                                       "compare.shap=false", "compare.sample_counts=[0,50]"])
    res = C.compute(base, gens, regs, rubber_surrogate(), log=lambda _: None)
    assert list(res.cells.generator.unique()) == ["vae_ok", "vae_ok+drop90", "vae_ok+weighted"]
    n = res.cells.set_index(["generator", "regressor"]).n_virtual
    assert n[("vae_ok+drop90", "gbr")] < n[("vae_ok", "gbr")] == 50
    assert res.cells.honest_r2.notna().all()
    assert res.fidelity is not None and "vae_ok+drop90" in set(res.fidelity.labels)


@pytest.mark.parametrize("reg", ["gbr", "svr", "lasso", "ann", "brr"])
def test_regressors_accept_sample_weights(reg: str) -> None:
    cfg = load_config([*FAST, f"regressor={reg}"])
    d = rubber_surrogate()
    model = fit_regressor(cfg, d.X, d.y, np.linspace(0.1, 1.0, d.n_rows))
    assert np.isfinite(model.predict(d.X)).all()


def test_shap_ranking_on_embedded_data() -> None:
    """Fig 14: GBR on real + virtual development rows ranks eps_h > omega > eps_nh."""
    cfg = load_config([*FAST, "regressor=gbr", "generator=nni_smote"])
    dev, _ = development_rows(cfg, rubber_surrogate())
    v = NNISmoteGenerator(n_virtual=300).generate([TrainSet(dev.X, dev.y)], seed=0)[0]
    model = fit_regressor(cfg, np.vstack([dev.X, v.X]), np.r_[dev.y, v.y])
    res = explain(model, dev.X, dev.X, dev.feature_names)
    assert res.explainer == "tree"
    assert list(res.importance.feature) == ["eps_h", "omega", "eps_nh"]


def test_shap_kernel_explainer_for_pipelines() -> None:
    cfg = load_config([*FAST, "regressor=brr"])
    dev, _ = development_rows(cfg, rubber_surrogate())
    model = fit_regressor(cfg, dev.X, dev.y)
    res = explain(model, dev.X, dev.X[:10], dev.feature_names)
    assert res.explainer == "kernel" and res.values.shape == (10, 3)


def test_bad_grid_overrides_raise_user_error() -> None:
    with pytest.raises(UserError, match=r"compare\.generators"):
        C.compose_grid([*FAST, "generator=gmm_vsg"])
    with pytest.raises(UserError, match="curve_regressors"):
        C.compose_grid([*FAST, "compare.regressors=[gbr]", "compare.curve_regressors=[ann]"])
    with pytest.raises(UserError, match="ks_repeats"):
        load_config([*FAST, "compare.ks_repeats=0"])


def _csv(tmp_path, n_features: int) -> str:
    rng = np.random.default_rng(n_features)
    X = rng.uniform(0, 1, (40, n_features))
    y = 3 * X[:, 0] + np.sin(3 * X[:, 1]) + 0.1 * rng.normal(size=40) + 10
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(n_features)]).assign(target=y)
    path = tmp_path / f"d{n_features}.csv"
    df.to_csv(path, index=False)
    return str(path)


@pytest.mark.slow  # end-to-end, >10 s: run by `make test` and CI
@pytest.mark.parametrize("n_features", [2, 6])
def test_compare_on_user_csv(tmp_path, n_features: int) -> None:
    out = tmp_path / "out"
    outcome = C.run_compare([*FAST, "data=csv", f"data.path={_csv(tmp_path, n_features)}", "data.target=target",
                             "compare.generators=[none,gmm_vsg,vae_ok]", "compare.regressors=[gbr,svr]",
                             "compare.curve_regressors=[svr]", "compare.ks_repeats=2",
                             f"compare.output_dir={out}"], log=lambda _: None)
    res = outcome.result
    assert res.fidelity is None  # no oracle for user data
    assert res.shap is not None and len(res.shap.importance) == n_features
    assert (out / "figures" / "fig05_virtual_vae_ok.png").is_file()
    assert (out / "tables" / "r2_honest.md").is_file()
    assert res.cells.honest_r2.notna().all()


@pytest.mark.slow
def test_cli_compare_logs_parent_and_child_runs(tmp_path, capsys) -> None:
    from mlflow.tracking import MlflowClient

    from vaeok.cli import main

    rc = main(["compare", "experiment=compare_fast", "evaluation=paper", "compare.generators=[none,nni_smote]",
               "compare.regressors=[gbr,brr]", "compare.curve_regressors=[gbr]", "compare.ks_repeats=2",
               "compare.shap_generator=nni_smote"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "R2 leakage audit" in out and "MLflow parent run" in out
    client = MlflowClient()
    exp = client.get_experiment_by_name("vaeok")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("kind") == "compare"]
    children = [r for r in runs if r.data.tags.get("kind") == "compare-cell"]
    assert len(parents) == 1 and len(children) == 4
    assert all(c.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id for c in children)
    assert "leaky/r2" in children[0].data.metrics and "val/r2" in children[0].data.metrics
    arts = {a.path for a in client.list_artifacts(parents[0].info.run_id, "tables")}
    assert "tables/r2_leakage_audit.md" in arts


def test_cli_compare_user_error(capsys) -> None:
    from vaeok.cli import main

    assert main(["compare", *FAST, "regressor=svr"]) == 2
    assert "compare.regressors" in capsys.readouterr().err
