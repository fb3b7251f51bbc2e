"""End-of-study artifacts: Optuna plots, Fig 8-style one-at-a-time curves, best config, top table."""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING, Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from vaeok.config.compose import load_config, to_yaml
from vaeok.study import baseline, evidence
from vaeok.study.spec import StudySpec
from vaeok.tracking import runs as tracking

if TYPE_CHECKING:  # the plotting stack is imported only when figures are made
    import matplotlib.pyplot as plt

# Contour and slice plots show only the most important parameters: a contour of all 8 searched
# parameters is 64 subplots (27 s of a 5-trial sweep under cProfile, and illegible).
CONTOUR_PARAMS = 3
SLICE_PARAMS = 4


def top_trials(study: optuna.Study, k: int = 10) -> list[optuna.trial.FrozenTrial]:
    """Best completed trials: by value; for several objectives the Pareto front ordered by the first
    objective (so `top_trials(study, 1)` is the trial best_config.yaml and `vaeok promote` use).
    Trials that only repeated an earlier trial's parameters (`duplicate_of`) are left out."""
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    if len(study.directions) > 1:
        done = study.best_trials
    else:
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    done = [t for t in done if "duplicate_of" not in t.user_attrs]
    return sorted(done, key=lambda t: t.values[0], reverse=maximize)[:k]


def trials_frame(study: optuna.Study, spec: StudySpec) -> pd.DataFrame:
    """`study.trials_dataframe()` as reports show it, one row per trial: number, role, state,
    objective value(s) named by metric, params, duration, MLflow run id and error."""
    value = "values" if spec.multi_objective else "value"
    raw = study.trials_dataframe(attrs=("number", value, "duration", "params", "user_attrs", "state"))
    if raw.empty:
        return pd.DataFrame(columns=["trial", "role", "state", *spec.metrics, "seconds", "mlflow_run_id", "error"])
    attr = lambda name: raw.get(f"user_attrs_{name}", pd.Series([None] * len(raw)))  # noqa: E731
    role = attr(baseline.ROLE).fillna("")
    dup = attr("duplicate_of")
    role = role.where(dup.isna(), "= trial " + dup.astype("Int64").astype(str))
    out = pd.DataFrame({"trial": raw["number"], "role": role, "state": raw["state"]})
    # Optuna names the columns value / values_<i>, or value_<name> / values_<name> once
    # study.set_metric_names was called; in objective order either way
    values = [c for c in raw if c == value or c.startswith(f"{value}_")]
    for metric, col in zip(spec.metrics, values):
        out[metric] = raw[col]
    for col in (c for c in raw if c.startswith("params_")):
        out[col.removeprefix("params_")] = raw[col].astype(object).where(raw[col].notna(), "null")
    out["seconds"] = raw["duration"].dt.total_seconds()
    out["mlflow_run_id"] = attr("mlflow_run_id")
    out["error"] = attr("error")
    return out


def format_top(study: optuna.Study, spec: StudySpec, k: int = 10) -> str:
    """Console table of the best finished trials, then the baseline and paper-default rows (if not
    among them) and the best trial's gain over the baseline."""
    top = top_trials(study, k)
    if not top:
        return "no completed trials"
    df = trials_frame(study, spec).set_index("trial")
    refs = baseline.references(study, spec)
    shown = [t.number for t in top]
    shown += [r.trial for r in refs.values() if r.trial is not None and r.trial not in shown]
    df = df.loc[shown]
    df.index = df.index.astype(str)
    sep = refs.get(baseline.BASELINE)
    if sep is not None and sep.trial is None:  # run outside the search space
        row = pd.DataFrame([{"role": "baseline (generator=none, own run)",
                             **dict(zip(spec.metrics, sep.values))}], index=["-"])
        df = pd.concat([df, row])
    cols = ["role", *spec.metrics, *[p.key for p in spec.space], "seconds"]
    df = df[[c for c in cols if c in df.columns]].fillna("")
    df.index.name = "trial"
    text = df.to_string(float_format=lambda v: f"{v:.4g}")
    gain = baseline.summary_metrics(study, spec, top[0]).get("gain_over_baseline")
    base_ref = refs.get(baseline.BASELINE)
    if base_ref is not None and base_ref.trial == top[0].number:
        text += (f"\nthe best trial is the no-augmentation baseline (trial {top[0].number}): no augmented "
                 "trial beat it")
    elif gain is not None:
        verdict = "better than" if gain > 0 else ("no better than" if gain == 0 else "WORSE than")
        text += (f"\nbest trial {top[0].number} is {verdict} the best no-augmentation reference: "
                 f"gain {gain:+.4f} ({spec.metrics[0]}; optimistic: the trials were chosen on these rows)")
    ev = study_evidence(study, spec)
    if ev is not None:
        text += "\n" + "\n".join(evidence.summary_lines(ev))
        text += f"\npromote it with:  vaeok promote --study {study.study_name}"
    return text


