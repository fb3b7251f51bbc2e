"""Selecting a config from out-of-fold (OOF) predictions, and estimating what the selection is worth.

Pure numpy/scipy; every random step takes an explicit seed, so the same inputs and seed give the
same numbers. Shapes: ``y`` is (n,), ``P`` is the OOF prediction matrix (n rows x k configs), each
column the pooled held-out predictions of one config on the same n rows.

* `paired_bootstrap`: P(config a has the higher R2 than b) and a percentile CI of the R2 difference,
  resampling the same rows for both (paired).
* `one_se_choice`: prefer a designated simple/default candidate unless the best candidate beats it
  by more than one paired-bootstrap standard error of the R2 difference.
* `ensemble_weights`: greedy forward ensemble selection with replacement (Caruana et al. 2004, as in
  auto-sklearn), integer weights per config.
* `bbc_cv`: bootstrap bias-corrected CV (Tsamardinos et al. 2018): bootstrap the rows, apply the
  selection rule on the in-bag rows, score its choice on the out-of-bag rows (pooled R2). The
  rule is a parameter, so the estimate corrects for exactly the selection that is made.

A selection rule is any ``rule(y, P) -> weights`` (length k, non-negative, not all zero); the
prediction of the selected model is ``P @ w / w.sum()``. `argmax_rule`, `one_se_rule` and
`ensemble_rule` build the three rules used by the study.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Rule = Callable[[np.ndarray, np.ndarray], np.ndarray]


def r2_score_columns(y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """R2 of each column of P (n x k) against y (n,); -inf-free: a constant y gives 0 for exact fits."""
    y = np.asarray(y, dtype=float)
    P = np.asarray(P, dtype=float)
    P2 = P[:, None] if P.ndim == 1 else P
    ss_res = ((P2 - y[:, None]) ** 2).sum(axis=0)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    if ss_tot == 0.0:
        out = np.where(ss_res == 0.0, 0.0, -np.inf)
    else:
        out = 1.0 - ss_res / ss_tot
    return out[0] if P.ndim == 1 else out


def _boot_r2(y: np.ndarray, P: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """R2 of every column on every bootstrap sample: idx (B x m) row indices -> (B x k)."""
    yb = y[idx]                                    # B x m
    Pb = P[idx]                                    # B x m x k
    ss_res = ((Pb - yb[:, :, None]) ** 2).sum(axis=1)
    ss_tot = ((yb - yb.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    ss_tot = np.where(ss_tot > 0, ss_tot, np.nan)  # a resample with one distinct label has no R2
    return 1.0 - ss_res / ss_tot[:, None]


def _check(y: np.ndarray, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float).reshape(-1)
    P = np.asarray(P, dtype=float)
    if P.ndim == 1:
        P = P[:, None]
    if P.shape[0] != len(y):
        raise ValueError(f"P has {P.shape[0]} rows, y has {len(y)}")
    if len(y) < 3:
        raise ValueError("need at least 3 rows")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(P))):
        raise ValueError("y and P must be finite")
    return y, P


@dataclass(frozen=True)
class PairedComparison:
    """Paired bootstrap of R2(a) - R2(b) on the same rows."""

    diff: float          # R2(a) - R2(b) on all rows
    p_a_better: float    # share of resamples with R2(a) > R2(b) (ties count one half)
    ci_low: float
    ci_high: float
    se: float            # bootstrap standard deviation of the difference


def paired_bootstrap(y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, n_boot: int = 2000,
                     seed: int = 0, level: float = 0.95) -> PairedComparison:
    """Paired bootstrap of two prediction vectors on the same rows: P(a better) and a percentile CI."""
    y, P = _check(y, np.column_stack([pred_a, pred_b]))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), size=(n_boot, len(y)))
    r = _boot_r2(y, P, idx)
    d = r[:, 0] - r[:, 1]
    d = d[np.isfinite(d)]
    full = r2_score_columns(y, P)
    alpha = (1.0 - level) / 2.0
    return PairedComparison(
        diff=float(full[0] - full[1]),
        p_a_better=float(np.mean(d > 0) + 0.5 * np.mean(d == 0)),
        ci_low=float(np.quantile(d, alpha)),
        ci_high=float(np.quantile(d, 1.0 - alpha)),
        se=float(np.std(d, ddof=1)) if len(d) > 1 else 0.0,
    )


def one_hot(k: int, i: int) -> np.ndarray:
    """Weight vector selecting config i of k."""
    w = np.zeros(k, dtype=int)
    w[i] = 1
    return w


def one_se_choice(y: np.ndarray, P: np.ndarray, default: int | Sequence[int], n_boot: int = 300,
                  seed: int = 0) -> int:
    """Index of the chosen config: the best column if it beats the default candidate by more than
    one paired-bootstrap SE of their R2 difference, else the default.

    `default` may be several indices: the best-scoring of them is the default candidate.
    """
    y, P = _check(y, P)
    r = r2_score_columns(y, P)
    defaults = [default] if isinstance(default, (int, np.integer)) else list(default)
    d = max(defaults, key=lambda i: r[i])
    best = int(np.argmax(r))
    if best == d:
        return d
    cmp = paired_bootstrap(y, P[:, best], P[:, d], n_boot=n_boot, seed=seed)
    return best if cmp.diff > cmp.se else int(d)


def ensemble_weights(y: np.ndarray, P: np.ndarray, n_iter: int = 50, top_k: int | None = None) -> np.ndarray:
    """Greedy forward selection with replacement (Caruana et al. 2004): integer weights summing to n_iter.

    Each step adds the config whose inclusion gives the ensemble mean with the lowest squared
    error on the OOF rows (= highest R2); ties go to the lower index. `top_k` restricts the library
    to the k configs with the best individual R2. Deterministic.
    """
    y, P = _check(y, P)
    k = P.shape[1]
    allowed = np.arange(k)
    if top_k is not None and top_k < k:
        allowed = np.sort(np.argsort(-r2_score_columns(y, P), kind="stable")[:top_k])
    w = np.zeros(k, dtype=int)
    total = np.zeros(len(y))
    for step in range(1, n_iter + 1):
        cand = (total[:, None] + P[:, allowed]) / step
        err = ((cand - y[:, None]) ** 2).sum(axis=0)
        j = allowed[int(np.argmin(err))]
        w[j] += 1
        total += P[:, j]
    return w


def argmax_rule() -> Rule:
    """Raw selection: the config with the best OOF R2."""
    def rule(y: np.ndarray, P: np.ndarray) -> np.ndarray:
        return one_hot(P.shape[1], int(np.argmax(r2_score_columns(y, P))))
    return rule


def one_se_rule(default: int | Sequence[int], n_boot: int = 300, seed: int = 0) -> Rule:
    """One-SE selection toward `default` (see `one_se_choice`)."""
    def rule(y: np.ndarray, P: np.ndarray) -> np.ndarray:
        return one_hot(P.shape[1], one_se_choice(y, P, default, n_boot=n_boot, seed=seed))
    return rule


def ensemble_rule(n_iter: int = 50, top_k: int | None = None) -> Rule:
    """Greedy ensemble selection (see `ensemble_weights`)."""
    def rule(y: np.ndarray, P: np.ndarray) -> np.ndarray:
        return ensemble_weights(y, P, n_iter=n_iter, top_k=top_k)
    return rule


def combine(P: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Predictions of the selected model: the weighted mean of the columns of P."""
    w = np.asarray(w, dtype=float)
    if w.shape != (np.shape(P)[1],) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be non-negative, one per column, not all zero")
    return np.asarray(P, dtype=float) @ w / w.sum()


