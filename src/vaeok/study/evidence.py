"""What a study's trials say about the config to promote, and how much to trust it.

Every COMPLETE trial stores its out-of-fold (OOF) predictions on the same development rows
(`OOF_ATTR`). From that matrix the study's selection rule picks a model (one trial, or a weighted
ensemble of trials); cross-validating the rule itself over the OOF rows (`selection.cv_corrected`)
estimates the R² of *that selection procedure* without selection optimism (BBC-CV,
`selection.bbc_cv`, is logged beside it: on 16-69-row data sets it was the more pessimistic of the
two, see benchmarks/selection.md), and a paired bootstrap compares the selection with the best
no-augmentation reference on the same rows. `vaeok sweep` prints and logs it; `vaeok
promote` acts on it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from vaeok.core.errors import UserError
from vaeok.study import baseline, selection
from vaeok.study.spec import DEFAULT_RULE, RULES

OOF_ATTR = "oof"  # trial user attribute: out-of-fold prediction per development row
OOF_Y_ATTR = "oof_y"  # study user attribute: the development rows' targets, in the same order


@dataclass(frozen=True)
class Candidate:
    """A COMPLETE, distinct trial with its OOF predictions."""

    number: int
    role: str
    params: dict[str, Any]
    value: float  # the trial's objective (CV R²)
    oof: np.ndarray


@dataclass(frozen=True)
class Evidence:
    """The selection a study supports and its honest estimate."""

    rule: str
    y: np.ndarray
    candidates: list[Candidate]
    weights: np.ndarray  # one per candidate; one-hot for a single trial
    corrected: selection.BBCResult  # cross-validated selection (the reported corrected R²)
    bbc: selection.BBCResult  # BBC-CV of the same rule (a second, more pessimistic estimate)
    raw_best: Candidate  # the best single trial by CV R² (what an unguarded search reports)
    baseline: Candidate | None  # the best no-augmentation reference
    vs_baseline: selection.PairedComparison | None

    @property
    def members(self) -> list[tuple[Candidate, float]]:
        """(candidate, weight share) of the selection, largest share first."""
        total = float(self.weights.sum())
        out = [(c, float(w) / total) for c, w in zip(self.candidates, self.weights) if w > 0]
        return sorted(out, key=lambda m: (-m[1], m[0].number))

    @property
    def oof(self) -> np.ndarray:
        """OOF predictions of the selection (weighted mean of its members')."""
        return selection.combine(np.column_stack([c.oof for c in self.candidates]), self.weights)

    @property
    def apparent_r2(self) -> float:
        """R² of the selection's OOF predictions on all rows: optimistic (the rows chose it)."""
        return float(selection.r2_score_columns(self.y, self.oof))

    def describe(self) -> str:
        """'trial 7' or 'ensemble of trials 3 (60 %), 7 (40 %)'."""
        ms = self.members
        if len(ms) == 1:
            return f"trial {ms[0][0].number}" + (f" ({ms[0][0].role})" if ms[0][0].role else "")
        return "ensemble of trials " + ", ".join(f"{c.number} ({w:.0%})" for c, w in ms)


def candidates(study: optuna.Study) -> tuple[np.ndarray, list[Candidate]]:
    """The development targets and every distinct COMPLETE trial that stored OOF predictions."""
    y = study.user_attrs.get(OOF_Y_ATTR)
    out: list[Candidate] = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        oof = t.user_attrs.get(OOF_ATTR)
        if "duplicate_of" in t.user_attrs or oof is None or y is None or len(oof) != len(y):
            continue
        if not np.all(np.isfinite(oof)):
            continue
        out.append(Candidate(t.number, t.user_attrs.get(baseline.ROLE, ""), dict(t.params), float(t.values[0]),
                             np.asarray(oof, dtype=float)))
    return np.asarray(y if y is not None else [], dtype=float), out


def make_rule(name: str, pool: list[Candidate], seed: int = 0) -> selection.Rule:
    """The named selection rule over `pool`.

    - best: the trial with the highest OOF R²;
    - one_se: the best no-augmentation reference (or the paper default) unless another trial
      beats it by more than one paired-bootstrap standard error;
    - ensemble: greedy ensemble selection (Caruana et al. 2004) over all trials.
    """
    if name == "best":
        return selection.argmax_rule()
    if name == "one_se":
        anchors = [i for i, c in enumerate(pool) if baseline.is_baseline(c.role) or c.role == baseline.PAPER_DEFAULT]
        return selection.one_se_rule(anchors or [0], seed=seed)
    if name == "ensemble":
        return selection.ensemble_rule()
    if name.startswith("fixed:"):  # a trial chosen by hand: no selection to correct for
        number = int(name.split(":", 1)[1])
        index = next((i for i, c in enumerate(pool) if c.number == number), None)
        if index is None:
            raise UserError(f"trial {number} is not a completed trial with out-of-fold predictions")
        return lambda y, P: selection.one_hot(P.shape[1], index)
    raise UserError(f"selection rule must be one of {', '.join(RULES)}, got '{name}'")


def decide(study: optuna.Study, rule: str = DEFAULT_RULE, n_boot: int = 500, seed: int = 0) -> Evidence | None:
    """The study's selection under `rule`, its corrected estimate (and BBC-CV) and its comparison
    with the best no-augmentation reference; None when no trial stored OOF predictions (e.g. the
    paper protocol, or a study from before OOF predictions were stored)."""
    y, pool = candidates(study)
    if not pool or len(y) < 3:
        return None
    P = np.column_stack([c.oof for c in pool])
    chooser = make_rule(rule, pool, seed)
    weights = np.asarray(chooser(y, P))
    corrected = selection.cv_corrected(y, P, chooser, seed=seed)
    bbc = selection.bbc_cv(y, P, chooser, n_boot=n_boot, seed=seed)
    r2 = selection.r2_score_columns(y, P)
    raw_best = pool[int(np.argmax(r2))]
    bases = [i for i, c in enumerate(pool) if baseline.is_baseline(c.role)]
    base = pool[max(bases, key=lambda i: r2[i])] if bases else None
    ev = Evidence(rule, y, pool, weights, corrected, bbc, raw_best, base, None)
    if base is None:
        return ev
    return dataclasses.replace(ev, vs_baseline=selection.paired_bootstrap(y, ev.oof, base.oof, seed=seed))


def summary_metrics(ev: Evidence) -> dict[str, float]:
    """Metrics of the study parent run (and of a promote run)."""
    out = {
        "selection/corrected_r2": ev.corrected.estimate,
        "selection/corrected_r2_ci_low": ev.corrected.ci_low,
        "selection/corrected_r2_ci_high": ev.corrected.ci_high,
        "selection/apparent_r2": ev.apparent_r2,
        "selection/bbc_r2": ev.bbc.estimate,
        "selection/raw_best_cv_r2": float(selection.r2_score_columns(ev.y, ev.raw_best.oof)),
        "selection/n_members": float(len(ev.members)),
        "selection/n_candidates": float(len(ev.candidates)),
    }
    if ev.vs_baseline is not None:
        out.update({"selection/p_better_than_baseline": ev.vs_baseline.p_a_better,
                    "selection/gain_over_baseline": ev.vs_baseline.diff,
                    "selection/gain_ci_low": ev.vs_baseline.ci_low,
                    "selection/gain_ci_high": ev.vs_baseline.ci_high})
    return out


def summary_lines(ev: Evidence) -> list[str]:
    """The honest picture in a few console lines."""
    c = ev.corrected
    lines = [f"selection ({ev.rule} rule over {len(ev.candidates)} distinct trials): {ev.describe()}",
             f"  corrected R2 {c.estimate:.4f} (95% CI {c.ci_low:.4f} .. {c.ci_high:.4f}; the rule cross-validated "
             f"over the rows, {c.n_boot} repeats; BBC-CV {ev.bbc.estimate:.4f})",
             f"  raw best trial CV R2 {float(selection.r2_score_columns(ev.y, ev.raw_best.oof)):.4f} (optimistic: "
             "chosen on the same rows)"]
    if ev.vs_baseline is not None and ev.baseline is not None:
        b = ev.vs_baseline
        lines.append(f"  vs best no-augmentation reference (trial {ev.baseline.number}, {ev.baseline.role}): "
                     f"P(better) {b.p_a_better:.2f}, R2 difference {b.diff:+.4f} (95% CI {b.ci_low:+.4f} .. "
                     f"{b.ci_high:+.4f})")
    return lines