def study_evidence(study: optuna.Study, spec: StudySpec) -> evidence.Evidence | None:
    """The study's selection under its spec's rule (single-objective studies only).

    Memoised on the study's finished trials: the end of a sweep logs it and prints it."""
    if spec.multi_objective:
        return None
    rule = spec.selection.get("rule", evidence.DEFAULT_RULE)
    key = (id(study), study.study_name, rule,
           tuple((t.number, t.state, tuple(t.values or ())) for t in study.get_trials(deepcopy=False)))
    if _EVIDENCE.get("key") != key:
        _EVIDENCE.update(key=key, value=evidence.decide(study, rule))
    return _EVIDENCE["value"]


_EVIDENCE: dict[str, Any] = {}


def best_config_yaml(study: optuna.Study, spec: StudySpec) -> str | None:
    """The fully resolved config of the best trial (first Pareto trial if multi-objective)."""
    top = top_trials(study, 1)
    if not top:
        return None
    return to_yaml(load_config(top[0].user_attrs["overrides"]))


class _Precomputed(optuna.importance.BaseImportanceEvaluator):
    """Importance "evaluator" returning values computed once (the plot would compute them again)."""

    def __init__(self, importances: dict[str, float]) -> None:
        self.importances = importances

    def evaluate(self, study: optuna.Study, params: list[str] | None = None, *, target: Any = None) -> dict[str, float]:
        return {k: v for k, v in self.importances.items() if params is None or k in params}


def param_importances(study: optuna.Study, target: Any = None) -> tuple[optuna.Study | None, dict[str, float]]:
    """fANOVA importances of the searched parameters, most important first, and the study they
    were computed on.

    In a conditional space (the VAE knobs exist only when generator=vae_ok) Optuna ranks only the
    parameters present in every trial, i.e. `generator` alone. So the ranking is computed on the
    largest group of completed trials sharing the widest parameter set (its varying parameters).
    Empty when it cannot be computed (too few trials)."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    groups: dict[tuple[str, ...], list[optuna.trial.FrozenTrial]] = {}
    for t in done:
        groups.setdefault(tuple(sorted(t.params)), []).append(t)
    usable = [ts for ts in groups.values() if len(ts) >= 2]
    if not usable:
        return None, {}
    branch = max(usable, key=lambda ts: (len(ts[0].params), len(ts)))
    order = list(dict.fromkeys(k for t in done for k in t.params))
    varying = [k for k in order if k in branch[0].params and len({repr(t.params[k]) for t in branch}) > 1]
    if not varying:
        return None, {}
    sub = optuna.create_study(directions=study.directions)
    sub.add_trials(branch)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return sub, dict(optuna.importance.get_param_importances(sub, params=varying, target=target))
    except Exception:  # e.g. a degenerate objective
        return None, {}


def ranked_params(study: optuna.Study, importances: dict[str, float]) -> list[str]:
    """The study's parameters, the ranked ones first, the others in the order first seen."""
    seen = dict.fromkeys(k for t in study.get_trials(deepcopy=False) for k in t.params)
    return [*importances, *(k for k in seen if k not in importances)]


def _grid_size(n: int, cell: float, extra: tuple[float, float] = (1.5, 1.0)) -> tuple[float, float]:
    return (cell * n + extra[0], cell * n + extra[1])


