"""User-facing errors and exit codes: bad input is reported as one line with exit code 2."""

import signal


class UserError(Exception):
    """Bad input from the user (data, config, CLI arguments); the CLI exits 2 with the message."""


class NumericalError(UserError):
    """Training diverged (NaN/inf) under the chosen config; the message names the knob to change."""


EXIT_FAILURE = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143


def one_line(exc: BaseException) -> str:
    """'ExceptionType: first line of the message' (what runs and trials record as their error)."""
    msg = str(exc).strip()
    return f"{type(exc).__name__}: {msg.splitlines()[0]}" if msg else type(exc).__name__
