"""What a user waits for around the trials (issue #15), measured through the `vaeok` CLI.

Every case runs the real command in a subprocess, in a fresh temp directory (a new MLflow store
and Optuna database, as for a newcomer), against a temp copy of conf/ (promote writes an overlay
there). Each goal is a difference or a ratio inside the same run:

  sweep fixed overhead   wall of `vaeok sweep --n-trials N` (sweeps/tpe.yaml) minus the sum of
                         its trials' durations (Optuna start/complete timestamps). Also split into
                         "before the first trial" (spawn -> first trial start), "between trials"
                         and "after the last trial" (incl. end-of-study figures, timed by a probe).
  run                    wall of `vaeok run` minus its MLflow run's duration (evaluate + logging).
  promote                wall of `vaeok promote` minus its refits (every `fit_pipeline` call).
  predict                wall of `vaeok predict` on 10 rows; and on a CSV with a wrong column.
  worker start           `vaeok sweep --workers 2`: each spawned worker's first trial start minus
                         the moment the coordinator started it.
  cold / warm            a spec whose trials all do the same work (grid over a logging-only key):
                         the first trial of the process / median of the others.

Timings are read from the stores afterwards, so the CLI runs unmodified; the only helper is
benchmarks/_cli_probe.py, which wraps named functions on import (for the refit and figure
times and the worker spawn moments). Cases are interleaved over --repeats; medians are reported.
The 2-core machine is shared: the load average is recorded per case.

The import floors (fresh interpreters importing what a VAE-OK command, or predict, cannot run
without) are timed too and printed beside the goals: an absolute goal below its floor cannot be met
by vaeok's own code.

Run: PYTHONPATH=src python benchmarks/overhead.py [--repeats 3] [--trials 5 20] [--only sweep,run,...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from _common import RESULTS, ROOT, env_info, median

PROBE = str(Path(__file__).resolve().parent / "_cli_probe.py")
CASES = ("sweep", "run", "promote", "predict", "workers", "coldwarm")
# functions timed by the probe, under the old layout and the restructured one (missing ones are ignored)
FIGURES = ["vaeok.sweep_report:log_study_artifacts", "vaeok.study.report:log_study_artifacts"]
REFITS = ["vaeok.registry:fit_pipeline", "vaeok.registry.promote:fit_pipeline"]
SAME_WORK_SPEC = """name: samework
description: every trial does the default work; only the loss logging interval differs
direction: maximize
metric: val/r2
sampler: {type: grid, seed: 0}
pruner: {type: none}
n_trials: %d
space:
  tracking.loss_log_every: categorical [%s]