@dataclass(frozen=True)
class BBCResult:
    """Bootstrap bias-corrected CV estimate of the R2 of `rule` applied to the pool."""

    estimate: float      # mean out-of-bag R2 of the in-bag selection
    ci_low: float
    ci_high: float
    apparent: float      # R2 of the rule's choice on all rows (the optimistic number)
    n_boot: int


def bbc_cv(y: np.ndarray, P: np.ndarray, rule: Rule | None = None, n_boot: int = 500, seed: int = 0,
           level: float = 0.95) -> BBCResult:
    """BBC-CV (Tsamardinos et al. 2018): per bootstrap of the rows, select with `rule` on the in-bag
    rows and score the selection on the out-of-bag rows.

    The score is a pooled R2, as the CV and outer scores are: the out-of-bag squared errors of all
    bootstraps summed, over their squared deviations from the mean of all n labels summed. (An R2
    per out-of-bag set, each against its own mean, is far too pessimistic when the set has ~6
    rows.) The CI is the percentile interval of the per-bootstrap values on the same scale.
    Bootstraps with fewer than 3 out-of-bag rows are skipped.
    """
    y, P = _check(y, P)
    rule = rule or argmax_rule()
    n = len(y)
    ref = float(y.mean())
    rng = np.random.default_rng(seed)
    sse, sst = [], []
    for _ in range(n_boot):
        inb = rng.integers(0, n, size=n)
        oob = np.setdiff1d(np.arange(n), inb)
        if len(oob) < 3 or np.ptp(y[inb]) == 0:
            continue
        w = rule(y[inb], P[inb])
        sse.append(float(((combine(P[oob], w) - y[oob]) ** 2).sum()))
        sst.append(float(((y[oob] - ref) ** 2).sum()))
    if not sse:
        raise ValueError("no usable bootstrap sample (too few rows)")
    e, t = np.asarray(sse), np.asarray(sst)
    per = 1.0 - e[t > 0] / t[t > 0]
    alpha = (1.0 - level) / 2.0
    apparent = float(r2_score_columns(y, combine(P, rule(y, P))))
    return BBCResult(float(1.0 - e.sum() / t.sum()), float(np.quantile(per, alpha)),
                     float(np.quantile(per, 1 - alpha)), apparent, len(e))


