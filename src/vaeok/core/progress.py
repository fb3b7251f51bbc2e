"""The trial progress bar on stderr (tqdm), or None when progress is off."""

from __future__ import annotations

import sys
from typing import Any


def trial_bar(total: int, initial: int, enabled: bool) -> Any:
    """A tqdm bar counting finished trials, or None when `enabled` is false."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="trials", unit="trial", file=sys.stderr, dynamic_ncols=True)
