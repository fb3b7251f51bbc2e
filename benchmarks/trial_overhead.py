"""Harness overhead of one default trial, measured against the bare reference in ONE process.

Cases (median of --repeats interleaved runs; seconds):
  ref batched / ref sequential   benchmarks/reference_trial.py (plain torch + same kriging + GBR)
  harness evaluate               vaeok.evaluation.scoring.evaluate(cfg, data)  (Lightning, no MLflow)
  run_experiment figs off / on   vaeok.experiment.run_experiment with MLflow (sqlite in a temp dir)
  optuna trial                   one trial through vaeok.study.sweep.make_objective (Hydra compose + run)
Each case is measured cold (kriging variograms fitted: empty per-fold labeler cache) and warm
(variograms memoised, as in every trial after the first of a sweep). The reference keeps its
own labeler dict with the same semantics.

Run: PYTHONPATH=src python benchmarks/trial_overhead.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from contextlib import contextmanager

import reference_trial as ref
from _common import RESULTS, env_info, median, median_table


@contextmanager
def harness_breakdown(times: dict[str, float]):
    """Time the harness's kriging fit/predict and GBR by wrapping evaluation's module functions."""
    from vaeok.evaluation import scoring as ev

    originals = {n: getattr(ev, n) for n in ("fitted_labeler", "label_virtual", "fit_predict")}

    def timed(name: str, key: str):
        fn = originals[name]

        def wrapper(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                times[key] = times.get(key, 0.0) + time.perf_counter() - t
        return wrapper

    ev.fitted_labeler = timed("fitted_labeler", "krige_fit")
    ev.label_virtual = timed("label_virtual", "_label")
    ev.fit_predict = timed("fit_predict", "gbr")
    try:
        yield times
    finally:
        for n, fn in originals.items():
            setattr(ev, n, fn)


def timed_call(fn, breakdown: bool = False) -> tuple[float, dict, object]:
    times: dict[str, float] = {}
    t = time.perf_counter()
    if breakdown:
        with harness_breakdown(times):
            out = fn()
    else:
        out = fn()
    times["total"] = time.perf_counter() - t
    if "_label" in times:
        times["krige_predict"] = times.pop("_label") - times.get("krige_fit", 0.0)
        times["train"] = times["total"] - times["krige_predict"] - times.get("krige_fit", 0.0) - times.get("gbr", 0.0)
    return times["total"], times, out


def pinned_spec():
    """A study spec whose every trial is the default config (so the work equals one default trial)."""
    from vaeok.study.spec import Param, StudySpec
    from vaeok.study.sweep import TRIAL_DEFAULTS

    space = [Param("trainer.max_epochs", "categorical", choices=(400,)),
             Param("model.lr", "categorical", choices=(0.002,)),
             Param("data.batch_size", "categorical", choices=(64,)),
             Param("model.hidden", "categorical", choices=(65,))]
    return StudySpec(name="bench_overhead", space=space, sampler={"type": "tpe", "seed": 0},
                     pruner={"type": "none"}, n_trials=1000, overrides=list(TRIAL_DEFAULTS))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="vaeok-bench-")
    os.chdir(tmp)  # MLflow/Optuna stores are cwd-relative
    t_import = time.perf_counter()
    import mlflow  # noqa: F401
    import optuna

    from vaeok.config.compose import load_config
    from vaeok.core.runtime import configure_runtime
    from vaeok.data.datasets import load_dataset
    from vaeok.evaluation import scoring as evaluation
    from vaeok.experiment import run_experiment
    from vaeok.study import sweep
    import_s = time.perf_counter() - t_import

    cfg = load_config(["tracking.enabled=false"])
    configure_runtime(cfg.torch_threads)
    data = load_dataset(cfg.data)
    rc = ref.RefConfig()
    assert (cfg.model.hidden, cfg.model.latent, cfg.model.lr, cfg.data.batch_size, cfg.trainer.max_epochs,
            cfg.generator.n_virtual, cfg.seed, cfg.evaluation.n_splits) == (
        rc.hidden, rc.latent, rc.lr, rc.batch_size, rc.epochs, rc.n_virtual, rc.seed, rc.n_splits), "defaults drifted"
    inputs = ref.development_data(rc, data)
    rows: list[dict] = []

    def add(case: str, fn, breakdown: bool = False, r2_of=None) -> object:
        _, times, out = timed_call(fn, breakdown)
        if isinstance(out, dict) and "times" in out:  # the reference's own breakdown
            times = {**out["times"], "total": times["total"]}
        r2 = r2_of(out) if r2_of else None
        rows.append({"case": case, "times": times, **({"r2": r2} if r2 is not None else {})})
        print(f"  {case:<34} {times['total']:7.3f} s", flush=True)
        return out

    def ev_r2(o):
        return o.metrics["val/r2"]

    print(f"imports (mlflow, optuna, vaeok harness): {import_s:.2f} s", flush=True)
    # First trial in the process: cold kriging plus one-off lazy initialisation (imports, Lightning).
    evaluation.clear_caches()
    add("harness first-in-process", lambda: evaluation.evaluate(cfg, data), True, ev_r2)

    ref_warm: dict = {}
    ref.reference_trial("batched", rc, ref_warm, inputs)  # fills ref_warm, warms torch
    for _ in range(args.repeats):
        add("ref batched cold", lambda: ref.reference_trial("batched", rc, {}, inputs), r2_of=lambda o: o["r2"])
        add("ref batched warm", lambda: ref.reference_trial("batched", rc, ref_warm, inputs), r2_of=lambda o: o["r2"])
        evaluation.clear_caches()
        add("harness evaluate cold", lambda: evaluation.evaluate(cfg, data), True, ev_r2)
        add("harness evaluate warm", lambda: evaluation.evaluate(cfg, data), True, ev_r2)
    for _ in range(max(1, args.repeats - 1)):
        add("ref sequential warm", lambda: ref.reference_trial("sequential", rc, ref_warm, inputs),
            r2_of=lambda o: o["r2"])
    # The tpe.yaml spec adds an intermediate scoring at epoch 200 (for pruning): one more kriging+GBR pass.
    cfg_int = load_config(["tracking.enabled=false", "evaluation.eval_every_n_epochs=200"])
    for _ in range(args.repeats):
        add("harness warm eval_every=200", lambda: evaluation.evaluate(cfg_int, data), True, ev_r2)

    # MLflow: the store lives in the temp cwd.
    from vaeok.study.sweep import TRIAL_DEFAULTS

    ml_off = load_config(list(TRIAL_DEFAULTS))  # what a sweep trial logs
    ml_on = load_config(["tracking.log_figures=true"])
    add("run_experiment first (new store)", lambda: run_experiment(ml_off), r2_of=lambda o: o.result.objective)
    for _ in range(args.repeats):
        add("harness evaluate warm (paired)", lambda: evaluation.evaluate(cfg, data), True, ev_r2)
        add("run_experiment figs off", lambda: run_experiment(ml_off), r2_of=lambda o: o.result.objective)
        add("run_experiment figs on", lambda: run_experiment(ml_on), r2_of=lambda o: o.result.objective)

    # Optuna + Hydra: the sweep's own objective (compose the trial config, run_experiment, storage writes).
    spec = pinned_spec()
    opts = sweep.SweepOptions(study=spec.name, storage=f"sqlite:///{tmp}/optuna.db", progress=False)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = sweep.open_study(spec, [], opts)
    exp_id = sweep.tracking.setup(ml_off.tracking)
    parent = sweep.parent_run(study, spec, [], exp_id)
    objective = sweep.make_objective(spec, [], parent, reuse_duplicates=False)  # every trial is the same config

    def one_trial():
        study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=False)
        last = study.get_trials(deepcopy=False)[-1]
        assert last.state == optuna.trial.TrialState.COMPLETE, last.user_attrs
        return last.value

    for _ in range(args.repeats):
        add("compose (load_config)", lambda: load_config(list(spec.overrides)))
        add("run_experiment figs off (paired)", lambda: run_experiment(ml_off), r2_of=lambda o: o.result.objective)
        add("optuna trial (compose+run)", one_trial, r2_of=lambda v: v)

    # Direct measurements: the same calls with the evaluation replaced by its result, so the
    # overhead is timed on its own instead of as the difference of two noisy ~1.3 s totals.
    import vaeok.experiment as run_mod

    done = run_experiment(ml_off)
    real_evaluate, real_run = run_mod.evaluate, sweep.run_experiment
    run_mod.evaluate = lambda *a, **k: done.result
    sweep.run_experiment = lambda *a, **k: done
    try:
        for _ in range(3 * args.repeats):
            add("mlflow logging alone (run_experiment, evaluation stubbed)", lambda: run_experiment(ml_off))
            add("optuna+hydra alone (trial, run_experiment stubbed)", one_trial)
    finally:
        run_mod.evaluate, sweep.run_experiment = real_evaluate, real_run
    sweep.MlflowClient().set_terminated(parent, "FINISHED")

    table = median_table(rows, ["train", "krige_fit", "krige_predict", "gbr", "total"])
    med = {r["case"]: r["total"] for r in table["rows"]}
    r2 = {r["case"]: r.get("r2") for r in table["rows"]}
    ratios = {
        "harness/ref_batched warm": med["harness evaluate warm"] / med["ref batched warm"],
        "harness/ref_batched cold": med["harness evaluate cold"] / med["ref batched cold"],
        "harness/ref_sequential warm": med["harness evaluate warm"] / med["ref sequential warm"],
        "ref_sequential/ref_batched warm": med["ref sequential warm"] / med["ref batched warm"],
        "mlflow overhead figs off": med["run_experiment figs off"] / med["harness evaluate warm (paired)"] - 1,
        "mlflow overhead figs on": med["run_experiment figs on"] / med["harness evaluate warm (paired)"] - 1,
        "optuna+hydra overhead": med["optuna trial (compose+run)"] / med["run_experiment figs off (paired)"] - 1,
        "eval_every=200 extra": med["harness warm eval_every=200"] / med["harness evaluate warm"] - 1,
        "mlflow overhead direct": med["mlflow logging alone (run_experiment, evaluation stubbed)"]
        / med["harness evaluate warm"],
        "optuna+hydra overhead direct": med["optuna+hydra alone (trial, run_experiment stubbed)"]
        / med["run_experiment figs off"],
    }
    targets = {"harness/ref_batched warm": 1.3, "harness/ref_batched cold": 1.3, "mlflow overhead figs off": 0.05,
               "optuna+hydra overhead": 0.05, "mlflow overhead direct": 0.05, "optuna+hydra overhead direct": 0.05}
    absolute = {"default sweep trial wall (warm, s)": med["optuna trial (compose+run)"],
                "first trial in process (cold, s)": med["harness first-in-process"],
                "imports mlflow+optuna+vaeok (s)": import_s}
    same = abs(r2["harness evaluate warm"] - r2["ref batched warm"]) < 1e-12
    print()
    print(table["text"])
    print(f"\nreference batched reproduces harness R2 exactly: {same} "
          f"({r2['ref batched warm']!r} vs {r2['harness evaluate warm']!r})")
    print(f"\n{'ratio':<34} {'value':>8} {'target':>8}  ok")
    for k, v in ratios.items():
        tgt = targets.get(k)
        ok = "" if tgt is None else ("yes" if v <= tgt else "NO")
        fmt = f"{v:8.1%}" if "overhead" in k or "extra" in k else f"{v:8.3f}"
        tfmt = "" if tgt is None else (f"{tgt:8.0%}" if "overhead" in k else f"{tgt:8.2f}")
        print(f"{k:<34} {fmt} {tfmt:>8}  {ok}")
    for k, v in absolute.items():
        print(f"{k:<34} {v:8.3f} {'3.00' if 'sweep trial' in k else '':>8}  "
              f"{('yes' if v <= 3 else 'NO') if 'sweep trial' in k else ''}")
    out = {"env": env_info(), "repeats": args.repeats, "ratios": ratios, "targets": targets, "absolute": absolute,
           "ref_reproduces_harness_r2": same, "median": table["rows"], "runs": rows,
           "median_total": {k: median([r["times"]["total"] for r in rows if r["case"] == k]) for k in med}}
    (RESULTS / "trial_overhead.json").write_text(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
