"""Where the fleet database is, and connecting to it without ever showing a password.

The rule: `KQ_DATABASE_URL`, when set, is the fleet database, and must then be a postgresql:// URL
or a key=value connection string (an empty or malformed value is an error, never a silent fallback).
Only when it is unset (not merely empty) is the embedded PostgreSQL (`embedded.py`) started on
demand, and only outside deployments: the container image and the Helm values set
`KQ_EMBEDDED_POSTGRES=0`, so a pod that lost its Secret fails with a clear message instead of
quietly loading into a throwaway server of its own.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote

import psycopg
from psycopg.conninfo import conninfo_to_dict

from kq_pipeline.db.embedded import EmbeddedPostgresError, ensure_embedded

CONNECT_TIMEOUT_S = 10
URL_VAR = "KQ_DATABASE_URL"
EMBEDDED_VAR = "KQ_EMBEDDED_POSTGRES"
_OFF = ("0", "false", "no", "off")
_ON = ("", "1", "true", "yes", "on")
_SCHEMES = ("postgresql", "postgres")


class DatabaseUnavailable(RuntimeError):
    """The fleet database cannot be reached; the message carries a masked DSN only."""


class DatabaseConfigError(DatabaseUnavailable):
    """KQ_DATABASE_URL / KQ_EMBEDDED_POSTGRES say something unusable; one line, never a password."""


def resolve_dsn(url_var: str = URL_VAR) -> str:
    """The DSN of the fleet database: `$url_var`, or the embedded server (started if needed)."""
    url = configured_url(url_var)
    if url is not None:
        return url
    if not embedded_enabled():
        raise DatabaseConfigError(
            f"{url_var} is not set and the embedded PostgreSQL is disabled ({EMBEDDED_VAR}=0): "
            f"set {url_var} to the fleet database's postgresql:// URL"
        )
    try:
        return ensure_embedded()
    except EmbeddedPostgresError as exc:
        raise DatabaseUnavailable(str(exc)) from None


def configured_url(url_var: str = URL_VAR) -> str | None:
    """The validated value of `$url_var`; None when it is unset."""
    raw = os.environ.get(url_var)
    if raw is None:
        return None
    url = raw.strip()
    if not url:
        raise DatabaseConfigError(
            f"{url_var} is empty; unset it to use the embedded PostgreSQL or give a postgresql:// URL"
        )
    check_dsn(url, url_var)
    return url


def embedded_enabled() -> bool:
    """False in deployments, which set KQ_EMBEDDED_POSTGRES=0."""
    value = os.environ.get(EMBEDDED_VAR, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise DatabaseConfigError(f"{EMBEDDED_VAR}={value!r}: use 0/false/no to disable or 1/true/yes to allow")


def check_dsn(dsn: str, source: str = "the database URL") -> None:
    """Raise DatabaseConfigError unless libpq can parse `dsn` as a PostgreSQL connection string."""
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", dsn)
    if scheme and scheme[1] not in _SCHEMES:
        raise DatabaseConfigError(
            f"{source} must be a postgresql:// URL, not {scheme[1]}:// ({_one_line(redacted_dsn(dsn))})"
        )
    try:
        conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise DatabaseConfigError(
            f"{source} is not a valid PostgreSQL connection string ({_safe_reason(str(exc), dsn)}): "
            f"{_one_line(redacted_dsn(dsn))}"
        ) from None


_URL_PASSWORD = re.compile(r"(?P<head>^[a-z][a-z0-9+.-]*://[^:/@?#]*:)(?P<pw>[^@/?#]*)(?P<at>@)", re.I)
_KV_PASSWORD = re.compile(r"(?P<head>(?:^|[\s?&])password\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|[^\s&]*)", re.I)


def masked_dsn(dsn: str) -> str:
    """The DSN with any password replaced by `***` (URL userinfo, `?password=` or `password=` form)."""
    out = _URL_PASSWORD.sub(lambda m: m["head"] + ("***" if m["pw"] else "") + m["at"], dsn)
    return _KV_PASSWORD.sub(lambda m: m["head"] + "***", out)


def redacted_dsn(dsn: str) -> str:
    """Like masked_dsn, for strings that may be malformed: masks generously (everything between the
    first `:` of the userinfo and the last `@`, a password value up to the next `key=`)."""
    return _secret_spans(dsn)[0]


def _secret_spans(dsn: str) -> tuple[str, list[str]]:
    """(the DSN with secrets replaced by ***, the secrets)."""
    found: list[str] = []

    def hide(value: str) -> str:
        if value:
            found.extend({value, unquote(value), value.strip("'")})
        return "***"

    out = dsn
    url = re.match(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://)(?P<rest>.*)", out, re.S)
    if url and "@" in url["rest"]:
        userinfo, _, host = url["rest"].rpartition("@")
        user, colon, password = userinfo.partition(":")
        out = url["head"] + user + (colon + hide(password) if colon else "") + "@" + host
    out = re.sub(
        r"(?P<head>(?:^|[\s?&])password\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|.*?)(?=&|\s+[\w.-]+\s*=|$)",
        lambda m: m["head"] + hide(m["pw"]),
        out,
        flags=re.I | re.S,
    )
    return out, [s for s in found if s]


def _safe_reason(message: str, dsn: str) -> str:
    """libpq's complaint, first line, with every quoted token that touches a secret masked."""
    secrets = _secret_spans(dsn)[1]
    line = (message.strip().splitlines() or [""])[0]

    def mask(m: re.Match[str]) -> str:
        token = m[1]
        leaks = token and any(token in s or s in token for s in secrets)
        return '"***"' if leaks else m[0]

    line = re.sub(r'"((?:[^"\\]|\\.)*)"', mask, line)
    # A secret with quotes in it splits libpq's quoting: then any 4 characters of it still showing
    # mean the reason goes.
    pieces = {s[i : i + 4] for s in secrets for i in range(max(1, len(s) - 3))}
    return "libpq cannot parse it" if any(p in line for p in pieces) else _one_line(line)


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


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
        reason = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {masked_dsn(target)}: {_scrub(reason, target)}"
        ) from None
    except psycopg.ProgrammingError:  # a malformed DSN given directly: say so without echoing it
        check_dsn(target)
        raise
