"""Does searching pay? Outer 5-fold CV of fixed methods and of selection rules over a candidate pool.

For every data set, seed and outer fold, the outer-train rows get the CANDIDATE POOL a study
would build: reference configs (paper default VAE-OK; no-augmentation GBR, GPR and kriging alone)
plus `--n-tpe` VAE-OK configs drawn by Optuna TPE over the knobs of sweeps/tpe.yaml (generator
fixed to vae_ok; the paper default is enqueued as TPE's first trial, as the sweep does). Every
candidate is scored by the honest inner CV on the outer-train rows (`vaeok.evaluation.scoring.evaluate`,
holdout_fraction=0: its pooled OOF predictions) and refit on all outer-train rows
(`vaeok.registry.packaged.fit_pipeline`) to predict the outer-test rows. Both are cached per
(variant, data set, seed, fold) as JSON, so selection rules are compared offline in seconds
(`--analyse-only`).

Fixed methods = one reference config's outer predictions. A selection rule maps the pool's OOF
matrix to weights (vaeok.study.selection); its outer predictions are the weighted refits. All
scores are R2 pooled over the 5 outer folds of a (data set, seed); tables give the mean over seeds
and the spread (sd) over seeds. BBC-CV estimates (per outer fold, on the outer-train OOF matrix)
are compared with the realised outer R2 of the same rule.

Run:  PYTHONPATH=src python benchmarks/selection.py            (full, ~40 min on 2 cores)
      PYTHONPATH=src python benchmarks/selection.py --quick    (make bench, ~3 min)
      PYTHONPATH=src python benchmarks/selection.py --analyse-only   (tables from the cache)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from _common import RESULTS, ROOT, env_info

CACHE = RESULTS / "selection_cache"
REFERENCES: dict[str, dict[str, Any]] = {
    "paper_default": {},                                             # Table 1 VAE-OK + GBR
    "gbr": {"generator": "none"},                                    # GBR alone (sklearn-style defaults)
    "gpr": {"generator": "none", "regressor": "gpr"},
    "kriging": {"generator": "none", "regressor": "kriging"},
}
FIXED = list(REFERENCES)
NO_AUG = ["gbr", "gpr", "kriging"]
VARIANTS: dict[str, list[str]] = {   # inner-CV overrides per variant of the study design
    "main": [],
    "rep3": ["evaluation.n_repeats=3"],
}


# --- data sets ------------------------------------------------------------------------------------

def datasets() -> dict[str, Callable[[], Any]]:
    """Name -> loader of the offline data sets (fixed rows; seeds vary splits and model seeds)."""
    from sklearn.datasets import load_diabetes, load_linnerud, make_friedman1, make_friedman3

    from vaeok.data.datasets import Dataset, rubber_surrogate

    def ds(X: np.ndarray, y: np.ndarray, name: str) -> Dataset:
        return Dataset(np.asarray(X, float), np.asarray(y, float), tuple(f"x{i}" for i in range(X.shape[1])),
                       "y", name)

    def diabetes(n: int) -> Callable[[], Dataset]:
        def load() -> Dataset:
            X, y = load_diabetes(return_X_y=True)
            idx = np.random.default_rng(0).choice(len(y), n, replace=False)
            return ds(X[idx], y[idx], f"diabetes{n}")
        return load

    def linnerud() -> Dataset:
        b = load_linnerud()
        return ds(b.data, b.target[:, 0], "linnerud_weight")   # exercises -> body weight, 20 rows

    return {
        "diabetes30": diabetes(30),
        "diabetes60": diabetes(60),
        "linnerud20": linnerud,
        "friedman1_40": lambda: ds(*make_friedman1(40, noise=1.0, random_state=0), "friedman1_40"),
        "friedman3_60": lambda: ds(*make_friedman3(60, noise=0.1, random_state=0), "friedman3_60"),
        "surrogate86": lambda: rubber_surrogate(),
    }


# --- one outer fold -------------------------------------------------------------------------------

def tpe_space(narrow: bool) -> list[Any]:
    """The VAE-OK knobs of sweeps/tpe.yaml (those conditional on generator=vae_ok; generator fixed
    to vae_ok, so no conditions; the no-augmentation regressors are the reference configs)."""
    from dataclasses import replace

    from vaeok.study.spec import load_spec

    spec = load_spec(ROOT / "sweeps" / "tpe.yaml")
    space = [replace(p, when=None) for p in spec.space
             if p.when is not None and p.when[0] == "generator" and "vae_ok" in p.when[1]]
    if narrow:
        caps = {"trainer.max_epochs": 600, "generator.n_virtual": 1000}
        space = [replace(p, high=min(p.high, caps[p.key])) if p.key in caps else p for p in space]
    return space


def oof_vector(pred: Any, n: int) -> np.ndarray:
    """Pooled OOF predictions per development row, averaged over repeats."""
    g = pred.groupby("row").y_pred.mean()
    out = np.full(n, np.nan)
    out[g.index.to_numpy()] = g.to_numpy()
    return out


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Evaluate and refit every candidate of one outer fold; write the cache file; return its path."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import optuna
    from sklearn.model_selection import KFold

    from vaeok.config.compose import load_config
    from vaeok.config.overrides import override
    from vaeok.core.runtime import configure_runtime
    from vaeok.evaluation.scoring import evaluate, subset
    from vaeok.registry.packaged import fit_pipeline
    from vaeok.study.spec import sample

    configure_runtime(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    out_path = Path(task["path"])
    data = datasets()[task["dataset"]]()
    seed, fold = task["seed"], task["fold"]
    tr, te = list(KFold(5, shuffle=True, random_state=seed).split(data.X))[fold]
    train, test = subset(data, tr), subset(data, te)
    base = ["tracking.enabled=false", "evaluation.holdout_fraction=0", "evaluation.loocv_below=0",
            f"seed={seed}", *VARIANTS[task["variant"]]]
    t_start = time.perf_counter()
    candidates: list[dict[str, Any]] = []

    def run_config(name: str, role: str, values: dict[str, Any], report: Any = None) -> float:
        ov = [*base, *(override(k, v) for k, v in values.items())]
        rec: dict[str, Any] = {"name": name, "role": role, "values": values}
        t0 = time.perf_counter()
        try:
            cfg = load_config(ov)
            res = evaluate(cfg, train, report)
            rec["cv_r2"] = float(res.objective)
            rec["oof"] = oof_vector(res.predictions, train.n_rows).tolist()
            t1 = time.perf_counter()
            pipe = fit_pipeline(cfg, train)
            rec["test_pred"] = np.asarray(pipe.regressor.predict(test.X), float).tolist()
            rec["seconds"] = {"cv": t1 - t0, "refit": time.perf_counter() - t1}
            rec["state"] = "COMPLETE"
        except optuna.TrialPruned:
            rec["state"] = "PRUNED"
            candidates.append(rec)
            raise
        except Exception as exc:  # a failing candidate (kriging, NaN loss) leaves the pool, as in a sweep
            rec["state"] = "FAIL"
            rec["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        candidates.append(rec)
        if rec["state"] != "COMPLETE":
            raise RuntimeError(rec["error"])
        return rec["cv_r2"]

    for name in NO_AUG:
        try:
            run_config(name, "reference", REFERENCES[name])
        except RuntimeError:
            pass

    space = tpe_space(task["narrow"])
    cfg0 = load_config(base)
    from omegaconf import OmegaConf
    paper = {p.key: OmegaConf.select(cfg0, p.key) for p in space}
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore")
        sampler = optuna.samplers.TPESampler(seed=1000 * seed + fold, n_startup_trials=5, multivariate=True,
                                             group=True)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=200) if task["prune"]
              else optuna.pruners.NopPruner())
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    study.enqueue_trial(paper)
    eval_every = ["evaluation.eval_every_n_epochs=200"] if task["prune"] else []

    def objective(trial: optuna.Trial) -> float:
        values = sample(space, trial)
        values = {**values, **{e.split("=")[0]: int(e.split("=")[1]) for e in eval_every}}

        def report(step: int, value: float) -> None:
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()

        name = "paper_default" if trial.number == 0 else f"tpe{trial.number}"
        return run_config(name, "reference" if trial.number == 0 else "tpe", values, report)

    study.optimize(objective, n_trials=1 + task["n_tpe"], catch=(RuntimeError,))
    result = {**task, "train_idx": tr.tolist(), "test_idx": te.tolist(), "y_train": train.y.tolist(),
              "y_test": test.y.tolist(), "candidates": candidates, "seconds": time.perf_counter() - t_start}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(out_path)
    return {"path": str(out_path), "seconds": result["seconds"]}


# --- analysis -------------------------------------------------------------------------------------

def rules() -> dict[str, Callable[[np.ndarray, np.ndarray, list[str]], np.ndarray]]:
    """Selection rules: (y, OOF matrix, candidate names) -> weights."""
    from vaeok.study.selection import argmax_rule, ensemble_weights, one_hot, one_se_choice, r2_score_columns

    def idx(names: list[str], wanted: list[str]) -> list[int]:
        return [i for i, n in enumerate(names) if n in wanted]

    def raw(y: np.ndarray, P: np.ndarray, names: list[str]) -> np.ndarray:
        return argmax_rule()(y, P)

    def raw_old_space(y: np.ndarray, P: np.ndarray, names: list[str]) -> np.ndarray:
        keep = [i for i, n in enumerate(names) if n not in ("gpr", "kriging")]
        r = r2_score_columns(y, P[:, keep])
        return one_hot(len(names), keep[int(np.argmax(r))])

    def one_se_paper(y: np.ndarray, P: np.ndarray, names: list[str]) -> np.ndarray:
        d = idx(names, ["paper_default"]) or idx(names, ["gbr"])
        return one_hot(len(names), one_se_choice(y, P, d, n_boot=300, seed=0))

    def one_se_noaug(y: np.ndarray, P: np.ndarray, names: list[str]) -> np.ndarray:
        return one_hot(len(names), one_se_choice(y, P, idx(names, NO_AUG), n_boot=300, seed=0))

    def best_noaug(y: np.ndarray, P: np.ndarray, names: list[str]) -> np.ndarray:
        d = idx(names, NO_AUG)
        r = r2_score_columns(y, P[:, d])
        return one_hot(len(names), d[int(np.argmax(r))])

    def ens(top_k: int | None) -> Callable[[np.ndarray, np.ndarray, list[str]], np.ndarray]:
        def rule(y: np.ndarray, P: np.ndarray, names: list[str]) -> np.ndarray:
            return ensemble_weights(y, P, n_iter=50, top_k=top_k)
        return rule

    return {"raw_best": raw, "raw_best_old_space": raw_old_space, "best_no_aug": best_noaug,
            "one_se_paper": one_se_paper, "one_se_no_aug": one_se_noaug,
            "ensemble_top5": ens(5), "ensemble_full": ens(None)}


def load_cache(variant: str, dataset: str, seed: int) -> list[dict[str, Any]] | None:
    """The 5 cached outer folds of (variant, data set, seed), or None if any is missing.

    A reference-only variant (`..._t0`) also takes folds cached with TPE draws (same seeds, same
    reference configs: its pool is a subset), keeping only their reference candidates.
    """
    folds = []
    for f in range(5):
        name = f"{dataset}_s{seed}_f{f}.json"
        paths = [CACHE / variant / name]
        if variant.endswith("_t0"):
            paths += sorted((CACHE).glob(f"{variant[:-3]}_t*/{name}"))
        p = next((q for q in paths if q.is_file()), None)
        if p is None:
            return None
        d = json.loads(p.read_text())
        if variant.endswith("_t0"):
            d["candidates"] = [c for c in d["candidates"] if c["role"] == "reference"]
        folds.append(d)
    return folds


def r2(y: np.ndarray, p: np.ndarray) -> float:
    from vaeok.study.selection import r2_score_columns
    return float(r2_score_columns(np.asarray(y), np.asarray(p)))


def analyse_one(folds: list[dict[str, Any]], n_boot: int) -> dict[str, Any]:
    """Pooled outer R2 of fixed methods and rules, BBC and raw CV estimates, for one (data set, seed)."""
    from vaeok.study.selection import bbc_cv, combine, cv_corrected

    y_out = np.concatenate([f["y_test"] for f in folds])
    out_pred: dict[str, list[np.ndarray]] = {}
    est: dict[str, list[float]] = {}
    chosen: dict[str, list[str]] = {}
    rule_fns = rules()
    n_pool = []
    for fi, f in enumerate(folds):
        pool = [c for c in f["candidates"] if c["state"] == "COMPLETE"]
        names = [c["name"] for c in pool]
        n_pool.append(len(pool))
        y = np.asarray(f["y_train"])
        P = np.column_stack([c["oof"] for c in pool])
        T = np.column_stack([c["test_pred"] for c in pool])
        for m in FIXED:
            if m in names:
                out_pred.setdefault(m, []).append(T[:, names.index(m)])
            else:  # a failed reference: its outer predictions are missing; fall back to GBR, flagged
                out_pred.setdefault(m, []).append(T[:, names.index("gbr")])
                chosen.setdefault(f"{m}_failed", []).append(str(fi))
        for rn, fn in rule_fns.items():
            w = fn(y, P, names)
            out_pred.setdefault(rn, []).append(combine(T, w))
            chosen.setdefault(rn, []).append("+".join(f"{names[i]}x{w[i]}" if w[i] > 1 else names[i]
                                                      for i in np.flatnonzero(w)))
            if rn in ("raw_best", "one_se_no_aug", "ensemble_full", "ensemble_top5"):
                res = bbc_cv(y, P, lambda yy, PP, fn=fn, names=names: fn(yy, PP, names), n_boot=n_boot,
                             seed=fi)
                est.setdefault(f"{rn}/bbc", []).append(res.estimate)
                est.setdefault(f"{rn}/apparent", []).append(res.apparent)
                cvs = cv_corrected(y, P, lambda yy, PP, fn=fn, names=names: fn(yy, PP, names), seed=fi)
                est.setdefault(f"{rn}/cvsel", []).append(cvs.estimate)
                raw_best_cv = float(np.max([r2(y, P[:, j]) for j in range(P.shape[1])]))
                est.setdefault(f"{rn}/raw_best_cv", []).append(raw_best_cv)
    outer = {k: r2(y_out, np.concatenate(v)) for k, v in out_pred.items()}
    return {"outer": outer, "estimates": {k: float(np.mean(v)) for k, v in est.items()},
            "chosen": chosen, "pool_size": float(np.mean(n_pool))}


def analyse(variant: str, names: list[str], seeds: list[int], n_boot: int) -> dict[str, Any]:
    """Per data set (mean and sd over seeds) and overall tables, targets per rule."""
    per: dict[str, dict[str, Any]] = {}
    for ds in names:
        runs = [(s, load_cache(variant, ds, s)) for s in seeds]
        runs = [(s, f) for s, f in runs if f is not None]
        if not runs:
            continue
        res = {s: analyse_one(f, n_boot) for s, f in runs}
        methods = list(next(iter(res.values()))["outer"])
        per[ds] = {
            "seeds": [s for s, _ in runs],
            "mean": {m: float(np.mean([r["outer"][m] for r in res.values()])) for m in methods},
            "sd": {m: float(np.std([r["outer"][m] for r in res.values()], ddof=1)) if len(res) > 1 else float("nan")
                   for m in methods},
            "per_seed": {str(s): r for s, r in res.items()},
        }
    if not per:
        return {}
    methods = list(next(iter(per.values()))["mean"])
    overall = {m: float(np.mean([per[d]["mean"][m] for d in per])) for m in methods}
    best_fixed = {d: max(per[d]["mean"][m] for m in FIXED) for d in per}
    targets = {}
    for m in methods:
        if m in FIXED:
            continue
        within = [per[d]["mean"][m] >= best_fixed[d] - 0.02 for d in per]
        t = {"beats_every_fixed_on_average": all(overall[m] >= overall[f] for f in FIXED),
             "share_within_0.02_of_best_fixed": float(np.mean(within)),
             "within_0.02_on_80pct": float(np.mean(within)) >= 0.8}
        if f"{m}/bbc" in next(iter(per[next(iter(per))]["per_seed"].values()))["estimates"]:
            errs_bbc, errs_raw, errs_cv, errs_best = [], [], [], []
            for d in per:
                for r in per[d]["per_seed"].values():
                    errs_bbc.append(r["estimates"][f"{m}/bbc"] - r["outer"][m])
                    errs_raw.append(r["estimates"][f"{m}/apparent"] - r["outer"][m])
                    errs_cv.append(r["estimates"][f"{m}/cvsel"] - r["outer"][m])
                    errs_best.append(r["estimates"][f"{m}/raw_best_cv"] - r["outer"][m])
            t.update({"mean_abs_cvsel_minus_outer": float(np.mean(np.abs(errs_cv))),
                      "mean_cvsel_minus_outer": float(np.mean(errs_cv)),
                      "mean_abs_raw_best_cv_minus_outer": float(np.mean(np.abs(errs_best))),
                      "mean_raw_best_cv_minus_outer": float(np.mean(errs_best))})
            t.update({"mean_abs_bbc_minus_outer": float(np.mean(np.abs(errs_bbc))),
                      "mean_abs_apparent_minus_outer": float(np.mean(np.abs(errs_raw))),
                      "mean_bbc_minus_outer": float(np.mean(errs_bbc)),
                      "mean_apparent_minus_outer": float(np.mean(errs_raw)),
                      "bbc_closer": float(np.mean(np.abs(errs_bbc))) < float(np.mean(np.abs(errs_raw)))})
        targets[m] = t
    return {"per_dataset": per, "overall": overall, "targets": targets}


def markdown(an: dict[str, Any], variant: str) -> str:
    """Markdown tables: methods x data sets (mean over seeds, sd in brackets) and the targets."""
    per, overall = an["per_dataset"], an["overall"]
    ds = list(per)
    methods = list(overall)
    lines = [f"### variant `{variant}`: pooled outer R2, mean over seeds (sd over seeds)", "",
             "| method | mean | " + " | ".join(f"{d} (n_seeds={len(per[d]['seeds'])})" for d in ds) + " |",
             "|---|---|" + "---|" * len(ds)]
    for m in methods:
        cells = [f"{per[d]['mean'][m]:.3f} ({per[d]['sd'][m]:.3f})" for d in ds]
        lines.append(f"| {m}{' (fixed)' if m in FIXED else ''} | **{overall[m]:.3f}** | " + " | ".join(cells) + " |")
    lines += ["", "| rule | beats every fixed on avg | share within 0.02 of best fixed | mean abs(BBC - outer) "
              "| mean abs(raw CV - outer) | mean BBC - outer | mean raw CV - outer | mean abs(CV-selection - outer) "
              "| mean CV-selection - outer | mean abs(raw best trial CV - outer) |", "|---" * 10 + "|"]
    for m, t in an["targets"].items():
        b = f"{t['mean_abs_bbc_minus_outer']:.3f}" if "mean_abs_bbc_minus_outer" in t else ""
        a = f"{t['mean_abs_apparent_minus_outer']:.3f}" if "mean_abs_apparent_minus_outer" in t else ""
        sb = f"{t['mean_bbc_minus_outer']:+.3f}" if "mean_bbc_minus_outer" in t else ""
        sa = f"{t['mean_apparent_minus_outer']:+.3f}" if "mean_apparent_minus_outer" in t else ""
        has_cv = "mean_abs_cvsel_minus_outer" in t
        cv = f"{t['mean_abs_cvsel_minus_outer']:.3f} | {t['mean_cvsel_minus_outer']:+.3f}" if has_cv else " | "
        rb = f"{t['mean_abs_raw_best_cv_minus_outer']:.3f}" if "mean_abs_raw_best_cv_minus_outer" in t else ""
        lines.append(f"| {m} | {t['beats_every_fixed_on_average']} | {t['share_within_0.02_of_best_fixed']:.2f} "
                     f"| {b} | {a} | {sb} | {sa} | {cv} | {rb} |")
    return "\n".join(lines)


# --- driver ---------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="linnerud20, 1 seed, 1 TPE draw (~3 min)")
    ap.add_argument("--datasets", nargs="*", default=None)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--n-tpe", type=int, default=4, help="TPE-drawn VAE-OK configs per outer fold")
    ap.add_argument("--variant", default="main", choices=sorted(VARIANTS))
    ap.add_argument("--narrow", action="store_true", help="epochs <= 600, n_virtual <= 1000")
    ap.add_argument("--prune", action="store_true", help="median pruner on R2 every 200 epochs")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--n-boot", type=int, default=200, help="BBC bootstrap samples")
    ap.add_argument("--analyse-only", action="store_true")
    ap.add_argument("--fresh", action="store_true", help="discard this variant's cache first (make bench)")
    ap.add_argument("--output", default=str(RESULTS / "selection.json"))
    args = ap.parse_args()
    if args.quick:
        args.datasets = args.datasets or ["linnerud20"]
        args.seeds, args.n_tpe = [0], 1
        args.output = str(RESULTS / "selection_quick.json")
    names = args.datasets or list(datasets())
    variant = args.variant + ("_narrow" if args.narrow else "") + ("_prune" if args.prune else "")
    variant += f"_t{args.n_tpe}"
    if args.variant not in VARIANTS:
        raise SystemExit(f"unknown variant {args.variant}")
    if args.fresh and not args.analyse_only:
        import shutil

        shutil.rmtree(CACHE / variant, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / ".gitignore").write_text("*\n")
    tasks = [{"variant": args.variant, "dataset": d, "seed": s, "fold": f, "n_tpe": args.n_tpe,
              "narrow": args.narrow, "prune": args.prune,
              "path": str(CACHE / variant / f"{d}_s{s}_f{f}.json")}
             for s in args.seeds for d in names for f in range(5)]
    todo = [t for t in tasks if not Path(t["path"]).is_file()]
    t0 = time.perf_counter()
    if todo and not args.analyse_only:
        import multiprocessing as mp

        print(f"{len(todo)} of {len(tasks)} outer folds to compute ({args.workers} processes)", flush=True)
        with mp.get_context("spawn").Pool(args.workers) as pool:
            for i, r in enumerate(pool.imap_unordered(run_task, todo), 1):
                print(f"[{i}/{len(todo)}] {Path(r['path']).name} {r['seconds']:.0f}s "
                      f"(elapsed {time.perf_counter() - t0:.0f}s)", flush=True)
    compute_s = time.perf_counter() - t0
    ta = time.perf_counter()
    an = analyse(variant, names, args.seeds, args.n_boot)
    if not an:
        raise SystemExit("nothing cached yet")
    text = markdown(an, variant)
    print(text)
    seconds = {}
    for d in an["per_dataset"]:
        for s in an["per_dataset"][d]["seeds"]:
            folds = load_cache(variant, d, s) or []
            seconds[f"{d}_s{s}"] = sum(sum(sum(c.get("seconds", {}).values()) for c in f["candidates"])
                                       for f in folds)
    out = {"variant": variant, "args": vars(args), "env": env_info(), "compute_seconds_this_call": compute_s,
           "analysis_seconds": time.perf_counter() - ta, "task_cpu_seconds": seconds, **an, "markdown": text}
    Path(args.output).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
