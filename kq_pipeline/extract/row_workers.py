"""Rows of big lists built on every core: pages go to worker processes as raw bytes.

Parsing a page and building its rows is pure Python, so one process uses one core however many
threads list; on the 2-core reference machine that bounded a 30,000-pod list at ~4,000 pods/s.
From a list's second page on, pages (raw JSON bytes) go to a small pool of spawned worker
processes that parse them and build the rows; the rows come back pickled, which costs the caller
about a sixth of building them. While every worker is busy the calling thread builds the next page
itself, so the caller's core keeps working too. Rows keep the list's order.

Pages and results travel through files in a private (0700) spool directory, not the pool's pipes:
a 2 MB message through a 64 KB pipe re-takes the GIL for every chunk, and behind a thread building
rows each re-take waits a switch interval, which left the worker idle half the time (measured).
A file is written or read in one call.

Secret pages never leave the process (the caller builds them inline, after redaction). The pool is
shared by every list of the process, started when the first extraction reads discovery (`warm_up`,
which also has the workers compile the big lists' row builders) and sized by `KQ_ROW_WORKERS`
(default: the CPUs this process may use - 1, at most 4; 0 builds everything inline). A worker
that dies fails the list it was building (that table keeps its last snapshot) and the pool is
started afresh for the next list.
"""

from __future__ import annotations

import atexit
import functools
import gc
import logging
import math
import multiprocessing
import os
import pickle
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from kq_pipeline.extract.result import Row
from kq_pipeline.extract.secrets import redact_secrets
from kq_pipeline.gcpause import gc_paused
from kq_pipeline.kube.list_meta import list_items
from kq_pipeline.rows import rows_for_tables
from kq_pipeline.rows.flattener import compile_tables

log = logging.getLogger(__name__)

WORKERS_ENV = "KQ_ROW_WORKERS"
MAX_DEFAULT_WORKERS = 4
PageResult = tuple[int, dict[str, list[Row]]]
"""(objects on the page, rows per table)."""


class RowsTimeout(TimeoutError):
    """The cluster's deadline passed while a worker was still building a page's rows."""


