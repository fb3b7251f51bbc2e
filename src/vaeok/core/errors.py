"""User-facing errors and exit codes: bad input is reported as one line with exit code 2."""

import signal


class UserError(Exception):
    """Bad input from the user (data, config, CLI arguments); the CLI exits 2 with the message."""


class NumericalError(UserError):
    """Training diverged (NaN/inf) under the chosen config; the message names the knob to change."""


EXIT_FAILURE = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130


def message(exc: BaseException) -> str:
    """First line of an exception's message, or its type name when the message is empty."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def one_line(exc: BaseException) -> str:
    """'ExceptionType: first line of the message' (what runs and trials record as their error)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def first_line(exc: BaseException) -> str:
    """First line of an exception's message (its type name if empty), plus its cause's first line
    when that adds something (Hydra and OmegaConf wrap the useful message)."""
    text = message(exc)
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause).strip() and str(cause).split("\n")[0] not in text:
        text = f"{text}: {str(cause).splitlines()[0]}"
    return text
