"""Screenshots of the MLflow UI over a vaeok store, taken in headless Chromium.

    python -m tests.ui.screens --store DIR --out DIR [--study tpe]   # DIR holds mlruns/
    python -m tests.ui.screens --sweep --store DIR --out DIR         # first run `vaeok sweep` there

Starts `vaeok ui` on a free port in the store's directory, opens the URL it prints, and captures
what a user clicks through: the experiment (model-training view), the study parent expanded with
its trials, a trial's run page, a pruned trial, the study parent's description, the compare page,
and the study's contour and slice figures. Alongside the PNGs it returns (and writes to
`facts.json`) what the pages showed, so `tests/ui/test_ui_screens.py` can assert on it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.ui.cdp import Browser, find_chromium

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Facts:
    """What the captured pages showed."""

    landing_url: str = ""
    landing_hash: str = ""
    landing_text: str = ""
    trial_rows: list[str] = field(default_factory=list)
    matching_runs: str = ""
    trial_page_text: str = ""
    pruned_page_text: str = ""
    parent_page_text: str = ""
    compare_text: str = ""
    shots: list[str] = field(default_factory=list)


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p)
    conf = os.environ.get("VAEOK_CONFIG_DIR", str(REPO / "conf"))
    return {**os.environ, "PYTHONPATH": path, "VAEOK_CONFIG_DIR": conf}


def _vaeok() -> list[str]:
    return [sys.executable, "-m", "vaeok"]


def run_sweep(store: Path, args: list[str]) -> None:
    """`vaeok sweep ARGS` in `store` (the main job when ARGS is empty)."""
    store.mkdir(parents=True, exist_ok=True)
    subprocess.run([*_vaeok(), "sweep", "--no-progress", *args], cwd=store, env=_env(), check=True)


class UiServer:
    """`vaeok ui` in its own process group; stopped (the whole group) on exit."""

    def __init__(self, store: Path, port: int) -> None:
        self.log = store / "ui-server.log"
        self.proc = subprocess.Popen([*_vaeok(), "ui", "--port", str(port)], cwd=store, env=_env(),
                                     stdout=self.log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{self.base}/health", timeout=2)
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"vaeok ui did not come up: {self.log.read_text()[-2000:]}") from None
                time.sleep(0.5)

    def printed_url(self) -> str:
        """The experiment URL `vaeok ui` printed (its first http:// URL)."""
        m = re.search(r"http://\S+", self.log.read_text())
        return m.group(0) if m else self.base

    def stop(self) -> None:
        """SIGTERM the server's process group and wait for it."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def __enter__(self) -> UiServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _study_runs(store: Path, study: str) -> tuple[str, Any, list[Any]]:
    """(experiment id, parent run, trial runs) of a study, read through the MLflow client."""
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{store.resolve()}/mlruns/mlflow.db")
    exp = mlflow.get_experiment_by_name("vaeok")
    runs = MlflowClient().search_runs([exp.experiment_id], f"tags.`vaeok.study` = '{study}'", max_results=1000)
    parent = next(r for r in runs if r.data.tags.get("vaeok.role") == "study")
    trials = sorted((r for r in runs if "vaeok.trial" in r.data.tags), key=lambda r: int(r.data.tags["vaeok.trial"]))
    return exp.experiment_id, parent, trials


_CLOSE_ASSISTANT = ("(() => { const b = document.querySelector("
                    "'[data-component-id=\"mlflow.assistant.chat_panel.close\"]'); if (b) b.click(); return true; })()")


def _close_popups(b: Browser) -> None:
    b.js(_CLOSE_ASSISTANT)
    b.js("(() => { for (const x of document.querySelectorAll('button')) if (x.innerText.trim() === 'Got it') x.click();"
         " return true; })()")


def capture(store: Path, out: Path, study: str = "tpe", width: int = 1600, height: int = 1000) -> Facts:
    """Screenshots of the UI over `store`/mlruns into `out`; the facts the pages showed."""
    binary = find_chromium()
    if binary is None:
        raise RuntimeError("no chromium found (apt-get install chromium, or set $CHROMIUM)")
    exp_id, parent, trials = _study_runs(store, study)
    facts = Facts()
    out.mkdir(parents=True, exist_ok=True)
    with UiServer(store, free_port()) as server, Browser(binary, width, height) as b:
        base = server.base

        def shot(name: str, full_page: bool = False) -> None:
            _close_popups(b)
            b.settle(1.0)
            facts.shots.append(str(b.screenshot(out / name, full_page=full_page)))

        # 1. the experiment, as `vaeok ui` links to it
        facts.landing_url = server.printed_url()
        url = facts.landing_url if "#/experiments/" in facts.landing_url else f"{base}/#/experiments/{exp_id}"
        b.goto(url)
        text = "document.body.innerText"
        b.wait_for(f"{text}.includes('study-{study}') || {text}.includes('Traces')", 60)
        b.settle(3)
        facts.landing_hash = str(b.js("location.hash"))
        facts.landing_text = b.text()
        shot("01_experiment.png")

        # 2. the study parent expanded: its trials nested under it
        b.goto(f"{base}/#/experiments/{exp_id}/runs?workflowType=machine_learning")
        b.wait_for_text(f"study-{study}", 60)
        b.settle(1)
        b.js("(() => { const x = document.querySelector('[data-component-id$=\"runnamecellrenderer.tsx_46\"]');"
             " if (x) x.click(); return true; })()")
        b.wait_for_text(trials[0].info.run_name if trials else f"study-{study}", 30)
        b.settle(2)
        facts.trial_rows = [n for n in b.js(
            "Array.from(document.querySelectorAll('a')).map(a => a.innerText.trim())") if n.startswith(f"{study}-")]
        m = re.search(r"(\d+)\s+matching runs", b.text())
        facts.matching_runs = m.group(1) if m else ""
        b.resize(width, max(height, 330 + 42 * (len(trials) + 2)))
        shot("02_study_trials.png")
        b.resize(width, height)

        b.resize(width, int(height * 1.6))  # run pages: description, metrics and params in one picture
        # 3. a completed trial's run page (params, dataset, tags)
        done = [r for r in trials if r.data.tags.get("vaeok.state") == "COMPLETE"
                and "vaeok.duplicate_of" not in r.data.tags]
        if done:
            best = max(done, key=lambda r: r.data.metrics.get("val/r2", float("-inf")))
            b.goto(f"{base}/#/experiments/{exp_id}/runs/{best.info.run_id}?workflowType=machine_learning")
            b.wait_for_text("Parameters", 60)
            b.settle(2)
            facts.trial_page_text = b.text()
            shot("03_trial_run.png")

        # 4. a pruned trial's run page
        pruned = [r for r in trials if r.data.tags.get("vaeok.state") == "PRUNED"]
        if pruned:
            b.goto(f"{base}/#/experiments/{exp_id}/runs/{pruned[0].info.run_id}?workflowType=machine_learning")
            b.wait_for_text("Parameters", 60)
            b.settle(2)
            facts.pruned_page_text = b.text()
            shot("04_pruned_trial.png")

        # 5. the study parent: description, metrics, artifacts
        b.goto(f"{base}/#/experiments/{exp_id}/runs/{parent.info.run_id}?workflowType=machine_learning")
        b.wait_for_text("Parameters", 60)
        b.settle(2)
        facts.parent_page_text = b.text()
        shot("05_study_parent.png")

        # 6. compare the completed trials
        ids = json.dumps([r.info.run_id for r in done][:12])
        b.goto(f"{base}/#/compare-runs?runs={ids}&experiments={json.dumps([exp_id])}&workflowType=machine_learning")
        b.wait_for_text("Parameters", 60)
        b.settle(4)
        facts.compare_text = b.text()
        shot("06_compare.png")

        b.resize(width, height)
        # 7. the study's figures as the artifact viewer shows them
        for i, fig in enumerate(("contour", "slice", "param_importances"), start=7):
            b.goto(f"{base}/#/experiments/{exp_id}/runs/{parent.info.run_id}/artifacts/figures/{fig}.png"
                   "?workflowType=machine_learning")
            b.wait_for("document.querySelector('img[src^=\"blob:\"]') !== null", 60)
            b.settle(2)
            shot(f"{i:02d}_figure_{fig}.png")
    (out / "facts.json").write_text(json.dumps(asdict(facts), indent=1))
    return facts


def main(argv: list[str] | None = None) -> int:
    """Command line: optionally run the main-job sweep, then capture the screenshots."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True, help="directory holding (or to hold) mlruns/")
    ap.add_argument("--out", type=Path, required=True, help="where the PNGs and facts.json go")
    ap.add_argument("--study", default="tpe")
    ap.add_argument("--sweep", action="store_true", help="first run `vaeok sweep` (the main job) in --store")
    ap.add_argument("sweep_args", nargs="*", help="extra `vaeok sweep` arguments with --sweep")
    args = ap.parse_args(argv)
    if args.sweep:
        run_sweep(args.store, args.sweep_args)
    facts = capture(args.store, args.out, args.study)
    for s in facts.shots:
        print(s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
