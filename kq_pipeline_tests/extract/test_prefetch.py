"""Prefetching keeps order, turns restarts into markers, and hands producer errors to the consumer."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from kq_pipeline.extract.prefetch import RESTART, prefetched


def test_order_and_restart_marker() -> None:
    def produce(on_restart: Callable[[], None]) -> Iterator[int]:
        yield 1
        on_restart()
        yield from (1, 2, 3)

    assert list(prefetched(produce)) == [1, RESTART, 1, 2, 3]


def test_producer_error_reaches_the_consumer_after_earlier_items() -> None:
    def produce(on_restart: Callable[[], None]) -> Iterator[int]:
        yield 1
        raise ValueError("boom")

    got = []
    with pytest.raises(ValueError, match="boom"):
        for x in prefetched(produce):
            got.append(x)
    assert got == [1]


def test_consumer_stopping_early_stops_the_producer() -> None:
    produced = []

    def produce(on_restart: Callable[[], None]) -> Iterator[int]:
        for i in range(1000):
            produced.append(i)
            yield i

    for x in prefetched(produce):
        if x == 2:
            break
    assert len(produced) < 10