def available_cpus(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota (a container's limit).

    `os.cpu_count()` is the node's count; in a pod limited to 1 CPU on a 64-core node, four workers
    would only fight over that one CPU."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 limit visible: the affinity stands
    return max(1, cpus)


def worker_count() -> int:
    """Worker processes to use: `KQ_ROW_WORKERS`, else available CPUs - 1 (at most 4)."""
    raw = os.environ.get(WORKERS_ENV, "").strip()
    if raw:
        try:
            return max(0, int(raw))
        except ValueError:
            log.warning("%s=%r is not a number: building rows inline", WORKERS_ENV, raw)
            return 0
    return max(0, min(MAX_DEFAULT_WORKERS, available_cpus() - 1))


def build_page(
    body: bytes,
    tables: tuple[str, ...],
    cluster_name: str,
    cluster_uid: str,
    now: datetime,
    *,
    secrets: bool = False,
) -> PageResult:
    """Parse one list page and build its rows for `tables` (`secrets`: redact Secret values first).

    The page is parsed, turned into rows and freed with the collector paused, so it never walks the
    page's objects (JSON values and rows hold no reference cycles)."""
    with gc_paused():
        items = list_items(body)
        del body
        if secrets:
            redact_secrets(items)
        built = rows_for_tables(tables, items, cluster_name=cluster_name, cluster_uid=cluster_uid, now=now)
        count = len(items)
        del items
    return count, built


def _build_spooled(
    page_path: str, tables: tuple[str, ...], cluster_name: str, cluster_uid: str, now: datetime
) -> str:
    """What a worker runs: the page from its spool file, the pickled result into another; its path."""
    page = Path(page_path)
    body = page.read_bytes()
    page.unlink()
    result = pickle.dumps(build_page(body, tables, cluster_name, cluster_uid, now), pickle.HIGHEST_PROTOCOL)
    out = page.with_suffix(".rows")
    out.write_bytes(result)
    return str(out)


def _take_result(path: str) -> PageResult:
    out = Path(path)
    data = out.read_bytes()
    out.unlink()
    result: PageResult = pickle.loads(data)  # noqa: S301 - our own worker's file in our 0700 directory
    return result


def _drop_files(page: Path, future: Future[str]) -> None:
    """Done-callback of a discarded page: remove whatever files it left."""
    page.unlink(missing_ok=True)
    if not future.cancelled() and future.exception() is None:
        Path(future.result()).unlink(missing_ok=True)


def _compile(table_sets: list[tuple[str, ...]]) -> None:
    for tables in table_sets:
        compile_tables(tables)


def warm_up(table_sets: list[tuple[str, ...]]) -> None:
    """Start the workers now and have them compile these tables' row builders, while the caller is
    still reading discovery and the first pages (a hint: does nothing without workers)."""
    workers = worker_count()
    pool = _pool(workers) if table_sets and workers else None
    if pool is None:
        return
    with _POOL_LOCK:
        todo = [t for t in table_sets if (pool, t) not in _WARMED]
        _WARMED.update((pool, t) for t in todo)
    if not todo:  # every cluster of a run asks; the workers compiled these already
        return
    try:
        for _ in range(workers):
            pool.submit(_compile, todo)
    except BrokenProcessPool:
        _discard_pool(pool)


def _watch_parent(parent: int, spool: str) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    # The parent died without shutting the pool down (killed): clean up after it, do not linger.
    shutil.rmtree(spool, ignore_errors=True)
    os._exit(0)


def _init_worker(parent: int, spool: str) -> None:
    # Workers only turn JSON into rows, which makes no reference cycles: reference counting frees
    # everything and the collector would only walk the page over and over.
    gc.disable()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    threading.Thread(target=_watch_parent, args=(parent, spool), daemon=True).start()


_POOL: ProcessPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
_SPOOL: Path | None = None
_WARMED: set[tuple[ProcessPoolExecutor, tuple[str, ...]]] = set()


def _pool(workers: int) -> ProcessPoolExecutor | None:
    global _POOL, _SPOOL
    with _POOL_LOCK:
        if _POOL is None and workers > 0:
            try:
                if _SPOOL is None:
                    _SPOOL = Path(tempfile.mkdtemp(prefix="kq-rows-"))
                    atexit.register(shutil.rmtree, _SPOOL, ignore_errors=True)
                _POOL = ProcessPoolExecutor(
                    max_workers=workers,
                    mp_context=multiprocessing.get_context("spawn"),  # fork is unsafe in a threaded process
                    initializer=_init_worker,
                    initargs=(os.getpid(), str(_SPOOL)),
                )
            except OSError as exc:
                log.warning("row worker processes could not start (%s): building rows inline", exc)
                return None
        return _POOL


def _discard_pool(broken: ProcessPoolExecutor) -> None:
    global _POOL
    with _POOL_LOCK:
        if _POOL is broken:
            _POOL = None
    broken.shutdown(wait=False, cancel_futures=True)


def shutdown() -> None:
    """Stop the worker processes (they also stop when this process exits)."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class _Spooled:
    """A page handed to a worker: its future (the result file's path) and its page file."""

    future: Future[str]
    page: Path


class PageRows:
    """The pages of one list in, their rows out in list order; built inline or by workers."""

    def __init__(
        self,
        tables: tuple[str, ...],
        cluster_name: str,
        cluster_uid: str,
        now: datetime,
        build_inline: Callable[[bytes], PageResult],
        *,
        parallel: bool,
        remaining_s: Callable[[], float | None] = lambda: None,
    ) -> None:
        self._args = (tables, cluster_name, cluster_uid, now)
        self._inline = build_inline
        self._remaining_s = remaining_s
        self._workers = worker_count() if parallel else 0
        # pages in flight per list: enough that a worker never waits for the next one
        self._depth = 4 * self._workers
        self._pending: deque[_Spooled | PageResult] = deque()
        self._pages = 0
        self._pool: ProcessPoolExecutor | None = None
        self.pages_by_workers = 0
        """Pages whose rows a worker process built (the rest were built inline)."""

    def add(self, body: bytes) -> Iterator[PageResult]:
        """Take the next page; yields the results now ready at the head, in order."""
        first = self._pages == 0
        self._pages += 1
        pool = None if first or self._workers == 0 else _pool(self._workers)
        self._pool = pool or self._pool
        in_flight = sum(1 for p in self._pending if isinstance(p, _Spooled))
        if pool is not None and _SPOOL is not None and in_flight < self._depth:
            page = _SPOOL / f"{uuid.uuid4().hex}.page"
            page.write_bytes(body)
            try:
                self._pending.append(_Spooled(pool.submit(_build_spooled, str(page), *self._args), page))
            except (BrokenProcessPool, RuntimeError):  # RuntimeError: the pool was shut down meanwhile
                page.unlink(missing_ok=True)
                _discard_pool(pool)
                self._pending.append(self._inline(body))
        else:
            self._pending.append(self._inline(body))
        yield from self._ready(wait=False)

    def finish(self) -> Iterator[PageResult]:
        """The remaining results, in order; pages no worker has started yet are built here instead."""
        for k, item in enumerate(self._pending):
            if isinstance(item, _Spooled) and item.future.cancel():
                body = item.page.read_bytes()
                item.page.unlink()
                self._pending[k] = self._inline(body)
        yield from self._ready(wait=True)

    def discard(self) -> None:
        """Drop every page taken so far (the list restarted, or the caller gave up)."""
        for item in self._pending:
            if isinstance(item, _Spooled):
                item.future.cancel()
                item.future.add_done_callback(functools.partial(_drop_files, item.page))
        self._pending.clear()

    def _ready(self, *, wait: bool) -> Iterator[PageResult]:
        while self._pending:
            head = self._pending[0]
            if isinstance(head, _Spooled):
                if not wait and not head.future.done():
                    return
                result = self._result(head.future)
            else:
                result = head
            self._pending.popleft()
            yield result

    def _result(self, future: Future[str]) -> PageResult:
        remaining = self._remaining_s()
        try:
            result = _take_result(future.result(timeout=None if remaining is None else max(0.0, remaining)))
            self.pages_by_workers += 1
            return result
        except FutureTimeout:
            self.discard()
            raise RowsTimeout("cluster deadline passed while rows were being built") from None
        except BrokenProcessPool:
            self.discard()
            if self._pool is not None:
                _discard_pool(self._pool)
            raise