def _figures(study: optuna.Study, spec: StudySpec) -> dict[str, plt.Figure]:
    import matplotlib

    matplotlib.use("Agg")
    import optuna.visualization.matplotlib as vis

    target = (lambda t: t.values[0]) if spec.multi_objective else None
    name = spec.metrics[0]
    branch, importances = param_importances(study, target)
    top = ranked_params(study, importances)
    slice_keys, contour_keys = top[:SLICE_PARAMS], top[:CONTOUR_PARAMS]
    makers = {
        "optimization_history": lambda: vis.plot_optimization_history(study, target=target, target_name=name),
        "slice": lambda: vis.plot_slice(study, params=slice_keys or None, target=target, target_name=name),
        "intermediate_values": lambda: vis.plot_intermediate_values(study),
    }
    if branch is not None:  # computed once above (fANOVA is the costly part of this plot)
        makers["param_importances"] = lambda: vis.plot_param_importances(
            branch, evaluator=_Precomputed(importances), params=list(importances), target=target, target_name=name)
    sizes = {"slice": (3.6 * max(len(slice_keys), 1) + 1.5, 4.8), "contour": _grid_size(len(contour_keys), 3.4),
             "param_importances": (9, 1.2 + 0.45 * max(len(importances), 1))}
    if len(spec.space) >= 2 and len(contour_keys) >= 2:
        makers["contour"] = lambda: vis.plot_contour(study, params=contour_keys, target=target, target_name=name)
    if spec.multi_objective:
        makers["pareto_front"] = lambda: vis.plot_pareto_front(study, target_names=spec.metrics)
    out = {}
    for key, make in makers.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ax = make()
            except Exception:  # too few trials for this plot; skip it
                continue
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        fig.set_size_inches(*sizes.get(key, (max(fig.get_size_inches()[0], 7), max(fig.get_size_inches()[1], 5))))
        if key in ("slice", "contour"):  # their colorbar took its space at creation: no tight_layout
            _legible(fig, key)
        else:
            fig.tight_layout()
        out[key] = fig
    oat = one_at_a_time_figure(study, spec)
    if oat is not None:
        out["fig8_one_at_a_time"] = oat
    return out


def _legible(fig: plt.Figure, key: str) -> None:
    """Small tick labels, rotated x ticks, and a title naming the subset shown."""
    for ax in fig.axes:
        ax.tick_params(labelsize=7)
        for label in ax.get_xticklabels():
            label.set_rotation(30)
            label.set_horizontalalignment("right")
        ax.xaxis.label.set_size(8)
        ax.yaxis.label.set_size(8)
    n = CONTOUR_PARAMS if key == "contour" else SLICE_PARAMS
    fig.suptitle(f"{key.capitalize()} plot: the {n} most important searched keys (fANOVA)", fontsize=10)
    if key == "slice":
        fig.subplots_adjust(bottom=0.2, top=0.88)


def one_at_a_time_figure(study: optuna.Study, spec: StudySpec) -> plt.Figure | None:
    """Fig 8-style curves: objective vs each parameter, the others at their defaults."""
    import matplotlib.pyplot as plt

    defaults = study.user_attrs.get("oat_defaults")
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not defaults or not trials:
        return None
    keys = [p.key for p in spec.space]

    def on_axis(t: optuna.trial.FrozenTrial, key: str) -> bool:  # all other knobs at their defaults
        return all(t.params.get(k) == v for k, v in defaults.items() if k != key)

    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        pts = sorted((t.params[key], t.values[0]) for t in trials if on_axis(t, key))
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, "o-")
            best = max(pts, key=lambda p: p[1]) if spec.directions[0] == "maximize" else min(pts, key=lambda p: p[1])
            ax.plot(*best, "r*", ms=14, label=f"best {best[0]:g}")
            ax.axvline(defaults[key], color="grey", ls=":", lw=1, label=f"default {defaults[key]:g}")
            ax.legend()
        ax.set_xlabel(key)
        ax.set_ylabel(f"held-out {spec.metrics[0]}")
        ax.set_title(f"vary {key}")
        ax.grid(alpha=0.3)
    fig.suptitle("One-at-a-time sweeps (paper Fig 8): others at default values")
    fig.tight_layout()
    return fig


def log_study_artifacts(study: optuna.Study, spec: StudySpec, parent_id: str) -> None:
    """Log plots, best_config.yaml and the trials table to the study's parent run."""
    import matplotlib.pyplot as plt
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    df = trials_frame(study, spec)
    if not df.empty:
        buf = io.StringIO()
        df.to_csv(buf, index=False)
        client.log_text(parent_id, buf.getvalue(), "trials.csv")
    best = best_config_yaml(study, spec)
    if best is not None:
        client.log_text(parent_id, best, "best_config.yaml")
    ev = study_evidence(study, spec)
    if ev is not None:
        tracking.log_batch(parent_id, metrics=evidence.summary_metrics(ev),
                           tags={"selection": ev.describe()[:500], "selection_rule": ev.rule})
        client.log_dict(parent_id, {"rule": ev.rule, "members": [{"trial": c.number, "weight": w, "role": c.role}
                                                                 for c, w in ev.members],
                                    **evidence.summary_metrics(ev)}, "selection.json")
    for key, fig in _figures(study, spec).items():
        client.log_figure(parent_id, fig, f"figures/{key}.png")
        plt.close(fig)
