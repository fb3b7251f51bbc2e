"""Secrets never reach the console, MLflow params/tags or logged configs: passwords in URLs are masked.

`redact_url("postgresql://user:secret@host/db")` -> `"postgresql://user:***@host/db"`; query
parameters named like secrets (`password=`, `token=`, ...) are masked too. `redact_text` does the
same for every URL inside a longer text (an error message, a config YAML, a list of overrides).
"""

from __future__ import annotations

import re

MASK = "***"
# scheme://user:password@  (the password runs up to the last '@' before the host part)
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@'\"]*:)(?P<secret>[^\s/'\"]*)(?=@)")
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&;](?:password|passwd|pwd|secret|token|access_token|api_key|apikey|key|sslpassword)=)"
    r"(?P<secret>[^&;#\s'\"]+)",
    re.IGNORECASE,
)


def redact_text(text: str) -> str:
    """`text` with the password of every `scheme://user:password@host` URL (and secret-named query
    parameters) replaced by ***."""
    text = _USERINFO.sub(lambda m: m.group("head") + MASK, text)
    return _QUERY_SECRET.sub(lambda m: m.group("head") + MASK, text)


def redact_url(url: str | None) -> str:
    """A URL safe to print or log: `postgresql://user:***@host/db` (None -> '')."""
    return "" if url is None else redact_text(str(url))
