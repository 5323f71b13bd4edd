"""Column renderers that remember Go JSON outputs by the input's orjson bytes.

Replicas share most of their spec (env, ports, probes, tolerations, volumes), so a cluster renders the
same values over and over. The key is `orjson.dumps(value)`: it runs in C several times faster than
`repr`, and distinct JSON values give distinct bytes (dict key order included, 1 vs 1.0 vs true
distinct), so a hit is exact for JSON-decoded input. (NaN/Infinity, which JSON cannot carry, would
share `null` with None: such values are not JSON-decoded and fall outside this module's contract.)
Values orjson cannot encode (integers beyond 64 bits, lone surrogates) are keyed by `repr` instead.
On a miss the key bytes double as the rendering when `gofast` proves them Go-identical.

Columns whose values rarely repeat (statuses with timestamps, generated names) stop memoising after a
trial: `on_disable` receives the plain renderer so the caller can rebind its name to it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import orjson

from kq_pipeline.rows import gofast, gojson

Encoder = Callable[[Any], str]

TRIAL = 2000
MIN_HIT_RATE = 0.25
MAX_ENTRIES = 20_000


@cache
def encoder(go_type: str) -> Encoder:
    """The exact `json.Marshal` output for a value decoded into `go_type` (memoised by value), one
    shared renderer per type for callers that don't keep their own."""
    return memo_encoder(go_type)


def memo_encoder(go_type: str, on_disable: Callable[[Encoder], None] | None = None) -> Encoder:
    """A fresh memoising Go JSON renderer (HTML-escaped) for `go_type`, one per column."""
    plain = gofast.exact_encoder(go_type)
    check = gofast.checker(go_type)
    raw = gojson.value_encoder(go_type)
    escape = gojson.escape_html
    dumps = orjson.dumps
    memo: dict[Any, str] = {}
    get = memo.get
    # lookups, hits, enabled: a list, not nonlocals, so the closure stays a cheap cell read
    stats = [0, 0, True]

    def render(value: Any) -> str:
        if not stats[2]:
            return plain(value)
        try:
            key: Any = dumps(value)
        except TypeError:
            key = repr(value)
        out = get(key)
        stats[0] += 1
        if out is not None:
            stats[1] += 1
            return out
        out = None
        if type(key) is bytes:
            try:
                if check(value):
                    out = escape(key.decode())
            except Exception:  # noqa: BLE001, S110 - left to the general encoder
                pass
        if out is None:
            out = escape(raw(value))
        if len(memo) >= MAX_ENTRIES:
            memo.clear()
        memo[key] = out
        if stats[0] == TRIAL and stats[1] < TRIAL * MIN_HIT_RATE:
            stats[2] = False
            memo.clear()
            if on_disable is not None:
                on_disable(plain)
        return out

    return render
