"""`vaeok compare`: the paper's generator x regressor comparison, run under the honest protocol
(and, with evaluation=paper, under the paper's leaky protocol next to it, with the difference).

Virtual samples are generated ONCE per generator for every fold plus the full development set
(one batched VAE training covers all of them), labelled once (kriging for VAE-OK), and then
reused by every regressor, every variance variant and every point of the sample-count curve
(which takes prefixes of the generated sets; every generator returns iid rows, so a prefix is
a smaller draw). Scoring always goes through `vaeok.evaluation.scoring.score_folds` / `score_paper`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, open_dict
from threadpoolctl import threadpool_limits

from vaeok.config.compose import load_config, to_yaml
from vaeok.config.targets import build
from vaeok.core.errors import UserError, message
from vaeok.core.runtime import configure_runtime
from vaeok.data.datasets import Dataset
from vaeok.data.splits import Fold, inner_folds
from vaeok.evaluation.metrics import METRICS
from vaeok.evaluation.preflight import load_checked_dataset
from vaeok.evaluation.result import EvalResult
from vaeok.evaluation.scoring import (
    apply_variance_policy,
    augmented,
    development_rows,
    fit_regressor,
    krige_labels,
    score_folds,
    score_paper,
)
from vaeok.generators.base import NoGenerator, TrainSet, VirtualSet

TABLE_METRICS = (*METRICS, "ks")
Log = Callable[[str], None]


@dataclass
class GeneratedSets:
    """One generator's labelled virtual rows: per fold, and from all development rows."""

    name: str
    folds: list[VirtualSet]
    dev: VirtualSet
    n_main: int
    loss_history: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def kriged(self) -> bool:
        """True if the labels come from kriging (they carry a kriging std)."""
        return any(v.std is not None for v in [*self.folds, self.dev])


@dataclass
class CompareResult:
    """Everything `vaeok compare` computed (tables are DataFrames, files are written later)."""

    cells: pd.DataFrame
    curve: pd.DataFrame
    baseline: dict[str, float]
    ks: pd.DataFrame
    ks_repeats: dict[str, pd.DataFrame]
    fidelity: pd.DataFrame | None
    shap: object | None
    predictions: dict[tuple[str, str], EvalResult]
    paper_predictions: dict[tuple[str, str], EvalResult]
    generated: dict[str, GeneratedSets]
    data: Dataset
    dev: Dataset
    cfg: DictConfig
    paper: bool
    seconds: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# configuration of the grid
# --------------------------------------------------------------------------------------------
def compose_grid(overrides: Sequence[str]) -> tuple[DictConfig, dict[str, DictConfig], dict[str, DictConfig]]:
    """The base config, one config per generator, and one regressor node per regressor.

    Group selections `generator=...`/`regressor=...` are not allowed in the overrides (the grid
    sets them: use compare.generators / compare.regressors); key overrides like
    generator.n_virtual=500 apply to every generator that has the key.
    """
    overrides = list(overrides)
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if key in ("generator", "regressor"):
            raise UserError(f"'{o}': compare runs a grid; choose it with compare.{key}s=[...] instead")
    base = load_config(overrides)
    gens = list(base.compare.generators)
    regs = list(base.compare.regressors)
    if not gens or not regs:
        raise UserError("compare.generators and compare.regressors must not be empty")
    for name, group in (("compare.generators", gens), ("compare.regressors", regs)):
        if len(set(group)) != len(group):
            raise UserError(f"{name} has duplicates: {group}")
    missing = [r for r in base.compare.curve_regressors if r not in regs]
    if missing:
        raise UserError(f"compare.curve_regressors {missing} must be listed in compare.regressors {regs}")
    gen_cfgs = {g: load_config([*overrides, f"generator={g}"]) for g in gens}
    reg_nodes = {r: load_config([*overrides, f"regressor={r}"]).regressor for r in regs}
    return base, gen_cfgs, reg_nodes


