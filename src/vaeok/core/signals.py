"""SIGTERM handled like Ctrl-C: it raises a KeyboardInterrupt, so runs end KILLED and trials FAIL.

`run`, `sweep` and `compare` (via the CLI) and every sweep worker use `terminate_as_interrupt`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from vaeok.core.errors import EXIT_INTERRUPTED


class Terminated(KeyboardInterrupt):
    """A KeyboardInterrupt raised by a termination signal; `signum` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# The last interrupt raised by a handler and not yet seen by a run's cleanup. Python drops an
# exception raised inside some callbacks (e.g. a Ctrl-C landing in importlib's module-lock weakref
# callback during a lazy import prints "Exception ignored" and goes on); `raise_pending` re-raises
# such a swallowed interrupt at the end of the run, so it still ends KILLED.
_pending: KeyboardInterrupt | None = None
# Set by the first Ctrl-C/SIGTERM of a command: later ones are ignored, so a second Ctrl-C (or a
# SIGTERM sent to every process of a group, and forwarded by a sweep coordinator) cannot interrupt
# the cleanup that marks runs KILLED and trials FAIL. SIGKILL (or Ctrl-backslash, SIGQUIT) still ends everything.
_interrupted = False
_depth = 0


def _raise(signum: int, _frame: FrameType | None) -> None:
    global _pending, _interrupted
    if _interrupted:
        return
    _interrupted = True
    signal.signal(signum, signal.SIG_IGN)
    _pending = Terminated(signum)
    raise _pending


def _raise_sigint(_signum: int, _frame: FrameType | None) -> None:
    global _pending, _interrupted
    if _interrupted:
        return
    _interrupted = True
    _pending = KeyboardInterrupt()
    raise _pending


def interrupt_in(exc: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt an exception was raised while handling, if any (a library's cleanup
    that failed because an interrupt cut it short, e.g. Optuna's UnboundLocalError 'updated_state')."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return cur
        seen.add(id(cur))
        cur = cur.__context__
    return None


def delivered() -> None:
    """A KeyboardInterrupt reached its handler (a run's cleanup): nothing is pending any more."""
    global _pending
    _pending = None


def raise_pending() -> None:
    """Re-raise an interrupt that a signal handler raised but Python swallowed (see `_pending`)."""
    global _pending
    exc, _pending = _pending, None
    if exc is not None:
        raise exc


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block the first SIGTERM raises `Terminated` (a KeyboardInterrupt) and later ones
    are ignored; the previous handler is restored afterwards. Outside the main thread (no signal
    handlers there) it does nothing."""
    global _depth, _interrupted
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    delivered()
    if _depth == 0:
        _interrupted = False  # a new command (in-process callers run several)
    _depth += 1
    previous = signal.signal(signal.SIGTERM, _raise)
    previous_int = signal.signal(signal.SIGINT, _raise_sigint)
    try:
        yield
        raise_pending()
    finally:
        _depth -= 1
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def exit_code(exc: KeyboardInterrupt) -> int:
    """128 + the signal number: 130 for Ctrl-C (SIGINT), 143 for SIGTERM."""
    return 128 + exc.signum if isinstance(exc, Terminated) else EXIT_INTERRUPTED
