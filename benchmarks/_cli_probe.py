"""Run the `vaeok` CLI with a few functions timed, for benchmarks/overhead.py.

    VAEOK_PROBE="pkg.mod:func,pkg.other:Class.method" VAEOK_PROBE_OUT=probe.json \
        python benchmarks/_cli_probe.py sweep --n-trials 5

Each named function is wrapped *when its module is first imported* (an import hook), so probing
does not import anything earlier than the CLI would: lazy imports stay lazy. Names whose module
is never imported, or that do not exist (another source layout), are ignored. The wrapper
appends `[name, start_epoch_s, seconds]` per call. Spawned multiprocessing children are
recorded too (`spawn`: pid and `time.time()` just before `Process.start`). The JSON is written
at exit of the probed process (children write nothing).
"""

from __future__ import annotations

import atexit
import functools
import importlib.abc
import json
import os
import sys
import time
from typing import Any

CALLS: list[list[Any]] = []
SPAWNS: list[dict[str, Any]] = []
T0 = time.time()


def _wrap(owner: Any, attr: str, label: str) -> None:
    fn = getattr(owner, attr, None)
    if fn is None or getattr(fn, "_probed", False):
        return

    @functools.wraps(fn)
    def timed(*a: Any, **kw: Any) -> Any:
        start, t = time.time(), time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            CALLS.append([label, start, time.perf_counter() - t])

    timed._probed = True  # type: ignore[attr-defined]
    setattr(owner, attr, timed)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Wraps the probed functions of a module right after the module executes."""

    def __init__(self, targets: dict[str, list[str]]) -> None:
        self.targets = targets

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in self.targets:
            return None
        sys.meta_path.remove(self)
        try:
            import importlib.util

            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        loader, attrs = spec.loader, self.targets[name]
        original = loader.exec_module

        def exec_module(module: Any) -> None:
            original(module)
            for dotted in attrs:
                owner, *rest = dotted.split(".")
                obj: Any = module
                if rest:
                    obj = getattr(module, owner, None)
                    owner = rest[-1]
                if obj is not None:
                    _wrap(obj, owner, f"{name}:{dotted}")

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _install() -> None:
    targets: dict[str, list[str]] = {}
    for item in filter(None, os.environ.get("VAEOK_PROBE", "").split(",")):
        mod, _, attr = item.partition(":")
        targets.setdefault(mod, []).append(attr)
    if targets:
        sys.meta_path.insert(0, _PatchOnImport(targets))

    import multiprocessing.process as mpp

    start = mpp.BaseProcess.start

    def recorded_start(self: Any) -> None:
        t = time.time()
        start(self)
        SPAWNS.append({"pid": self.pid, "t_start_call": t, "t_started": time.time()})

    mpp.BaseProcess.start = recorded_start  # type: ignore[method-assign]


def _dump() -> None:
    out = os.environ.get("VAEOK_PROBE_OUT")
    if out:
        with open(out, "w") as fh:
            json.dump({"t0": T0, "pid": os.getpid(), "calls": CALLS, "spawns": SPAWNS}, fh)


if __name__ == "__main__":
    _install()
    atexit.register(_dump)
    from vaeok.cli import main

    sys.exit(main(sys.argv[1:]))