"""
# What the commands cannot start without: the libraries a VAE-OK run/sweep/promote imports (Lightning
# pulls in torch and torch._dynamo), and what predicting with a packaged model imports.
FLOORS = {"floor: VAE-OK run stack": "import lightning.pytorch, mlflow, optuna, sklearn.ensemble, hydra, omegaconf",
          "floor: predict stack": "import mlflow.pyfunc, sklearn.ensemble, pandas"}
GOALS = {"sweep_overhead_s": 5.0, "predict_s": 3.0, "run_extra_s": 4.0, "promote_extra_s": 4.0,
         "worker_first_trial_s": 3.0, "cold_over_warm": 1.3}


class Env:
    """A temp project: conf/ copy, sweeps/, one working directory per case."""

    def __init__(self, checkout: Path = ROOT) -> None:
        self.checkout = checkout
        self.root = Path(tempfile.mkdtemp(prefix="vaeok-overhead-"))
        shutil.copytree(checkout / "conf", self.root / "conf")
        self.env = {**os.environ, "PYTHONPATH": str(checkout / "src"), "VAEOK_CONFIG_DIR": str(self.root / "conf"),
                    "PYTHONWARNINGS": "ignore"}
        self.env.pop("MLFLOW_TRACKING_URI", None)
        self.n = 0

    def workdir(self, name: str) -> Path:
        self.n += 1
        d = self.root / f"{self.n:02d}-{name}"
        d.mkdir()
        return d

    def cli(self, args: list[str], cwd: Path, probe: list[str] | None = None, check: bool = True) -> dict[str, Any]:
        """Run `vaeok <args>` (through the probe if asked); wall time, output, probe record."""
        env = dict(self.env)
        out = cwd / f"probe-{time.time_ns()}.json"
        if probe is not None:
            env["VAEOK_PROBE"] = ",".join(probe)
            env["VAEOK_PROBE_OUT"] = str(out)
            cmd = [sys.executable, PROBE, *args]
        else:
            cmd = [sys.executable, "-m", "vaeok", *args]
        load = os.getloadavg()[0]
        t_epoch, t = time.time(), time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if check and proc.returncode != 0:
            raise SystemExit(f"`vaeok {' '.join(args)}` failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        rec = json.loads(out.read_text()) if out.is_file() else None
        return {"wall_s": wall, "t_spawn": t_epoch, "t_end": t_epoch + wall, "rc": proc.returncode,
                "stdout": proc.stdout, "stderr": proc.stderr, "probe": rec, "load": load}


def _ts(dt: datetime) -> float:
    return dt.timestamp()  # Optuna stores naive local times; time.time() is on the same clock


def study_trials(cwd: Path, name: str) -> list[Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{cwd}/mlruns/optuna.db")
    return [t for t in study.get_trials(deepcopy=False) if t.datetime_start and t.datetime_complete]


def probe_seconds(rec: dict | None, names: list[str]) -> float:
    if not rec:
        return float("nan")
    return sum(c[2] for c in rec["calls"] if c[0] in names)


def mlflow_runs(cwd: Path) -> list[tuple[str, float, float]]:
    """(name, start s, end s) of the runs in the temp MLflow store (read with sqlite3, no MLflow import)."""
    with sqlite3.connect(cwd / "mlruns" / "mlflow.db") as db:
        rows = db.execute("select name, start_time, end_time from runs").fetchall()
    return [(n, s / 1000, (e or s) / 1000) for n, s, e in rows]


# --- the cases -----------------------------------------------------------------------------
def case_sweep(env: Env, n_trials: int) -> dict[str, Any]:
    cwd = env.workdir(f"sweep{n_trials}")
    spec = str(env.checkout / "sweeps" / "tpe.yaml")
    r = env.cli(["sweep", "--n-trials", str(n_trials), "--no-progress", "--spec", spec], cwd, probe=FIGURES)
    trials = sorted(study_trials(cwd, "tpe"), key=lambda t: t.datetime_start)
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials]
    first, last = _ts(trials[0].datetime_start), _ts(trials[-1].datetime_complete)
    before, after = first - r["t_spawn"], r["t_end"] - last
    between = (last - first) - sum(durations)
    figures = probe_seconds(r["probe"], FIGURES)
    return {"case": f"sweep{n_trials}", "load": r["load"], "wall_s": r["wall_s"], "trials": len(trials),
            "trial_sum_s": sum(durations), "overhead_s": r["wall_s"] - sum(durations), "before_first_s": before,
            "between_s": between, "after_last_s": after, "figures_s": figures,
            "workdir": str(cwd)}


def case_run(env: Env) -> dict[str, Any]:
    cwd = env.workdir("run")
    first = env.cli(["run"], cwd)
    (_, s1, e1), = mlflow_runs(cwd)
    second = env.cli(["run"], cwd)  # the same command again: the store exists now
    (_, s2, e2), = [x for x in mlflow_runs(cwd) if x[1] > s1]
    return {"case": "run", "load": first["load"], "wall_s": first["wall_s"], "trial_s": e1 - s1,
            "extra_s": first["wall_s"] - (e1 - s1), "wall2_s": second["wall_s"], "trial2_s": e2 - s2,
            "extra2_s": second["wall_s"] - (e2 - s2)}


def ensure_study(env: Env) -> Path:
    """A directory holding a finished 5-trial default study (reused by promote and predict)."""
    if getattr(env, "study_dir", None) is None:
        cwd = env.workdir("study")
        env.cli(["sweep", "--n-trials", "5", "--no-progress", "--spec", str(env.checkout / "sweeps" / "tpe.yaml")], cwd)
        env.study_dir = cwd  # type: ignore[attr-defined]
    return env.study_dir  # type: ignore[attr-defined]


def case_promote(env: Env) -> dict[str, Any]:
    cwd = ensure_study(env)
    r = env.cli(["promote", "--study", "tpe", "--allow-worse-than-baseline"], cwd, probe=REFITS)
    refit = probe_seconds(r["probe"], REFITS)
    done = [ln for ln in r["stdout"].splitlines() if ln.startswith("done in")]
    return {"case": "promote", "load": r["load"], "wall_s": r["wall_s"], "refit_s": refit,
            "extra_s": r["wall_s"] - refit, "n_refits": len(r["probe"]["calls"]) if r["probe"] else 0,
            "done_in": done[-1] if done else ""}


def new_rows_csv(path: Path, checkout: Path, n: int = 10, bad: bool = False) -> Path:
    example = checkout / "examples" / "new_rows.csv"
    if example.is_file() and not bad:
        lines = example.read_text().splitlines()
        path.write_text("\n".join(lines[: n + 1]) + "\n")
        return path
    code = ("import sys\ntry:\n from vaeok.data import rubber_surrogate\nexcept ImportError:\n"
            " from vaeok.data.datasets import rubber_surrogate\nd = rubber_surrogate()\n"
            "print(','.join(d.feature_names))\nfor x in d.X[:N]: print(','.join(f'{v:.6g}' for v in x))"
            ).replace("N", str(n))
    text = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(checkout / "src")},
                          capture_output=True, text=True, check=True).stdout
    if bad:
        head, _, rest = text.partition("\n")
        text = head + "_typo\n" + rest
    path.write_text(text)
    return path


def registered_model(cwd: Path) -> str:
    """The one registered model of a promoted study's store (its name carries the data digest)."""
    with sqlite3.connect(cwd / "mlruns" / "mlflow.db") as db:
        names = [r[0] for r in db.execute("select name from registered_models")]
    if len(names) != 1:
        raise RuntimeError(f"expected one registered model in {cwd}, found {names}")
    return names[0]