def with_regressor(cfg: DictConfig, regressor: DictConfig) -> DictConfig:
    """A copy of cfg whose regressor group is `regressor`."""
    out = cfg.copy()
    with open_dict(out):
        out.regressor = regressor
    return out


def with_labeler(cfg: DictConfig, **values: object) -> DictConfig:
    """A copy of cfg with labeler keys replaced."""
    out = cfg.copy()
    with open_dict(out):
        for k, v in values.items():
            out.labeler[k] = v
    return out


def honest_protocol(cfg: DictConfig) -> str:
    """The honest protocol of a compare run (protocol=paper is scored honestly with K-fold too)."""
    return "honest_kfold" if cfg.evaluation.protocol == "paper" else cfg.evaluation.protocol


def take(v: VirtualSet, n: int) -> VirtualSet:
    """The first n rows of a virtual set (an iid draw of size n)."""
    return VirtualSet(v.X[:n], None if v.y is None else v.y[:n], None if v.std is None else v.std[:n])


# --------------------------------------------------------------------------------------------
# generation
# --------------------------------------------------------------------------------------------
def generate_labelled(cfg: DictConfig, dev: Dataset, folds: Sequence[Fold], n: int) -> GeneratedSets:
    """Fit cfg.generator on every fold's training rows and on all development rows (one call;
    the VAE trains all of them as one batch), draw n rows each and label them (kriging fitted on
    the same rows) without the variance policy (applied later, per variant)."""
    train_sets = [TrainSet(dev.X[f.train], dev.y[f.train]) for f in folds] + [TrainSet(dev.X, dev.y)]
    t0 = time.perf_counter()
    try:
        generator = build(cfg.generator, "generator", _recursive_=False)
    except Exception as exc:  # e.g. a key override the generator does not accept
        raise UserError(f"generator {cfg.generator.get('name')}: {message(exc)}") from None
    is_none = isinstance(generator, NoGenerator)
    if not is_none:
        generator.n_virtual = n
    virtual = generator.generate(train_sets, cfg.seed)
    labelled = [krige_labels(cfg, v, t) for v, t in zip(virtual, train_sets, strict=True)]
    module = getattr(generator, "module", None)
    history = module.loss_history() if module is not None else {}
    n_main = 0 if is_none else int(cfg.generator.n_virtual)
    return GeneratedSets(str(cfg.generator.get("name", "gen")), labelled[:-1], labelled[-1], n_main, history,
                         time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------
# the grid
# --------------------------------------------------------------------------------------------
def variants(cfg: DictConfig, sets: GeneratedSets) -> list[tuple[str, DictConfig]]:
    """The plain generator plus, for kriging-labelled sets, the kriging-variance variants:
    drop rows above a std quantile, and weight rows by the explained label variance."""
    out = [(sets.name, cfg)]
    if cfg.compare.variance_rows and sets.kriged and sets.n_main > 0:
        q = float(cfg.compare.variance_drop_quantile)
        out.append((f"{sets.name}+drop{100 * q:g}", with_labeler(cfg, drop_variance_quantile=q,
                                                                  variance_weighting=None)))
        out.append((f"{sets.name}+weighted", with_labeler(cfg, drop_variance_quantile=None,
                                                           variance_weighting="explained")))
    return out


def _cell_row(gen: str, reg: str, honest: EvalResult, paper: EvalResult | None) -> dict[str, float | str]:
    row: dict[str, float | str] = {"generator": gen, "regressor": reg}
    for m in TABLE_METRICS:
        row[f"honest_{m}"] = honest.metrics.get(f"val/{m}", np.nan)
    row["n_virtual"] = honest.metrics.get("val/n_virtual", 0.0)
    if paper is not None:
        for m in TABLE_METRICS:
            row[f"paper_{m}"] = paper.metrics.get(f"leaky/{m}", np.nan)
            row[f"diff_{m}"] = row[f"paper_{m}"] - row[f"honest_{m}"]
        row["paper_r2_real_rows"] = paper.metrics.get("leaky/r2_real_rows", np.nan)
        row["paper_test_virtual_share"] = paper.metrics.get("leaky/test_virtual_share", np.nan)
    return row


def compute(base: DictConfig, gen_cfgs: dict[str, DictConfig], reg_nodes: dict[str, DictConfig],
            data: Dataset, log: Log = print) -> CompareResult:
    """Run the whole comparison in memory (no MLflow): grid, curve, KS, fidelity, SHAP."""
    from vaeok.report import fidelity as fid
    from vaeok.report import ks as ks_mod

    cmp = base.compare
    ev = base.evaluation
    paper = ev.protocol == "paper"
    dev, _ = development_rows(base, data)
    folds = inner_folds(dev.n_rows, honest_protocol(base), ev.n_splits, ev.n_repeats, ev.loocv_below, base.seed)
    honest_cfgs = {g: _honest(c) for g, c in gen_cfgs.items()}
    counts = sorted({int(n) for n in cmp.sample_counts})
    seconds: dict[str, float] = {}

    # 1. generate + label once per generator
    generated: dict[str, GeneratedSets] = {}
    for g, cfg in honest_cfgs.items():
        n_max = max([int(cfg.generator.get("n_virtual", 0)), *counts])
        log(f"[compare] generating {g}: {len(folds)} folds + development set, {n_max} virtual rows each")
        generated[g] = generate_labelled(cfg, dev, folds, n_max)
        seconds[f"generate/{g}"] = generated[g].seconds

    # 2. grid: generator (variant) x regressor, honest (+ paper)
    rows, preds, paper_preds = [], {}, {}
    cache: dict[tuple[str, str, int], EvalResult] = {}
    t0 = time.perf_counter()
    for g, sets in generated.items():
        for label, vcfg in variants(honest_cfgs[g], sets):
            for r, node in reg_nodes.items():
                ccfg = with_regressor(vcfg, node)
                honest = score_folds(ccfg, dev, folds, [take(v, sets.n_main) for v in sets.folds])
                if label == g:
                    cache[(g, r, sets.n_main)] = honest
                pres = None
                if paper:
                    pcfg = with_regressor(_paper(gen_cfgs[g], vcfg), node)
                    pres = score_paper(pcfg, dev, [take(sets.dev, sets.n_main)])
                    paper_preds[(label, r)] = pres
                preds[(label, r)] = honest
                rows.append(_cell_row(label, r, honest, pres))
            log(f"[compare] scored {label} x {len(reg_nodes)} regressors")
    cells = with_gain_over_none(pd.DataFrame(rows))
    seconds["grid"] = time.perf_counter() - t0

    # 3. Fig 12 curve: honest R2 vs number of virtual rows (prefixes of the generated sets)
    t0 = time.perf_counter()
    curve_rows, baseline = [], {}
    for r in cmp.curve_regressors:
        ccfg = with_regressor(next(iter(honest_cfgs.values())), reg_nodes[r])
        empty = [take(v, 0) for v in next(iter(generated.values())).folds]
        baseline[r] = score_folds(ccfg, dev, folds, empty).metrics["val/r2"]
        for g, sets in generated.items():
            if sets.n_main == 0 and not any(len(v.X) for v in sets.folds):
                continue
            ccfg = with_regressor(honest_cfgs[g], reg_nodes[r])
            for n in counts:
                if n == 0:
                    r2 = baseline[r]
                else:
                    res = cache.get((g, r, n)) or score_folds(ccfg, dev, folds, [take(v, n) for v in sets.folds])
                    r2 = res.metrics["val/r2"]
                curve_rows.append({"generator": g, "regressor": r, "n_virtual": n, "r2": r2})
    curve = pd.DataFrame(curve_rows, columns=["generator", "regressor", "n_virtual", "r2"])
    seconds["curve"] = time.perf_counter() - t0

    # 4. Table 2: KS test over repeated generations on the development rows
    t0 = time.perf_counter()
    ks_per = {}
    for g, cfg in honest_cfgs.items():
        if generated[g].n_main > 0:
            log(f"[compare] KS test {g}: {cmp.ks_repeats} repeats")
            ks_per[g] = ks_mod.ks_repeats(cfg, dev, int(cmp.ks_repeats))
    ks_table = ks_mod.ks_summary(ks_per)
    seconds["ks"] = time.perf_counter() - t0

    # 5. label fidelity against the oracle (embedded surrogate only)
    fidelity = None
    if base.data.source == "surrogate":
        virtual = {}
        for g, s in generated.items():
            if s.n_main > 0:
                v = take(s.dev, s.n_main)
                virtual[g] = (v.X, v.y)
                for label, vcfg in variants(honest_cfgs[g], s)[1:]:
                    if vcfg.labeler.drop_variance_quantile is not None:
                        kept = apply_variance_policy(vcfg, v)
                        virtual[label] = (kept.X, kept.y)
        fidelity = fid.fidelity_table(dev.X, dev.y, virtual, float(cmp.fidelity_tolerance))

    # 6. SHAP of the final regressor on real + virtual development rows
    shap_res = None
    if cmp.shap:
        t0 = time.perf_counter()
        shap_res = _shap(base, honest_cfgs, generated, reg_nodes, dev, folds, log)
        seconds["shap"] = time.perf_counter() - t0

    return CompareResult(cells, curve, baseline, ks_table, ks_per, fidelity, shap_res, preds, paper_preds,
                         generated, data, dev, base, paper, seconds)


def _honest(cfg: DictConfig) -> DictConfig:
    out = cfg.copy()
    with open_dict(out):
        out.evaluation.protocol = honest_protocol(cfg)
    return out


def _paper(gen_cfg: DictConfig, variant_cfg: DictConfig) -> DictConfig:
    out = variant_cfg.copy()
    with open_dict(out):
        out.evaluation.protocol = gen_cfg.evaluation.protocol
    return out


def _shap(base: DictConfig, cfgs: dict[str, DictConfig], generated: dict[str, GeneratedSets],
          reg_nodes: dict[str, DictConfig], dev: Dataset, folds: Sequence[Fold], log: Log):
    from vaeok.report.shap_report import explain

    cmp = base.compare
    g = cmp.shap_generator
    if g not in generated:
        log(f"[compare] SHAP: generating {g} on the development rows (not in compare.generators)")
        cfg = _honest(load_config([f"generator={g}"]) if g not in cfgs else cfgs[g])
        generated_g = generate_labelled(cfg, dev, [], int(cfg.generator.get("n_virtual", 0)))
    else:
        cfg, generated_g = cfgs[g], generated[g]
    node = reg_nodes.get(cmp.shap_regressor)
    if node is None:
        node = load_config([f"regressor={cmp.shap_regressor}"]).regressor
    rcfg = with_regressor(cfg, node)
    train = TrainSet(dev.X, dev.y)
    virtual = apply_variance_policy(rcfg, take(generated_g.dev, generated_g.n_main))
    model = fit_regressor(rcfg, *augmented(rcfg, train, virtual))
    rng = np.random.default_rng(base.seed)
    idx = rng.permutation(dev.n_rows)[: int(cmp.shap_max_rows)]
    log(f"[compare] SHAP of {cmp.shap_regressor} trained on real + {len(virtual.X)} {g} rows")
    return explain(model, dev.X, dev.X[np.sort(idx)], dev.feature_names, seed=base.seed)


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------
def metric_table(cells: pd.DataFrame, column: str) -> pd.DataFrame:
    """generator x regressor table of one cells column (rows/columns in grid order)."""
    gens = list(dict.fromkeys(cells.generator))
    regs = list(dict.fromkeys(cells.regressor))
    return cells.pivot(index="generator", columns="regressor", values=column).loc[gens, regs]


def with_gain_over_none(cells: pd.DataFrame) -> pd.DataFrame:
    """Add `gain_over_none_r2`: honest R2 minus the same regressor's R2 without augmentation
    (NaN when generator `none` is not in the grid)."""
    none = cells[cells.generator == "none"].set_index("regressor").honest_r2
    return cells.assign(gain_over_none_r2=cells.honest_r2 - cells.regressor.map(none))


def gain_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Honest R2 per generator x regressor with, after each regressor, its gain over `none`."""
    r2, gain = metric_table(cells, "honest_r2"), metric_table(cells, "gain_over_none_r2")
    cols = {}
    for reg in r2.columns:
        cols[reg] = r2[reg]
        cols[f"{reg} gain over none"] = gain[reg]
    return pd.DataFrame(cols)


def audit_table(cells: pd.DataFrame, metric: str = "r2") -> pd.DataFrame:
    """Leakage audit: 'honest / paper (paper - honest)' per generator x regressor cell."""
    h, p = metric_table(cells, f"honest_{metric}"), metric_table(cells, f"paper_{metric}")
    fmt = (lambda v: f"{v:.3f}") if metric == "r2" else (lambda v: f"{v:.1f}")
    return pd.DataFrame(
        [[f"{fmt(h.iloc[i, j])} / {fmt(p.iloc[i, j])} ({p.iloc[i, j] - h.iloc[i, j]:+.3f})"
          if metric == "r2" else f"{fmt(h.iloc[i, j])} / {fmt(p.iloc[i, j])} ({p.iloc[i, j] - h.iloc[i, j]:+.1f})"
          for j in range(h.shape[1])] for i in range(h.shape[0])],
        index=h.index, columns=h.columns)


def to_markdown(df: pd.DataFrame, floatfmt: str = ".4f", index: bool = True) -> str:
    """A GitHub-flavoured Markdown table (no tabulate dependency)."""
    def cell(v: object) -> str:
        if isinstance(v, float | np.floating):
            return "nan" if not np.isfinite(v) else format(v, floatfmt)
        return str(v)

    cols = ([df.index.name or ""] if index else []) + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for idx, row in df.iterrows():
        vals = ([str(idx)] if index else []) + [cell(v) for v in row.to_numpy()]
        lines.append("| " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def tables(result: CompareResult) -> dict[str, pd.DataFrame]:
    """All named tables of a compare run (name -> DataFrame)."""
    out: dict[str, pd.DataFrame] = {}
    for m in TABLE_METRICS:
        out[f"{m}_honest"] = metric_table(result.cells, f"honest_{m}")
        if result.paper:
            out[f"{m}_paper"] = metric_table(result.cells, f"paper_{m}")
            out[f"{m}_paper_minus_honest"] = metric_table(result.cells, f"diff_{m}")
    out["r2_honest_gain_over_none"] = gain_table(result.cells)
    if result.paper:
        out["r2_leakage_audit"] = audit_table(result.cells, "r2")
        out["r2_paper_real_rows_only"] = metric_table(result.cells, "paper_r2_real_rows")
    return out


def winners(result: CompareResult) -> list[str]:
    """Plain-language summary lines: best cell, best generator per regressor, vs no augmentation."""
    c = result.cells
    best = c.loc[c.honest_r2.idxmax()]
    lines = [f"best honest cell: {best.generator} + {best.regressor}  R2 {best.honest_r2:.4f}"]
    for r, g in c.groupby("regressor", sort=False):
        b = g.loc[g.honest_r2.idxmax()]
        ref = g[g.generator == "none"]
        vs = f" (none: {ref.honest_r2.iloc[0]:.4f}, gain {b.gain_over_none_r2:+.4f})" if len(ref) else ""
        lines.append(f"  {r}: best generator {b.generator} R2 {b.honest_r2:.4f}{vs}")
    if result.paper:
        bp = c.loc[c.paper_r2.idxmax()]
        lines.append(f"best paper-protocol cell: {bp.generator} + {bp.regressor}  R2 {bp.paper_r2:.4f} "
                     f"(honest {bp.honest_r2:.4f}, difference {bp.diff_r2:+.4f})")
    return lines


def console_report(result: CompareResult) -> str:
    """The console tables: R2 (honest; with paper and difference if run), KS, SHAP, fidelity."""
    t = tables(result)
    parts = [f"data: {result.data.name} ({result.data.n_rows} rows, {result.dev.n_rows} development rows, "
             f"{result.data.n_features} features); honest protocol: {honest_protocol(result.cfg)}",
             "\nR2, honest (pooled real held-out rows; rows: generator, columns: regressor and its gain "
             "over no augmentation)",
             to_markdown(t["r2_honest_gain_over_none"])]
    parts += ["RMSE, honest", to_markdown(t["rmse_honest"], ".1f")]
    if result.paper:
        parts += ["R2 leakage audit: honest / paper protocol (paper - honest)",
                  to_markdown(t["r2_leakage_audit"])]
    if not result.ks.empty:
        parts += [f"KS test of virtual vs real labels ({result.cfg.compare.ks_repeats} repeats, Table 2)",
                  to_markdown(result.ks, index=False)]
    if result.fidelity is not None:
        parts += ["virtual-label fidelity vs the surrogate oracle (Fig 10 analogue)",
                  to_markdown(result.fidelity, ".3f", index=False)]
    if result.shap is not None:
        parts += [f"SHAP importance ({result.shap.explainer} explainer)",
                  to_markdown(result.shap.importance, ".2f", index=False)]
    parts += winners(result)
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# artifacts
# --------------------------------------------------------------------------------------------
def focus_generator(result: CompareResult) -> str:
    """compare.focus_generator if it ran with virtual rows, else the last generator that did."""
    want = result.cfg.compare.focus_generator
    if want in result.generated and result.generated[want].n_main > 0:
        return want
    with_rows = [g for g, s in result.generated.items() if s.n_main > 0]
    return with_rows[-1] if with_rows else next(iter(result.generated))


def write_artifacts(result: CompareResult, out: Path) -> list[Path]:
    """Write every table (CSV + Markdown) and figure (PNG) under `out`; return the paths."""
    import matplotlib.pyplot as plt

    from vaeok.report import figures as F
    from vaeok.report.fidelity import relative_errors
    from vaeok.report.shap_report import bar_plot, beeswarm_plot
    from vaeok.tracking import plots

    cmp = result.cfg.compare
    tdir, fdir = out / "tables", out / "figures"
    tdir.mkdir(parents=True, exist_ok=True)
    fdir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []

    def table(name: str, df: pd.DataFrame, fmt: str = ".4f", index: bool = True) -> None:
        df.to_csv(tdir / f"{name}.csv", index=index)
        (tdir / f"{name}.md").write_text(to_markdown(df, fmt, index))
        files.extend([tdir / f"{name}.csv", tdir / f"{name}.md"])

    def figure(name: str, fig) -> None:
        F.save(fig, fdir / f"{name}.png")
        files.append(fdir / f"{name}.png")

    for name, df in tables(result).items():
        table(name, df, ".4f" if name.startswith(("r2", "ks")) else ".2f")
    table("cells", result.cells, index=False)
    table("sample_count_curve", result.curve, index=False)
    if not result.ks.empty:
        table("ks_table2", result.ks, index=False)
        pd.concat([df.assign(generator=g) for g, df in result.ks_repeats.items()]).to_csv(
            tdir / "ks_repeats.csv", index=False)
        files.append(tdir / "ks_repeats.csv")
    if result.fidelity is not None:
        table("label_fidelity", result.fidelity, ".3f", index=False)
    if result.shap is not None:
        table("shap_importance", result.shap.importance, ".3f", index=False)
    timing = pd.DataFrame(sorted(result.seconds.items()), columns=["step", "seconds"])
    table("timing", timing, ".2f", index=False)

    target, feats = result.data.target_name, result.dev.feature_names
    dev = result.dev
    # Fig 11
    bars = {"honest (real held-out rows only)": tables(result)["r2_honest"]}
    if result.paper:
        bars["paper protocol (leaky: virtual rows in test folds)"] = tables(result)["r2_paper"]
    figure("fig11_r2_bars", F.r2_bars(bars))
    # Fig 12
    if not result.curve.empty:
        figure("fig12_r2_vs_n_virtual", F.sample_count_curves(result.curve, result.baseline))
    # Fig 13
    focus = focus_generator(result)
    preds = {r: res.predictions for (g, r), res in result.predictions.items() if g == focus}
    figure(f"fig13_pred_vs_true_{focus}", F.predicted_vs_true_grid(
        preds, target, f"{F.gen_label(focus)}: pooled held-out predictions (honest protocol)"))
    if result.paper:
        ppreds = {r: res.predictions for (g, r), res in result.paper_predictions.items() if g == focus}
        figure(f"fig13_pred_vs_true_{focus}_paper_protocol", F.predicted_vs_true_grid(
            ppreds, target, f"{F.gen_label(focus)}: paper protocol (LEAKY; virtual rows reach the test folds)"))
    # Fig 4 / 5 / 9
    figure("fig04_real_data", F.feature_scatter(dev.X, dev.y, feats, target, None,
                                                "Development rows (colour: target)"))
    labelled = {}
    for g, s in result.generated.items():
        if s.n_main == 0:
            continue
        v = take(s.dev, s.n_main)
        figure(f"fig05_virtual_{g}", F.feature_scatter(
            dev.X, dev.y, feats, target, v, f"{F.gen_label(g)}: real vs virtual samples (from all development rows)"))
        labelled[g] = v.y
    if result.generated[focus].n_main > 0:
        s = result.generated[focus]
        figure(f"fig05_counts_{focus}", F.count_panels(dev.X, s.dev, list(cmp.scatter_counts),
                                                       f"{F.gen_label(focus)}: virtual samples by count (PCA view)"))
    if labelled:
        figure("fig09_label_distributions", F.label_distributions(dev.y, labelled, target))
    # Fig 7
    for g, s in result.generated.items():
        if s.loss_history:
            fig = plots.loss_curves(s.loss_history)
            fig.axes[0].set_title(f"{F.gen_label(g)}: VAE training loss (band: spread over fold models)")
            figure(f"fig07_vae_loss_{g}", fig)
    # Fig 10 analogue
    if result.fidelity is not None and result.generated[focus].n_main > 0:
        s = result.generated[focus]
        v = take(s.dev, s.n_main)
        rng = np.random.default_rng(result.cfg.seed)
        pick = rng.choice(len(v.X), min(int(cmp.fidelity_plot_samples), len(v.X)), replace=False)
        from vaeok.data.datasets import surrogate_oracle

        errors = {g: relative_errors(take(gs.dev, gs.n_main).X, take(gs.dev, gs.n_main).y)
                  for g, gs in result.generated.items() if gs.n_main > 0}
        figure("fig10_label_fidelity", F.label_fidelity(surrogate_oracle(v.X[pick]), v.y[pick], errors,
                                                         float(cmp.fidelity_tolerance), focus))
    # Fig 14
    if result.shap is not None:
        title = f"{cmp.shap_regressor.upper()} on real + {F.gen_label(cmp.shap_generator)} rows"
        figure("fig14a_shap_importance", bar_plot(result.shap, target, f"SHAP feature importance: {title}"))
        figure("fig14b_shap_beeswarm", beeswarm_plot(result.shap, target, f"SHAP values per row: {title}"))
    (out / "config.yaml").write_text(to_yaml(result.cfg))
    (out / "summary.md").write_text(console_report(result) + "\n")
    files += [out / "config.yaml", out / "summary.md"]
    plt.close("all")
    return files


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------
@dataclass
class CompareOutcome:
    """A finished `vaeok compare`: results, the artifact directory and the MLflow parent run."""

    result: CompareResult
    files: list[Path]
    out_dir: Path
    run_id: str | None
    wall_seconds: float


def run_compare(overrides: Sequence[str] = (), log: Log = print) -> CompareOutcome:
    """Compose the grid, compute everything, write artifacts and log them to one MLflow parent
    run (with a nested child run per generator x regressor cell)."""
    import tempfile

    t_start = time.perf_counter()
    base, gen_cfgs, reg_nodes = compose_grid(overrides)
    if base.tracking.enabled:
        import mlflow  # importing mlflow resets its log level: before configure_runtime quiets it
    configure_runtime(base.torch_threads)
    data = load_checked_dataset(base)
    out_dir = Path(base.compare.output_dir) if base.compare.output_dir else Path(tempfile.mkdtemp(prefix="vaeok-cmp-"))

    def work() -> tuple[CompareResult, list[Path]]:
        with threadpool_limits(limits=1):  # tiny matrices: thread start-up costs more than it saves
            result = compute(base, gen_cfgs, reg_nodes, data, log)
        result.seconds["total_compute"] = time.perf_counter() - t_start
        return result, write_artifacts(result, out_dir)

    if not base.tracking.enabled:
        result, files = work()
        return CompareOutcome(result, files, out_dir, None, time.perf_counter() - t_start)

    from vaeok.experiment import run_tags
    from vaeok.tracking import runs as tracking

    exp_id = tracking.setup(base.tracking)
    tags = {**run_tags(base, data), "kind": "compare", "generator": ",".join(gen_cfgs),
            "regressor": ",".join(reg_nodes)}
    name = f"compare-{data.name.split(' ')[0]}-{base.evaluation.protocol}"
    with tracking.run(exp_id, name, tags) as parent:
        result, files = work()
        for row in result.cells.to_dict("records"):
            gen, reg = row.pop("generator"), row.pop("regressor")
            ctags = {**tags, "generator": gen, "regressor": reg, "kind": "compare-cell"}
            with tracking.run(exp_id, f"{gen}-{reg}", ctags, nested=True, parent_run_id=parent.info.run_id) as child:
                metrics = {_metric_key(k): v for k, v in row.items() if np.isfinite(v)}
                tracking.log_batch(child.info.run_id, metrics=metrics,
                                   params={"generator": gen, "regressor": reg})
        wall = time.perf_counter() - t_start
        summary = {"compare/wall_seconds": wall, "compare/best_honest_r2": float(result.cells.honest_r2.max())}
        for k, v in result.seconds.items():
            summary[f"time/{k.replace('/', '_')}"] = v
        if result.paper:
            summary["compare/best_paper_r2"] = float(result.cells.paper_r2.max())
        for g, df in result.ks_repeats.items():
            if not df.empty:
                summary[f"ks/{g}/mean"] = float(df.ks.mean())
                summary[f"ks/{g}/p_mean"] = float(df.p_value.mean())
        if result.fidelity is not None:
            share = next(c for c in result.fidelity.columns if c.startswith("share_within"))
            for rec in result.fidelity.to_dict("records"):
                summary[f"fidelity/{rec['labels'].split(' ')[0]}/{share}"] = rec[share]
        if result.shap is not None:
            for rec in result.shap.importance.to_dict("records"):
                summary[f"shap/{rec['feature']}/mean_abs"] = rec["mean_abs_shap"]
        summary = {re.sub(r"[^\w\-. :/]", "_", k): v for k, v in summary.items()}
        tracking.log_batch(parent.info.run_id, metrics=summary, params={
            "compare.generators": ",".join(gen_cfgs), "compare.regressors": ",".join(reg_nodes),
            "evaluation.protocol": base.evaluation.protocol, "seed": str(base.seed),
            "compare.ks_repeats": str(base.compare.ks_repeats),
            "compare.sample_counts": ",".join(map(str, base.compare.sample_counts))})
        mlflow.log_artifacts(str(out_dir))
        run_id = parent.info.run_id
    return CompareOutcome(result, files, out_dir, run_id, time.perf_counter() - t_start)


def _metric_key(column: str) -> str:
    """cells column -> MLflow metric name (honest_r2 -> val/r2, paper_r2 -> leaky/r2, ...)."""
    for prefix, new in (("honest_", "val/"), ("paper_", "leaky/"), ("diff_", "audit/paper_minus_honest_")):
        if column.startswith(prefix):
            return new + column.removeprefix(prefix)
    return f"cell/{column}"
