"""SIGTERM handled like Ctrl-C: it raises a KeyboardInterrupt, so runs end KILLED and trials FAIL.

`run`, `sweep` and `compare` (via the CLI) and every sweep worker use `terminate_as_interrupt`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from vaeok.errors import EXIT_INTERRUPTED


class Terminated(KeyboardInterrupt):
    """A KeyboardInterrupt raised by a termination signal; `signum` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum: int, _frame: FrameType | None) -> None:
    # One-shot: a repeated SIGTERM (e.g. to every process of a group, and forwarded by a sweep
    # coordinator) must not interrupt the cleanup that marks runs KILLED. SIGKILL still ends all.
    signal.signal(signum, signal.SIG_IGN)
    raise Terminated(signum)


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block the first SIGTERM raises `Terminated` (a KeyboardInterrupt) and later ones
    are ignored; the previous handler is restored afterwards. Outside the main thread (no signal
    handlers there) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_code(exc: KeyboardInterrupt) -> int:
    """128 + the signal number: 130 for Ctrl-C (SIGINT), 143 for SIGTERM."""
    return 128 + exc.signum if isinstance(exc, Terminated) else EXIT_INTERRUPTED
