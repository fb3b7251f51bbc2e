"""Peak memory (and wall time) of a short default sweep, measured on a subprocess.

Runs `python -m vaeok sweep --n-trials N --no-progress` (default spec sweeps/tpe.yaml) in a temp
working directory (its own mlruns/ and Optuna DB) and reads the child's peak RSS with
resource.getrusage(RUSAGE_CHILDREN) (and os.wait4 for that child alone). Also measures the CLI's
start-up cost: `python -c "import vaeok.experiment, vaeok.study.sweep"` and `python -m vaeok --help`.

Run: PYTHONPATH=src python benchmarks/memory.py [--n-trials 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from _common import RESULTS, ROOT, env_info, median

TARGET_GB = 1.5


def child(cmd: list[str], cwd: str) -> dict:
    """Run a child; its wall time, exit code and peak RSS (MB) via wait4 and RUSAGE_CHILDREN."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "VAEOK_CONFIG_DIR": str(ROOT / "conf"),
           "PYTHONWARNINGS": "ignore"}
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"cmd": " ".join(cmd[1:]), "rc": proc.returncode, "wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024,
            "rusage_children_max_mb": children.ru_maxrss / 1024, "tail": out.strip().splitlines()[-12:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-trials", type=int, default=3)
    ap.add_argument("--spec", default=str(ROOT / "sweeps" / "tpe.yaml"))
    ap.add_argument("--startup-repeats", type=int, default=3)
    args = ap.parse_args()
    py = sys.executable
    tmp = tempfile.mkdtemp(prefix="vaeok-mem-")
    sweep = child([py, "-m", "vaeok", "sweep", "--spec", args.spec, "--n-trials", str(args.n_trials),
                   "--no-progress", "--study", "bench_memory"], tmp)
    if sweep["rc"] != 0:
        print("\n".join(sweep["tail"]))
        raise SystemExit(f"sweep failed with exit code {sweep['rc']}")
    imports = [child([py, "-c", "import vaeok.experiment, vaeok.study.sweep"], tmp)
               for _ in range(args.startup_repeats)]
    helps = [child([py, "-m", "vaeok", "--help"], tmp) for _ in range(args.startup_repeats)]
    rows = [
        (f"sweep --n-trials {args.n_trials} (wall s / peak RSS MB)", sweep["wall_s"], sweep["peak_rss_mb"]),
        ("import vaeok.experiment+sweep (median)", median([c["wall_s"] for c in imports]),
         median([c["peak_rss_mb"] for c in imports])),
        ("vaeok --help (median)", median([c["wall_s"] for c in helps]), median([c["peak_rss_mb"] for c in helps])),
    ]
    print(f"{'case':<44} {'wall s':>8} {'peak RSS MB':>12}")
    for name, wall, rss in rows:
        print(f"{name:<44} {wall:8.2f} {rss:12.0f}")
    ok = sweep["peak_rss_mb"] / 1024 < TARGET_GB
    print(f"RUSAGE_CHILDREN max RSS: {sweep['rusage_children_max_mb']:.0f} MB; "
          f"target < {TARGET_GB} GB: {'yes' if ok else 'NO'}")
    out = {"env": env_info(), "n_trials": args.n_trials, "spec": args.spec, "sweep": sweep, "imports": imports,
           "help": helps, "target_gb": TARGET_GB, "ok": ok,
           "summary": {"sweep_peak_rss_mb": sweep["peak_rss_mb"], "sweep_wall_s": sweep["wall_s"],
                       "import_s": rows[1][1], "help_s": rows[2][1]}}
    (RESULTS / "memory.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