def case_predict(env: Env) -> dict[str, Any]:
    cwd = ensure_study(env)
    if not (cwd / ".promoted").exists():
        env.cli(["promote", "--study", "tpe", "--allow-worse-than-baseline"], cwd)
        (cwd / ".promoted").touch()
    model = f"models:/{registered_model(cwd)}@champion"
    good = new_rows_csv(cwd / "rows10.csv", env.checkout)
    bad = new_rows_csv(cwd / "rows10_bad.csv", env.checkout, bad=True)
    r = env.cli(["predict", "--model", model, "--input", str(good)], cwd)
    n_out = len(r["stdout"].strip().splitlines()) - 1
    w = env.cli(["predict", "--model", model, "--input", str(bad)], cwd, check=False)
    return {"case": "predict", "load": r["load"], "wall_s": r["wall_s"], "rows_out": n_out,
            "wrong_columns_wall_s": w["wall_s"], "wrong_columns_rc": w["rc"],
            "wrong_columns_msg": w["stderr"].strip().splitlines()[-1] if w["stderr"].strip() else ""}


def _same_work_spec(cwd: Path, n: int) -> Path:
    p = cwd / "samework.yaml"
    p.write_text(SAME_WORK_SPEC % (n, ", ".join(str(10 + i) for i in range(n))))
    return p


def case_workers(env: Env, n_trials: int = 4) -> dict[str, Any]:
    cwd = env.workdir("workers")
    spec = _same_work_spec(cwd, n_trials)
    r = env.cli(["sweep", "--spec", str(spec), "--workers", "2", "--no-progress"], cwd, probe=[])
    # a worker whose grid point another worker already ran returns that trial's result at once
    trials = [t for t in study_trials(cwd, "samework") if "duplicate_of" not in t.user_attrs]
    spawns = {s["pid"]: s["t_start_call"] for s in r["probe"]["spawns"]}
    firsts, per_worker = {}, {}
    for t in sorted(trials, key=lambda t: t.datetime_start):
        pid = t.user_attrs.get("pid")
        per_worker.setdefault(pid, []).append((t.datetime_complete - t.datetime_start).total_seconds())
        firsts.setdefault(pid, _ts(t.datetime_start))
    delays = [firsts[p] - spawns[p] for p in firsts if p in spawns]
    ratios = [d[0] / median(d[1:]) for d in per_worker.values() if len(d) > 1]
    return {"case": "workers", "load": r["load"], "wall_s": r["wall_s"], "first_trial_delays_s": delays,
            "worker_first_trial_s": max(delays) if delays else float("nan"),
            "worker_cold_over_warm": median(ratios) if ratios else float("nan"),
            "spawn_after_command_s": min(spawns.values()) - r["t_spawn"] if spawns else float("nan")}