def cv_corrected(y: np.ndarray, P: np.ndarray, rule: Rule | None = None, n_splits: int = 5, n_repeats: int = 10,
                 seed: int = 0, level: float = 0.95, n_boot: int = 1000) -> BBCResult:
    """Selection-corrected R2 by cross-validating the selection rule over the OOF rows.

    Per repeat, the rows are split into `n_splits` folds; the rule selects on the other folds' rows
    and its choice predicts the fold's rows, so no row's prediction was chosen with that row. The
    estimate is the pooled R2 averaged over repeats; the CI is a percentile bootstrap of the rows
    of the repeat-averaged predictions. It selects on (k-1)/k of the rows where BBC-CV's in-bag
    sample holds ~63 % distinct rows, so it is less pessimistic on small data (measured in
    benchmarks/selection.py).
    """
    y, P = _check(y, P)
    rule = rule or argmax_rule()
    n = len(y)
    k = max(2, min(n_splits, n // 2))
    rng = np.random.default_rng(seed)
    preds = np.empty((n_repeats, n))
    for r in range(n_repeats):
        folds = np.array_split(rng.permutation(n), k)
        for test in folds:
            train = np.setdiff1d(np.arange(n), test)
            preds[r, test] = combine(P[test], rule(y[train], P[train]))
    per_repeat = r2_score_columns(y, preds.T)
    mean_pred = preds.mean(axis=0)
    idx = rng.integers(0, n, size=(n_boot, n))
    boot = _boot_r2(y, mean_pred[:, None], idx)[:, 0]
    boot = boot[np.isfinite(boot)]
    alpha = (1.0 - level) / 2.0
    apparent = float(r2_score_columns(y, combine(P, rule(y, P))))
    return BBCResult(float(np.mean(per_repeat)), float(np.quantile(boot, alpha)), float(np.quantile(boot, 1 - alpha)),
                     apparent, n_repeats)
