"""`python -m vaeok` == `vaeok`."""

from vaeok.cli import entry

entry()
