"""Does scoring the folds across cores pay? (issue #15, last goal)

A trial's scoring (per fold: kriging labels for the virtual rows + a GBR fit on real + virtual
rows + predicting the held-out rows) is independent per fold. This script takes the default
config, trains the fold-VAEs once, and then times, in ONE process, interleaved over --repeats:

  serial     the harness's own `score_folds` (folds one after another)
  threads N  the same per-fold work in a ThreadPoolExecutor of N threads (GBR's tree builder and
             the kriging linear algebra release the GIL), results gathered in fold order

Both run warm (variograms memoised, as in every trial after the first of a sweep). It checks that
the pooled predictions are bit-identical (each fold keeps its own random_state) and reports the
speed-up of the scoring step and what it means for a whole trial (scoring runs twice per default
sweep trial: at the pruning epoch and at the end).

Run: PYTHONPATH=src python benchmarks/fold_parallel.py [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from _common import RESULTS, env_info, median


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[2])
    args = ap.parse_args()
    from hydra.utils import instantiate

    from vaeok.config.compose import load_config
    from vaeok.core.runtime import configure_runtime
    from vaeok.data.datasets import load_dataset
    from vaeok.data.splits import inner_folds
    from vaeok.evaluation import scoring as ev
    from vaeok.generators.base import TrainSet

    cfg = load_config(["tracking.enabled=false"])
    configure_runtime(cfg.torch_threads)
    data = load_dataset(cfg.data)
    dev, _ = ev.development_rows(cfg, data)
    e = cfg.evaluation
    folds = inner_folds(dev.n_rows, e.protocol, e.n_splits, e.n_repeats, e.loocv_below, cfg.seed)
    train_sets = [TrainSet(dev.X[f.train], dev.y[f.train]) for f in folds]
    gen = instantiate(cfg.generator, _recursive_=False)
    module = gen.fit(train_sets, cfg.seed)
    virtual_sets = gen.virtual_sets(module)

    def one_fold(i: int) -> np.ndarray:
        fold, train = folds[i], train_sets[i]
        virtual = ev.label_virtual(cfg, virtual_sets[i], train)
        return ev.fit_predict(cfg, train, virtual, dev.X[fold.test])

    def threaded(n: int) -> np.ndarray:
        with ThreadPoolExecutor(n) as pool:
            return np.concatenate(list(pool.map(one_fold, range(len(folds)))))

    serial_pred = ev.score_folds(cfg, dev, folds, virtual_sets).predictions.y_pred.to_numpy()  # warms the cache
    times: dict[str, list[float]] = {"serial": [], **{f"threads {n}": [] for n in args.threads}}
    identical = True
    for r in range(args.repeats):
        order = list(times) if r % 2 == 0 else list(reversed(times))
        for case in order:
            t = time.perf_counter()
            if case == "serial":
                pred = ev.score_folds(cfg, dev, folds, virtual_sets).predictions.y_pred.to_numpy()
            else:
                pred = threaded(int(case.split()[1]))
            times[case].append(time.perf_counter() - t)
            identical &= bool(np.array_equal(pred, serial_pred))
    med = {k: median(v) for k, v in times.items()}
    print(f"{'case':<12} {'median s':>9} {'min':>7} {'max':>7} {'speed-up':>9}")
    for k, v in times.items():
        print(f"{k:<12} {med[k]:9.3f} {min(v):7.3f} {max(v):7.3f} {med['serial'] / med[k]:8.2f}x")
    print(f"predictions bit-identical to serial: {'yes' if identical else 'NO'}; "
          f"load average {os.getloadavg()[0]:.2f}; {os.cpu_count()} cpus")
    out = {"env": env_info(), "times": times, "median": med, "identical": identical, "n_folds": len(folds)}
    (RESULTS / "fold_parallel.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
