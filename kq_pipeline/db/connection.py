"""Where the fleet database is, and connecting to it without ever showing a password.

`KQ_DATABASE_URL` wins; without it the embedded PostgreSQL (`embedded.py`) is started on demand.
"""

from __future__ import annotations

import os
import re

import psycopg

from kq_pipeline.db.embedded import EmbeddedPostgresError, ensure_embedded

CONNECT_TIMEOUT_S = 10


class DatabaseUnavailable(RuntimeError):
    """The fleet database cannot be reached; the message carries a masked DSN only."""


def resolve_dsn() -> str:
    """The DSN of the fleet database: KQ_DATABASE_URL, or the embedded server (started if needed)."""
    url = os.environ.get("KQ_DATABASE_URL", "").strip()
    if url:
        return url
    try:
        return ensure_embedded()
    except EmbeddedPostgresError as exc:
        raise DatabaseUnavailable(str(exc)) from None


_URL_PASSWORD = re.compile(r"(?P<head>^[a-z][a-z0-9+.-]*://[^:/@?#]*:)(?P<pw>[^@/?#]*)(?P<at>@)", re.I)
_KV_PASSWORD = re.compile(r"(?P<head>(?:^|[\s?&])password\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|[^\s&]*)", re.I)


def masked_dsn(dsn: str) -> str:
    """The DSN with any password replaced by `***` (URL userinfo, `?password=` or `password=` form)."""
    out = _URL_PASSWORD.sub(lambda m: m["head"] + ("***" if m["pw"] else "") + m["at"], dsn)
    return _KV_PASSWORD.sub(lambda m: m["head"] + "***", out)


def _scrub(message: str, dsn: str) -> str:
    """Remove the password from a driver message, whatever form it took there."""
    for m in [*_URL_PASSWORD.finditer(dsn), *_KV_PASSWORD.finditer(dsn)]:
        pw = m["pw"].strip("'")
        if pw:
            message = message.replace(pw, "***")
    return message


def connect(dsn: str | None = None, **kwargs: object) -> psycopg.Connection:
    """A psycopg connection to the fleet database (resolved if `dsn` is None)."""
    target = dsn or resolve_dsn()
    try:
        return psycopg.connect(target, connect_timeout=CONNECT_TIMEOUT_S, **kwargs)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {masked_dsn(target)}: {_scrub(str(exc).strip(), target)}"
        ) from None
