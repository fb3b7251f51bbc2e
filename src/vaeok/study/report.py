"""End-of-study artifacts: Optuna plots, Fig 8-style one-at-a-time curves, best config, top table."""

from __future__ import annotations

import io
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import optuna
import pandas as pd
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from vaeok.config.compose import load_config, to_yaml
from vaeok.study import baseline, evidence
from vaeok.study.spec import StudySpec
from vaeok.tracking import runs as tracking


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
    values = [value] if value in raw else sorted(c for c in raw if c.startswith("values_"))
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
    """The study's selection under its spec's rule (single-objective studies only)."""
    if spec.multi_objective:
        return None
    return evidence.decide(study, spec.selection.get("rule", evidence.DEFAULT_RULE))


def best_config_yaml(study: optuna.Study, spec: StudySpec) -> str | None:
    """The fully resolved config of the best trial (first Pareto trial if multi-objective)."""
    top = top_trials(study, 1)
    if not top:
        return None
    return to_yaml(load_config(top[0].user_attrs["overrides"]))


# Contour and slice plots show only the most important knobs: an 8x8 contour grid is unreadable.
TOP_KNOBS = 4


def top_params(study: optuna.Study, spec: StudySpec, k: int = TOP_KNOBS) -> list[str]:
    """The k searched keys with the highest fANOVA importance for the (first) objective; the
    spec's first k keys if importances cannot be computed (too few completed trials)."""
    keys = [p.key for p in spec.space]
    target = (lambda t: t.values[0]) if spec.multi_objective else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ranked = list(optuna.importance.get_param_importances(study, target=target))
    except Exception:  # e.g. fewer than 2 completed trials, or no parameter varied
        ranked = []
    ranked += [k_ for k_ in keys if k_ not in ranked]
    return ranked[:k]


def _grid_size(n: int, cell: float, extra: tuple[float, float] = (1.5, 1.0)) -> tuple[float, float]:
    return (cell * n + extra[0], cell * n + extra[1])


def _figures(study: optuna.Study, spec: StudySpec) -> dict[str, plt.Figure]:
    vis = optuna.visualization.matplotlib
    target = (lambda t: t.values[0]) if spec.multi_objective else None
    name = spec.metrics[0]
    top = top_params(study, spec)
    makers = {
        "optimization_history": lambda: vis.plot_optimization_history(study, target=target, target_name=name),
        "param_importances": lambda: vis.plot_param_importances(study, target=target, target_name=name),
        "slice": lambda: vis.plot_slice(study, params=top, target=target, target_name=name),
        "intermediate_values": lambda: vis.plot_intermediate_values(study),
    }
    sizes = {"slice": (3.6 * len(top) + 1.5, 4.8), "contour": _grid_size(len(top), 3.4),
             "param_importances": (9, 1.2 + 0.45 * len(spec.space))}
    if len(top) >= 2:
        makers["contour"] = lambda: vis.plot_contour(study, params=top, target=target, target_name=name)
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
    fig.suptitle(f"{key.capitalize()} plot: the {TOP_KNOBS} most important searched keys (fANOVA)", fontsize=10)
    if key == "slice":
        fig.subplots_adjust(bottom=0.2, top=0.88)


def one_at_a_time_figure(study: optuna.Study, spec: StudySpec) -> plt.Figure | None:
    """Fig 8-style curves: objective vs each parameter, the others at their defaults."""
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
