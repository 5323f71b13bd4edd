"""The GC pause is shared by threads: the collector stays off while any of them is inside, and comes
back only if it was on before the first one entered."""

from __future__ import annotations

import gc
import threading

from kq_pipeline.gcpause import gc_paused


def test_the_collector_stays_paused_until_the_last_thread_leaves() -> None:
    assert gc.isenabled()
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with gc_paused():
            inside.set()
            release.wait(10)

    t = threading.Thread(target=other)
    with gc_paused():
        t.start()
        assert inside.wait(10)
    assert not gc.isenabled()  # the other thread is still inside
    release.set()
    t.join(10)
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