def case_coldwarm(env: Env, n_trials: int = 5) -> dict[str, Any]:
    cwd = env.workdir("coldwarm")
    spec = _same_work_spec(cwd, n_trials)
    r = env.cli(["sweep", "--spec", str(spec), "--no-progress"], cwd)
    trials = sorted(study_trials(cwd, "samework"), key=lambda t: t.datetime_start)
    d = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials]
    values = {t.values[0] for t in trials}
    return {"case": "coldwarm", "load": r["load"], "cold_s": d[0], "warm_s": median(d[1:]),
            "cold_over_warm": d[0] / median(d[1:]), "same_value_all_trials": len(values) == 1,
            "r2": trials[0].values[0]}


def import_profile(repeats: int, checkout: Path = ROOT) -> dict[str, Any]:
    """Wall time of importing the heavy modules in fresh interpreters (median of `repeats`)."""
    mods = {"torch": "import torch", "lightning.pytorch": "import lightning.pytorch",
            "pytorch_lightning": "import pytorch_lightning", "mlflow": "import mlflow",
            "mlflow.pyfunc": "import mlflow.pyfunc", "optuna": "import optuna",
            "optuna.visualization.matplotlib": "import optuna.visualization.matplotlib",
            "sklearn.ensemble": "import sklearn.ensemble", "hydra compose": "import hydra, omegaconf",
            "python -c pass": "pass", **FLOORS}
    env = {**os.environ, "PYTHONPATH": str(checkout / "src")}
    times: dict[str, list[float]] = {k: [] for k in mods}
    for _ in range(repeats):
        for k, code in mods.items():
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=False)
            times[k].append(time.perf_counter() - t)
    return {k: median(v) for k, v in times.items()}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["case"], []).append(r)
    out: dict[str, Any] = {}
    for case, rs in by.items():
        out[case] = {k: median([r[k] for r in rs]) for k, v in rs[0].items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool)}
        out[case]["n"] = len(rs)
        out[case]["load_range"] = [min(r["load"] for r in rs), max(r["load"] for r in rs)]
    return out


def goal_rows(s: dict[str, Any], imports: dict[str, float] | None = None) -> list[tuple[str, str, str, str]]:
    """(measure, value, target, ok) for each #15 goal present in the summary; with the import
    floors measured, also each goal's value minus the floor of its command (not a goal: context)."""
    rows = []
    floor = (imports or {}).get("floor: VAE-OK run stack")
    predict_floor = (imports or {}).get("floor: predict stack")

    def beyond(value: float, base: float | None) -> None:
        if base is not None:
            rows.append((f"  beyond the import floor ({base:.1f} s)", f"{value - base:.2f} s", "", ""))

    def add(label: str, value: float, goal: float, unit: str = " s", fmt: str = ".2f") -> None:
        rows.append((label, f"{value:{fmt}}{unit}", f"<= {goal:g}{unit}", "yes" if value <= goal else "NO"))

    for case in sorted(k for k in s if k.startswith("sweep")):
        c = s[case]
        add(f"{case[5:]}-trial sweep: wall - sum(trials) (wall {c['wall_s']:.1f}, trials {c['trial_sum_s']:.1f})",
            c["overhead_s"], GOALS["sweep_overhead_s"])
        beyond(c["overhead_s"], floor)
        rows.append((f"  of which before 1st trial / between / after last (figures {c['figures_s']:.1f})",
                     f"{c['before_first_s']:.1f}/{c['between_s']:.1f}/{c['after_last_s']:.1f}", "", ""))
    if "run" in s:
        c = s["run"]
        add(f"vaeok run, new store: wall - run (wall {c['wall_s']:.1f}, run {c['trial_s']:.1f})", c["extra_s"],
            GOALS["run_extra_s"])
        beyond(c["extra_s"], floor)
        add(f"vaeok run, existing store (wall {c['wall2_s']:.1f}, run {c['trial2_s']:.1f})", c["extra2_s"],
            GOALS["run_extra_s"])
    if "promote" in s:
        c = s["promote"]
        add(f"vaeok promote: wall - refits (wall {c['wall_s']:.1f}, refits {c['refit_s']:.1f})", c["extra_s"],
            GOALS["promote_extra_s"])
        beyond(c["extra_s"], floor)
    if "predict" in s:
        c = s["predict"]
        add("vaeok predict, 10 rows: wall", c["wall_s"], GOALS["predict_s"])
        beyond(c["wall_s"], predict_floor)
        rows.append(("vaeok predict, wrong column: wall (exit 2)", f"{c['wrong_columns_wall_s']:.2f} s", "~1 s", ""))
    if "workers" in s:
        c = s["workers"]
        add("spawned worker: spawn -> first trial start (max of 2)", c["worker_first_trial_s"],
            GOALS["worker_first_trial_s"])
        add("spawned worker: first / later trials", c["worker_cold_over_warm"], GOALS["cold_over_warm"], "x")
    if "coldwarm" in s:
        c = s["coldwarm"]
        add(f"first trial in process / warm (cold {c['cold_s']:.2f}, warm {c['warm_s']:.2f})",
            c["cold_over_warm"], GOALS["cold_over_warm"], "x")
    return rows


