"""Fetch the next page while the current one becomes rows.

Waiting on the socket releases the GIL, so fetching page k+1 in a helper thread overlaps the API
server's time to produce it with our row building on page k. At most `depth` pages wait in the
queue, so memory stays bounded. Exceptions of the producer are re-raised in the consumer; a
consumer that stops early (error, deadline) makes the producer stop at its next page.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

_DONE = object()
RESTART = object()
"""Yielded in order when the producer's list restarted: pages before it are void."""


def prefetched(produce: Callable[[Callable[[], None]], Iterator[Any]], *, depth: int = 1) -> Iterator[Any]:
    """Iterate `produce(on_restart)` from a helper thread; `on_restart` calls become RESTART items."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in produce(lambda: put(RESTART) and None):
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(exc)

    worker = threading.Thread(target=run, name="kq-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()
