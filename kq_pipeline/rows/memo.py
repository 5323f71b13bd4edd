"""Column renderers that remember Go JSON outputs by the input's orjson bytes.

Replicas share most of their spec (env, ports, probes, tolerations, volumes), so a cluster renders the
same values over and over. The key is `orjson.dumps(value)`: it runs in C several times faster than
`repr`, and distinct JSON values give distinct bytes (dict key order included, 1 vs 1.0 vs true
distinct), so a hit is exact for JSON-decoded input. (NaN/Infinity, which JSON cannot carry, would
share `null` with None: such values are not JSON-decoded and fall outside this module's contract.)
Values orjson cannot encode (integers beyond 64 bits, lone surrogates) are keyed by `repr` instead.

A key is stored as a right-sized copy, never as the `dumps` result itself: orjson (3.12+) returns its
growth buffer with only the length set (its final resize is a no-op), so a 60-byte result holds a
4 KB allocation and a 3 KB one 32 KB, while `sys.getsizeof` reports the length. Kept as memo keys,
those buffers were most of the process's growth over a fleet (~4 KB per entry, ~40x the entries'
own size). The copy (`b"".join`, ~0.1 us) is made on a miss only.

Columns whose values rarely repeat (statuses with timestamps, generated names) stop memoising after a
trial: `on_disable` receives the plain renderer so the caller can rebind its name to it.

Memory is bounded twice: a memo past MAX_ENTRIES starts afresh, and all the memos of the process
together hold at most MAX_BYTES (keys' and values' lengths plus ENTRY_OVERHEAD each); past it, every
memo starts afresh. Without the second bound the memos of a fleet grow column by column towards
MAX_ENTRIES each (hundreds of columns), however few of their entries still hit.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from functools import cache
from typing import Any

import orjson

from kq_pipeline.rows import gojson

Encoder = Callable[[Any], str]

TRIAL = 2000
MIN_HIT_RATE = 0.25
MAX_ENTRIES = 20_000
MAX_BYTES = 32 * 2**20
"""Process-wide bound on what every memo holds together (see the module docstring). Measured needs:
~20 MB for one 30,000-pod cluster, 18-26 MB over a fleet of 1,000 50-pod clusters."""
ENTRY_OVERHEAD = 128
"""Bytes an entry costs beyond its key's and value's lengths: the two objects' headers and the
dict slot (measured: ~33 + ~49 + ~40)."""


class _Memo(dict):  # type: ignore[type-arg]
    """A memo's dict, weakly registered so that `clear_all` reaches it; `held` is its entries' cost."""

    __slots__ = ("__weakref__", "held")

    def __init__(self) -> None:
        super().__init__()
        self.held = 0


_MEMOS: weakref.WeakValueDictionary[int, _Memo] = weakref.WeakValueDictionary()  # by id: dicts can't hash
_REGISTRY = threading.Lock()
_held = [0]
"""Cost of every memo's entries together. Updated without a lock: a race between threads can only
blur it by an entry or two, and `clear_all` sets it right."""


def clear_all() -> None:
    """Empty every memo of the process (also called when they reach MAX_BYTES together)."""
    with _REGISTRY:
        memos = list(_MEMOS.values())
        for memo in memos:
            memo.clear()
            memo.held = 0
        _held[0] = 0


def held_bytes() -> int:
    """What the memos hold together, as MAX_BYTES counts it."""
    return _held[0]


@cache
def encoder(go_type: str) -> Encoder:
    """The exact `json.Marshal` output for a value decoded into `go_type` (memoised by value), one
    shared renderer per type for callers that don't keep their own."""
    return memo_encoder(go_type)


def memo_encoder(go_type: str, on_disable: Callable[[Encoder], None] | None = None) -> Encoder:
    """A fresh memoising Go JSON renderer (HTML-escaped) for `go_type`, one per column."""
    raw = gojson.value_encoder(go_type)
    escape = gojson.escape_html

    def plain(value: Any) -> str:
        return escape(raw(value))

    dumps = orjson.dumps
    join = b"".join
    memo = _Memo()
    with _REGISTRY:
        _MEMOS[id(memo)] = memo
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
        out = escape(raw(value))
        if type(key) is bytes:
            key = join((key, b""))  # a right-sized copy: see the module docstring
        cost = len(key) + len(out) + ENTRY_OVERHEAD
        if len(memo) >= MAX_ENTRIES:
            _forget(memo)
        if _held[0] + cost > MAX_BYTES:
            clear_all()
        memo[key] = out
        memo.held += cost
        _held[0] += cost
        if stats[0] == TRIAL and stats[1] < TRIAL * MIN_HIT_RATE:
            stats[2] = False
            _forget(memo)
            if on_disable is not None:
                on_disable(plain)
        return out

    return render


def _forget(memo: _Memo) -> None:
    """Empty one memo and stop counting its entries."""
    _held[0] -= memo.held
    memo.held = 0
    memo.clear()
