"""Search efficiency: TPE (sweeps/tpe.yaml) vs random search (sweeps/random.yaml) at equal budget.

For each sampler seed, both studies get the same number of trials (pruned trials count; TPE's
spec prunes with a median pruner on intermediate R2 every 200 epochs, random's does not). We
report, per seed, the first trial at which each study reaches (a) the best value of the paper's
one-at-a-time grid (sweeps/paper_grid.yaml, 28 points, run once here) and (b) the R2 of the
paper's Table 1 default config, plus each study's best value and wall time.

Trials use the real spec, sampler, pruner and Hydra composition (vaeok.study.sweep / sweep_spec) and the
shared scoring (vaeok.evaluation.scoring.evaluate) with MLflow off and Optuna's in-memory storage, so the
numbers measure the search, not the tracking. The evaluation seed is fixed (seed=42), so the
objective is a deterministic function of the sampled point; only the sampler seed varies.

Run: PYTHONPATH=src python benchmarks/search_efficiency.py [--seeds 0 1 2] [--n-trials 20]
"""

from __future__ import annotations

import argparse
import json
import time

from _common import RESULTS, ROOT, env_info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-trials", type=int, default=20, help="budget per study (the specs' own n_trials is 20)")
    ap.add_argument("--overrides", nargs="*", default=[], help="extra Hydra overrides for every trial")
    args = ap.parse_args()

    import optuna

    from vaeok.config.compose import load_config
    from vaeok.config.overrides import override
    from vaeok.core.runtime import configure_runtime
    from vaeok.data.datasets import load_dataset
    from vaeok.evaluation.scoring import evaluate
    from vaeok.study.spec import load_spec, sample
    from vaeok.study.sweep import enqueue_one_at_a_time, make_pruner, make_sampler

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    base = ["tracking.enabled=false", *args.overrides]
    cfg0 = load_config(base)
    configure_runtime(cfg0.torch_threads)
    data = load_dataset(cfg0.data)

    def objective_for(spec, prune: bool):
        def objective(trial: optuna.Trial) -> float:
            sampled = sample(spec.space, trial)
            ov = [*spec.overrides, *base, *(override(k, v) for k, v in sampled.items())]
            cfg = load_config(ov)

            def report(step: int, value: float) -> None:
                trial.report(value, step)
                if trial.should_prune():
                    raise optuna.TrialPruned()

            return evaluate(cfg, data, report if prune else None).objective
        return objective

    def run(spec_path: str, seed: int, n_trials: int) -> dict:
        spec = load_spec(str(ROOT / spec_path))
        spec.sampler = {**spec.sampler, "seed": seed}
        study = optuna.create_study(direction=spec.directions[0], sampler=make_sampler(spec),
                                    pruner=make_pruner(spec))
        if spec.sampler["type"] == "one_at_a_time":
            enqueue_one_at_a_time(study, spec, base)
        prune = spec.pruner["type"] != "none"
        t = time.perf_counter()
        study.optimize(objective_for(spec, prune), n_trials=n_trials, gc_after_trial=False)
        wall = time.perf_counter() - t
        trials = [{"number": tr.number, "state": tr.state.name, "value": tr.value, "params": tr.params,
                   "seconds": (tr.datetime_complete - tr.datetime_start).total_seconds()} for tr in study.trials]
        best = max((tr["value"] for tr in trials if tr["state"] == "COMPLETE"), default=float("nan"))
        return {"spec": spec_path, "seed": seed, "wall_s": wall, "best": best, "trials": trials}

    def first_reaching(res: dict, thr: float) -> int | None:
        for tr in res["trials"]:
            if tr["state"] == "COMPLETE" and tr["value"] >= thr - 1e-12:
                return tr["number"] + 1
        return None

    default_r2 = evaluate(cfg0, data).objective  # paper Table 1 point (also warms the kriging cache)
    grid = run("sweeps/paper_grid.yaml", 0, 28)
    grid_best = grid["best"]
    print(f"paper grid: best R2 {grid_best:.4f} in 28 trials, {grid['wall_s']:.0f} s; "
          f"Table 1 default R2 {default_r2:.4f}", flush=True)
    studies = []
    for seed in args.seeds:
        for spec in ("sweeps/tpe.yaml", "sweeps/random.yaml"):
            res = run(spec, seed, args.n_trials)
            res["reach_grid_best"] = first_reaching(res, grid_best)
            res["reach_default"] = first_reaching(res, default_r2)
            res["n_pruned"] = sum(tr["state"] == "PRUNED" for tr in res["trials"])
            studies.append(res)
            print(f"  seed {seed} {spec:<20} best {res['best']:.4f}  reach grid-best @ {res['reach_grid_best']}  "
                  f"reach default @ {res['reach_default']}  pruned {res['n_pruned']}  {res['wall_s']:.0f} s",
                  flush=True)

    head = (f"{'seed':>4} {'sampler':<8} {'best R2':>8} {'>=grid best':>12} {'>=default':>10} "
            f"{'pruned':>6} {'wall s':>7}")
    lines = [f"budget {args.n_trials} trials per study; grid best {grid_best:.4f} (28 trials), "
             f"default {default_r2:.4f}", head, "-" * len(head)]
    for r in studies:
        name = "tpe" if "tpe" in r["spec"] else "random"
        lines.append(f"{r['seed']:>4} {name:<8} {r['best']:8.4f} {r['reach_grid_best'] or '-':>12} "
                     f"{r['reach_default'] or '-':>10} {r['n_pruned']:>6} {r['wall_s']:7.0f}")
    print("\n".join(lines))
    out = {"env": env_info(), "n_trials": args.n_trials, "seeds": args.seeds, "overrides": args.overrides,
           "default_r2": default_r2, "grid": grid, "studies": studies, "table": lines}
    (RESULTS / "search_efficiency.json").write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
