"""`kq load`'s live output: each cluster's line as soon as it is loaded, and on a terminal a
`clusters done/total` line updated in place.

The source is kq_meta.loads, polled by run id: the op writes every (cluster, table) outcome there as it
goes, and a cluster is done once all its tables have a row. That is the same record the report and
the UI's checks read, so what kq prints is what was stored, and it needs no hook into Dagster's
logging. The progress line exists only on a terminal, so logs and pipes get plain lines.
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

from kq_pipeline.db.connection import connect
from kq_pipeline.report import (
    RULE,
    ClusterResult,
    TableLoad,
    cluster_line,
    cluster_result,
    fetch_loads,
    name_width,
    summary_line,
    table_report,
)

POLL_INTERVAL_S = 0.5
DEFAULT_COLUMNS = 160
"""Line width when the output is not a terminal (COLUMNS overrides it)."""
CLEAR = "\r\033[K"


class LoadConsole:
    """Prints cluster results and the summary; thread-safe, since the watcher thread reports."""

    def __init__(
        self,
        names: Sequence[str],
        *,
        tables: bool = False,
        stream: TextIO | None = None,
        live: bool | None = None,
    ) -> None:
        self.stream = stream or sys.stdout
        self.total = len(names)
        self.tables = tables
        self.live = _isatty(self.stream) if live is None else live
        self.columns = shutil.get_terminal_size((DEFAULT_COLUMNS, 24)).columns if self.live else _columns()
        self.name_width = name_width(names)
        self.loaded = 0
        self.failed: list[str] = []
        self.reported: set[str] = set()
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self._status_shown = False
        self._status = ""

    def cluster_done(self, result: ClusterResult) -> None:
        with self._lock:
            if result.name in self.reported:
                return
            self.reported.add(result.name)
            if result.ok:
                self.loaded += 1
            else:
                self.failed.append(result.name)
            self._clear_status()
            lines = table_report(result) if self.tables else []
            lines.append(cluster_line(result, name_width=self.name_width, columns=self.columns - 1))
            self.stream.write("".join(line + "\n" for line in lines))
            self._draw_status()

    def tick(self) -> None:
        """Redraw the progress line (its clock moves even while no cluster finishes)."""
        with self._lock:
            self._draw_status()

    def finish(self) -> None:
        """Clear the progress line and print the summary."""
        with self._lock:
            self._clear_status()
            if self.tables:
                self.stream.write(RULE + "\n")
            elapsed = time.monotonic() - self.t0
            self.stream.write(
                summary_line(self.loaded, self.failed, elapsed, columns=self.columns - 1) + "\n"
            )
            self.stream.flush()

    def abandon(self) -> None:
        """Clear the progress line (interrupted: no summary)."""
        with self._lock:
            self._clear_status()
            self.stream.flush()

    def _draw_status(self) -> None:
        if not self.live:
            self.stream.flush()
            return
        done = self.loaded + len(self.failed)
        failed = f", {len(self.failed)} failed" if self.failed else ""
        elapsed = time.monotonic() - self.t0
        text = f"{done}/{self.total} clusters done{failed}, {elapsed:.0f}s"[: self.columns - 1]
        if self._status_shown and text == self._status:
            return
        self.stream.write(CLEAR + text)
        self.stream.flush()
        self._status, self._status_shown = text, True

    def _clear_status(self) -> None:
        if self._status_shown:
            self.stream.write(CLEAR)
            self._status_shown = False


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _columns() -> int:
    return shutil.get_terminal_size((DEFAULT_COLUMNS, 24)).columns


class RunWatcher:
    """Polls kq_meta.loads for one run and reports each cluster once all its tables have an outcome."""

    def __init__(
        self,
        dsn: str,
        run_id: str,
        tables_per_cluster: int,
        on_done: Callable[[ClusterResult], None],
        on_tick: Callable[[], None] = lambda: None,
        interval_s: float = POLL_INTERVAL_S,
    ) -> None:
        self.dsn = dsn
        self.run_id = run_id
        self.expected = tables_per_cluster
        self.on_done = on_done
        self.on_tick = on_tick
        self.interval_s = interval_s
        self.loads: dict[str, list[TableLoad]] = defaultdict(list)
        self.done: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kq-load-watcher", daemon=True)
        self._conn = None

    def __enter__(self) -> RunWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.poll()  # what the run wrote after the last tick
        except Exception as err:  # the caller falls back on the run's own failure record
            logging.getLogger(__name__).debug("final poll of kq_meta.loads failed: %s", err)
        finally:
            self._close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception as err:  # a missed tick only delays a line; the final poll catches up
                logging.getLogger(__name__).debug("polling kq_meta.loads failed: %s", err)
                self._close()
            self.on_tick()

    def poll(self) -> None:
        if self._conn is None:
            self._conn = connect(self.dsn)
            self._conn.autocommit = True
        fresh: dict[str, list[TableLoad]] = defaultdict(list)
        for load in fetch_loads(self._conn, self.run_id, skip=sorted(self.done)):
            fresh[load.cluster].append(load)
        self.loads.update(fresh)
        for cluster, loads in self.loads.items():
            if cluster not in self.done and len({t.table for t in loads}) >= self.expected:
                self.done.add(cluster)
                self.on_done(cluster_result(cluster, loads))

    def partial(self, cluster: str) -> list[TableLoad]:
        """The tables a cluster recorded, when it did not record them all."""
        return list(self.loads.get(cluster, []))

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


@contextmanager
def python_logs(verbose: bool) -> Iterator[list[logging.LogRecord]]:
    """kq's own warnings during a load: printed with --verbose, else kept (and counted by the caller).

    Without a handler Python prints bare WARNING messages to stderr ("cluster x: GET ...: connection
    failed"), repeating the reason already on the cluster's line, once per cluster and table."""
    kept: list[logging.LogRecord] = []
    logger = logging.getLogger("kq_pipeline")
    handler: logging.Handler
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("kq: %(levelname)s: %(message)s"))
    else:
        handler = _KeepHandler(kept)
    handler.setLevel(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield kept
    finally:
        logger.removeHandler(handler)


class _KeepHandler(logging.Handler):
    def __init__(self, kept: list[logging.LogRecord]) -> None:
        super().__init__()
        self.kept = kept

    def emit(self, record: logging.LogRecord) -> None:
        self.kept.append(record)


def unexplained_warnings(records: Sequence[logging.LogRecord], failed: Sequence[str]) -> list[str]:
    """Distinct kept warnings, less those about clusters whose failure line already says why."""
    prefixes = tuple(p for name in failed for p in (f"cluster {name}:", f"cluster {name} ("))
    seen: dict[str, None] = {}
    for record in records:
        message = record.getMessage()
        if prefixes and message.startswith(prefixes):
            continue
        seen.setdefault(message, None)
    return list(seen)
