"""Where the project may write: relative paths from configs and names stay inside their root."""

from __future__ import annotations

import os
import re
from pathlib import Path

from vaeok.core.errors import UserError

_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def safe_name(name: str, what: str) -> str:
    """`name` if it can be used as one file-name component (letters, digits, _ . -; no path
    separators, no leading dot); else UserError naming `what`."""
    if not _FILE_NAME.match(name) or ".." in name:
        raise UserError(f"{what} '{name}' cannot be used in a file name: use letters, digits, _ . - only "
                        "(no '/', no '..', not starting with '.')")
    if len(name) > MAX_NAME:
        raise UserError(f"{what} '{name[:20]}...' is too long ({len(name)} characters, at most {MAX_NAME}: "
                        "it becomes part of file names such as promoted_<study>_challenger.yaml)")
    return name


# File names are at most 255 bytes; promote writes promoted_<name>_challenger.yaml (25 more).
MAX_NAME = 200


def inside(root: Path, relative: str | Path, what: str) -> Path:
    """`root / relative` resolved; UserError naming `what` if it escapes `root` (e.g. via '..').

    Absolute paths are the user's deliberate choice and are returned as given.
    """
    rel = Path(relative).expanduser()
    if rel.is_absolute():
        return rel
    base = root.resolve()
    try:
        target = (base / rel).resolve()
    except (RuntimeError, OSError):  # a symlink loop: judged by the path as written (the store reports the loop)
        target = Path(os.path.normpath(base / rel))
    if target != base and base not in target.parents:
        raise UserError(f"{what}={relative} escapes {base}; use a path inside it, or an absolute path "
                        "if you mean to write elsewhere")
    return target
