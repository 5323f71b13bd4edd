"""Pause the cyclic garbage collector while building millions of small dicts.

Generating and indexing a 30,000-pod cluster allocates millions of containers; with the collector
on, repeated full collections over that growing heap cost more than the work itself (measured:
5.4 s vs 0.4 s to index one such cluster). The objects hold no reference cycles worth collecting.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
