"""Keep the cyclic GC out of work that allocates many containers and makes no reference cycles.

Parsing a 500-pod page allocates ~150,000 containers; with the GC on, CPython runs hundreds of
young collections and some full ones over everything alive while doing so (on/off in
`python -m benchmarks --case 8`). The simulator generating a large cluster is the same case. JSON
values cannot form reference cycles, so pausing the collector loses nothing. Threads share one
collector: a counter keeps it paused while any thread is inside, and only re-enables it if it was
enabled when the first thread entered.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
