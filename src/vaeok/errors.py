"""User-facing errors: raised for bad input, reported as one line with exit code 2."""


class UserError(Exception):
    """Bad input from the user (data, config, CLI arguments); the CLI exits 2 with the message."""


EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