def print_rows(rows: list[tuple[str, str, str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}} {'value':>14} {'target':>10}  ok")
    print("-" * (width + 32))
    for name, val, tgt, ok in rows:
        print(f"{name:<{width}} {val:>14} {tgt:>10}  {ok}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--trials", type=int, nargs="+", default=[5, 20], help="sweep sizes")
    ap.add_argument("--only", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    ap.add_argument("--no-imports", action="store_true", help="skip timing the heavy imports and the import floors")
    ap.add_argument("--tag", default="", help="suffix of the results file (e.g. before)")
    ap.add_argument("--keep", action="store_true", help="keep the temp directory")
    ap.add_argument("--checkout", type=Path, default=ROOT,
                    help="measure another checkout's src/, conf/ and sweeps/ (e.g. a worktree of main: before/after)")
    args = ap.parse_args()
    only = set(args.only.split(","))
    env = Env(args.checkout.resolve())
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    try:
        for i in range(args.repeats):
            plan: list[tuple[str, Any]] = [(f"sweep{n}", lambda n=n: case_sweep(env, n)) for n in args.trials
                                           if "sweep" in only]
            plan += [(c, fn) for c, fn in (("run", lambda: case_run(env)), ("promote", lambda: case_promote(env)),
                                           ("predict", lambda: case_predict(env)),
                                           ("workers", lambda: case_workers(env)),
                                           ("coldwarm", lambda: case_coldwarm(env))) if c in only]
            if i % 2:
                plan.reverse()  # interleave: no case always runs first or last
            for name, fn in plan:
                row = fn()
                row["repeat"] = i
                rows.append(row)
                print(f"[{i}] {name}: " + ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                                                    for k, v in row.items() if k not in ("case", "workdir")),
                      flush=True)
        summary = summarise(rows)
        imports = None if args.no_imports else import_profile(max(1, args.repeats), env.checkout)
    finally:
        if not args.keep:
            shutil.rmtree(env.root, ignore_errors=True)
    table = goal_rows(summary, imports)
    print_rows(table)
    if imports:
        print("\nimport wall time in a fresh interpreter (median):")
        for k, v in imports.items():
            print(f"  {k:<34} {v:6.2f} s")
    print(f"\nbenchmark wall {time.perf_counter() - t0:.0f} s; load average now {os.getloadavg()[0]:.2f}")
    name = f"overhead{'_' + args.tag if args.tag else ''}.json"
    record = {"env": env_info(), "checkout": str(env.checkout), "rows": rows, "summary": summary, "goals": table,
              "imports": imports, "repeats": args.repeats}
    (RESULTS / name).write_text(json.dumps(record, indent=2, default=str))


if __name__ == "__main__":
    main()
