"""metav1.Time / MicroTime as kubequery renders them: unix seconds in rows, RFC3339 UTC in JSON.

Go parses RFC3339 with any offset and fraction; Time keeps whole seconds on output, MicroTime keeps
microseconds. Go's zero time (0001-01-01T00:00:00Z) is "0" in a row and `null` in JSON. Results are
cached by input string: a cluster has few distinct timestamps compared with the values read. A cache
that reaches _CACHE_LIMIT entries starts afresh: timestamps differ from cluster to cluster and from
poll to poll, so a cache that only stopped growing (as it did) kept ~30 MB of old timestamps per
cache (~150 bytes an entry) and grew with the number of clusters until then (~270 entries per
50-pod cluster).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)

_unix_cache: dict[str, str] = {}
_json_cache: dict[str, str] = {}
_micro_cache: dict[str, str] = {}
_CACHE_LIMIT = 50_000


class InvalidTimeError(ValueError):
    """A timestamp that Go's time.Parse(time.RFC3339, ...) rejects."""


def parse_rfc3339(text: str) -> datetime | None:
    """The instant (UTC) of an RFC3339 string; None for "" (treated as Go's zero time)."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidTimeError(f"not an RFC3339 time: {text!r}") from None
    if parsed.tzinfo is None or len(text) < 20 or text[10] not in "Tt":
        raise InvalidTimeError(f"not an RFC3339 time: {text!r}")
    return parsed.astimezone(UTC)


_ZERO_TEXT = "0001-01-01T00:00:00Z"


def _canonical(text: str) -> datetime | None:
    """The instant of a time already written as Go writes a Time ("2006-01-02T15:04:05Z"), else None.

    Most API timestamps are, and then both renderings follow without formatting: JSON is the text
    itself, the row is its unix seconds."""
    if len(text) != 20 or text[19] != "Z" or text[10] != "T" or not text.isascii():
        return None
    try:
        return datetime.fromisoformat(text)  # validates ranges as Go's Parse does
    except ValueError:
        return None


def _remember(cache: dict[str, str], key: str, value: str) -> str:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value
    return value


def unix_seconds(value: Any) -> str:
    """Row value of a metav1.Time: unix seconds, "0" for a missing or zero time."""
    if value is None:
        return "0"
    out = _unix_cache.get(value)
    if out is not None:
        return out
    instant = _canonical(value) if type(value) is str else None
    if instant is not None and value != _ZERO_TEXT:
        return _remember(_unix_cache, value, str((instant - _EPOCH) // _SECOND))
    instant = parse_rfc3339(value)
    if instant is None or instant == ZERO_TIME:
        return _remember(_unix_cache, value, "0")
    return _remember(_unix_cache, value, str((instant - _EPOCH) // _SECOND))


def time_json(value: Any) -> str:
    """JSON of a metav1.Time: "2006-01-02T15:04:05Z" in UTC, or null when zero."""
    if value is None:
        return "null"
    out = _json_cache.get(value)
    if out is not None:
        return out
    if type(value) is str and value != _ZERO_TEXT and _canonical(value) is not None:
        return _remember(_json_cache, value, '"' + value + '"')
    instant = parse_rfc3339(value)
    if instant is None or instant == ZERO_TIME:
        return _remember(_json_cache, value, "null")
    return _remember(_json_cache, value, '"' + instant.strftime("%Y-%m-%dT%H:%M:%SZ").rjust(20, "0") + '"')


def micro_time_json(value: Any) -> str:
    """JSON of a metav1.MicroTime: RFC3339 with six fraction digits, UTC, or null when zero."""
    if value is None:
        return "null"
    out = _micro_cache.get(value)
    if out is not None:
        return out
    instant = parse_rfc3339(value)
    if instant is None or instant == ZERO_TIME:
        return _remember(_micro_cache, value, "null")
    return _remember(
        _micro_cache, value, '"' + instant.strftime("%Y-%m-%dT%H:%M:%S.%fZ").rjust(27, "0") + '"'
    )


def is_zero_time(value: Any) -> bool:
    """`t.IsZero()` for a decoded (Micro)Time given as its JSON value."""
    if value is None or value == "":
        return True
    return unix_seconds(value) == "0" and parse_rfc3339(value) == ZERO_TIME


def rfc3339(instant: datetime) -> str:
    """The RFC3339 (UTC, whole seconds) text of an instant, e.g. for the event poll time."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
