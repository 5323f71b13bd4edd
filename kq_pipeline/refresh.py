"""Refresh clusters: extract every selected table, build typed frames, replace each snapshot.

This is the one code path behind the Dagster assets (and so behind the CLI and the UI). Each
(cluster, table) snapshot is replaced whole or not at all; a cluster that fails never stops the
others, and its previous rows stay in place.

What a cluster collects (`Cluster.collect`) is applied here: a table it excludes is not extracted
and is emptied for it ('excluded' in kq_meta.loads); with the kubequery extractor the project's own tables
(custom resources) are excluded the same way, with a note, since kubequery has none; rows of excluded
namespaces are dropped before the frame is built. Custom kinds that failed keep their previous rows.
All of a cluster's tables are loaded in one transaction, and their history records one load time.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

import psycopg

from kq_pipeline import inventory
from kq_pipeline.collect import Collect, not_collected, without_excluded_namespaces
from kq_pipeline.db.connection import connect
from kq_pipeline.db.history import ChangeCounts, load_time, skipped_tables
from kq_pipeline.db.snapshot import exclude_snapshot, record_failed_load, replace_snapshot
from kq_pipeline.extract import kubequery as kubequery_extractor
from kq_pipeline.extract import native as native_extractor
from kq_pipeline.extract.result import ClusterExtract, TableExtract
from kq_pipeline.frames import TypedFrame, to_frame
from kq_pipeline.signing import SigningError

log = logging.getLogger(__name__)


@dataclass
class TableOutcome:
    table: str
    rows_extracted: int | None
    rows_loaded: int | None
    rows_rejected: int
    duration_s: float
    error: str | None = None
    note: str | None = None
    excluded: bool = False
    """Not collected for this cluster (its selection, or the extractor has no such table)."""
    rows_kept: int = 0
    """Previous rows of failed parts (custom kinds) left in place; included in rows_loaded."""
    parts: dict[tuple[str, ...], int] | None = None
    """Rows the snapshot holds per part (custom resources: per (api_group, kind)), kept ones included."""
    changes: ChangeCounts | None = None
    """Rows added, removed and modified since the previous load; None: history skipped or not loaded."""

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class ClusterOutcome:
    cluster: str
    server: str = ""
    cluster_uid: str | None = None
    server_version: str | None = None
    duration_s: float = 0.0
    error: str | None = None
    """A failure of the whole cluster (unreachable, bad credentials) rather than of one table."""
    tables: dict[str, TableOutcome] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and all(t.ok for t in self.tables.values())

    @property
    def failed_tables(self) -> list[str]:
        return [t.table for t in self.tables.values() if not t.ok]


@dataclass(frozen=True)
class RefreshSettings:
    concurrency: int = 4
    """Clusters polled at once inside one run."""
    table_concurrency: int = 4
    """List calls in flight at once per cluster."""
    deadline_s: float = 300.0
    page_limit: int = 500
    lock_timeout_s: float = 600.0


def _now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def cluster_lock(conn: psycopg.Connection, cluster: str, timeout_s: float) -> Iterator[None]:
    """Serialize loads of one cluster across runs and processes (Dagster pools can't: batched runs
    carry no partition tag). A session-level advisory lock, released however the refresh ends."""
    deadline = time.monotonic() + timeout_s
    with conn.cursor() as cur:
        while True:
            cur.execute("SELECT pg_try_advisory_lock(hashtextextended('kq-cluster:' || %s, 0))", (cluster,))
            if cur.fetchone()[0]:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"cluster {cluster}: another load still holds its lock after {timeout_s:.0f}s"
                )
            time.sleep(0.2)
    try:
        yield
    finally:
        if not (conn.closed or conn.broken):  # a lost session has released its locks already
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(hashtextextended('kq-cluster:' || %s, 0))", (cluster,))


def refresh_cluster(
    dsn: str, name: str, tables: Sequence[str], *, run_id: str | None, settings: RefreshSettings
) -> ClusterOutcome:
    """Refresh one cluster; never raises: every failure, the database's included, is an outcome."""
    started = _now()
    t0 = time.perf_counter()
    outcome = ClusterOutcome(cluster=name)
    try:
        with connect(dsn) as conn:
            conn.autocommit = True
            cluster = inventory.verified_cluster(conn, name)  # SigningError: a row changed outside kq
            if cluster is None:
                outcome.error = f"cluster {name} is not in the inventory (removed or never added)"
                return outcome
            outcome.server = cluster.server
            with cluster_lock(conn, name, settings.lock_timeout_s):
                _refresh_locked(conn, cluster, tables, run_id, settings, started, outcome)
    except Exception as exc:  # one cluster's failure must never stop the others
        outcome.error = str(exc) if isinstance(exc, SigningError) else f"cluster {name}: {exc}"
        log.warning("%s", outcome.error)
        _record_failures(
            dsn, name, [t for t in tables if t not in outcome.tables], outcome.error, run_id, started
        )
    outcome.duration_s = time.perf_counter() - t0
    return outcome


def _record_failures(
    dsn: str, name: str, tables: Sequence[str], error: str, run_id: str | None, started: datetime
) -> None:
    """Record failed loads on a fresh connection (the refresh's own may be the thing that broke);
    if the database is unreachable, the failure is still in the outcome and the run's log."""
    try:
        with connect(dsn) as conn:
            conn.autocommit = True
            for table in tables:
                record_failed_load(conn, table, name, error=error, run_id=run_id, started_at=started)
    except Exception as exc:
        log.warning("cluster %s: could not record the failed loads in kq_meta.loads: %s", name, exc)


def _refresh_locked(
    conn: psycopg.Connection,
    cluster: inventory.Cluster,
    tables: Sequence[str],
    run_id: str | None,
    settings: RefreshSettings,
    started: datetime,
    outcome: ClusterOutcome,
) -> None:
    skipped = skipped_tables()  # a bad KQ_HISTORY_SKIP fails the cluster with a clear message
    excluded = not_collected(cluster.collect, cluster.extractor, tables)
    collected = [t for t in tables if t not in excluded]
    extractor = kubequery_extractor if cluster.extractor == "kubequery" else native_extractor
    options = {} if extractor is kubequery_extractor else {"collect": cluster.collect}
    extract = (
        extractor.extract_cluster(
            inventory.access_for(cluster),
            cluster.name,
            collected,
            concurrency=settings.table_concurrency,
            deadline_s=settings.deadline_s,
            page_limit=settings.page_limit,
            **options,
        )
        if collected
        else ClusterExtract(cluster.name, None)
    )
    outcome.cluster_uid = extract.cluster_uid
    outcome.server_version = (extract.server_version or {}).get("gitVersion")
    if extract.cluster_uid:
        inventory.set_cluster_uid(conn, cluster.name, extract.cluster_uid)
    # One transaction for all of the cluster's tables, a savepoint per table: the tables commit
    # together (one point in time, one WAL flush instead of 51) while a table that fails still
    # keeps its previous rows. Outcomes count only once the commit succeeded.
    loaded: dict[str, TableOutcome] = {}
    trusted = extractor is native_extractor  # JSON rendered by our own row builders
    jobs = [
        (
            t,
            partial(
                frame_table, cluster.name, t, extract.tables[t], trusted=trusted, collect=cluster.collect
            ),
        )
        for t in tables
        if t not in excluded and extract.tables[t].rows is not None
    ]
    framed = frames_ahead(jobs)
    try:
        with conn.transaction():
            with conn.cursor() as cur:
                at = load_time(cur)
            for table in tables:
                versioned = table not in skipped
                if table in excluded:
                    loaded[table] = _exclude_table(
                        conn,
                        cluster.name,
                        table,
                        excluded[table],
                        run_id,
                        started,
                        versioned=versioned,
                        at=at,
                    )
                    continue
                te = extract.tables[table]
                ready = None
                if te.rows is not None:
                    name, ready = next(framed)
                    assert name == table
                loaded[table] = _load_table(
                    conn, cluster.name, table, te, ready, run_id, started, versioned=versioned, at=at
                )
    finally:
        framed.close()  # a failed transaction: stop building frames nobody will load
    outcome.tables.update(loaded)


def _exclude_table(
    conn: psycopg.Connection,
    cluster: str,
    table: str,
    why: str,
    run_id: str | None,
    started: datetime,
    *,
    versioned: bool,
    at: datetime,
) -> TableOutcome:
    t0 = time.perf_counter()
    exclude_snapshot(
        conn,
        table,
        cluster,
        run_id=run_id,
        started_at=started,
        note=why,
        cluster_locked=True,
        versioned=versioned,
        at=at,
    )
    return TableOutcome(table, 0, 0, 0, time.perf_counter() - t0, note=why, excluded=True)


@dataclass
class Framed:
    """One extracted table made ready to load: its typed frame, or why it could not be built."""

    rows: int
    typed: TypedFrame | None
    note: str | None
    error: str | None
    duration_s: float


def frame_table(
    cluster: str, table: str, te: TableExtract, *, trusted: bool, collect: Collect | None
) -> Framed:
    """Rows (of the collected namespaces) to a typed frame; never raises for a table's failure."""
    t0 = time.perf_counter()
    rows, ns_note = without_excluded_namespaces(table, te.rows or [], collect or Collect())
    try:
        typed = to_frame(table, rows, cluster_name=cluster, validate_json=not trusted)
    except Exception as exc:
        error = f"cluster {cluster}: table {table}: load failed: {exc}"
        return Framed(len(rows), None, None, error, time.perf_counter() - t0)
    note = data_note("; ".join(n for n in (te.note, ns_note) if n) or None, typed)
    return Framed(len(rows), typed, note, None, time.perf_counter() - t0)


FRAME_AHEAD = True
"""Build the next table's frame in a thread while this one loads: the loading thread mostly waits for
PostgreSQL (the COPY's indexes, the history statement, the commit), which releases the GIL. False:
one after the other (benchmarks/history.py measures both)."""


def frames_ahead(jobs: Sequence[tuple[str, Callable[[], Framed]]]) -> Iterator[tuple[str, Framed]]:
    """Each job's result in order, the next one already being built (at most two frames alive)."""
    if not FRAME_AHEAD:
        for table, job in jobs:
            yield table, job()
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kq-frames") as pool:
        following = _submit(pool, jobs[0][1]) if jobs else None
        for i, (table, _) in enumerate(jobs):
            current = following
            following = _submit(pool, jobs[i + 1][1]) if i + 1 < len(jobs) else None
            assert current is not None
            yield table, current.result()


def _submit(pool: ThreadPoolExecutor, job: Callable[[], Framed]) -> Future[Framed]:
    """The job in the pool; or, once the interpreter is shutting down (Ctrl-C while a cluster is in
    flight) and no new thread may start, built here, as without the lookahead."""
    try:
        return pool.submit(job)
    except RuntimeError:
        done: Future[Framed] = Future()
        done.set_result(job())
        return done


def _load_table(
    conn: psycopg.Connection,
    cluster: str,
    table: str,
    te: TableExtract,
    framed: Framed | None,
    run_id: str | None,
    started: datetime,
    *,
    versioned: bool = True,
    at: datetime | None = None,
) -> TableOutcome:
    """Load one framed table, or record why not; never raises for a table's failure."""
    t0 = time.perf_counter()
    if te.rows is None or framed is None:
        error = te.error or f"cluster {cluster}: table {table}: extraction failed"
        record_failed_load(conn, table, cluster, error=error, run_id=run_id, started_at=started)
        return TableOutcome(table, None, None, 0, te.duration_s, error=error)
    if framed.typed is None:  # the frame could not be built
        error = framed.error or f"cluster {cluster}: table {table}: load failed"
        record_failed_load(conn, table, cluster, error=error, run_id=run_id, started_at=started)
        return TableOutcome(table, framed.rows, None, 0, te.duration_s, error=error)
    spent = te.duration_s + framed.duration_s
    try:
        result = replace_snapshot(
            conn,
            table,
            cluster,
            framed.typed,
            run_id=run_id,
            started_at=started,
            rows_extracted=framed.rows,
            extract_s=spent + (time.perf_counter() - t0),
            note=framed.note,
            cluster_locked=True,  # refresh_cluster holds the cluster's session lock
            keep=te.kept_kinds or None,
            versioned=versioned,
            at=at,
        )
    except Exception as exc:
        if conn.closed or conn.broken:
            raise  # the cluster's transaction is gone: every table fails, recorded by the caller
        error = f"cluster {cluster}: table {table}: load failed: {exc}"
        record_failed_load(conn, table, cluster, error=error, run_id=run_id, started_at=started)
        return TableOutcome(table, framed.rows, None, 0, te.duration_s, error=error)
    return TableOutcome(
        table,
        framed.rows,
        result.rows_loaded,
        result.rows_rejected,
        spent + (time.perf_counter() - t0),
        note=result.note,
        rows_kept=result.rows_kept,
        parts=result.parts,
        changes=result.changes,
    )


MAX_REASONS = 5


def data_note(extract_note: str | None, typed: TypedFrame) -> str | None:
    """What an operator needs to know about values that could not be stored as they came."""
    parts = [extract_note] if extract_note else []
    if typed.rejected:
        reasons = "; ".join(f"row {r.row_index} {r.column}: {r.reason}" for r in typed.rejected[:MAX_REASONS])
        more = f" (+{len(typed.rejected) - MAX_REASONS} more)" if len(typed.rejected) > MAX_REASONS else ""
        parts.append(f"{len(typed.rejected)} row(s) rejected: {reasons}{more}")
    if typed.sanitized:
        parts.append(f"{typed.sanitized} value(s) sanitised (NUL bytes removed, invalid characters replaced)")
    return "; ".join(parts) or None


_POOLS: weakref.WeakSet[ThreadPoolExecutor] = weakref.WeakSet()


def cancel_pending() -> None:
    """Drop the queued clusters of every refresh of this process and wait for those in flight.

    For an interrupted run whose op generator Dagster left suspended (an interrupt that lands while
    Dagster stores an event never reaches the op's frame, so its iterator is not closed at once)."""
    for pool in list(_POOLS):
        pool.shutdown(wait=True, cancel_futures=True)


def iter_refresh_clusters(
    dsn: str, names: Sequence[str], tables: Sequence[str], *, run_id: str | None, settings: RefreshSettings
) -> Iterator[ClusterOutcome]:
    """Refresh several clusters concurrently, yielding each outcome as its cluster finishes (its
    transaction committed), so a caller can record it at once. Closing the iterator early (Ctrl-C, a
    failing consumer) drops the clusters not yet started; their previous snapshots stay, and the ones
    in flight finish or roll back."""
    pool = ThreadPoolExecutor(max_workers=max(1, settings.concurrency), thread_name_prefix="kq-cluster")
    _POOLS.add(pool)
    finished = False
    try:
        futures = [
            pool.submit(refresh_cluster, dsn, n, tables, run_id=run_id, settings=settings) for n in names
        ]
        for fut in as_completed(futures):
            yield fut.result()
        finished = True
    finally:
        pool.shutdown(wait=finished, cancel_futures=not finished)


def refresh_clusters(
    dsn: str,
    names: Sequence[str],
    tables: Sequence[str],
    *,
    run_id: str | None,
    settings: RefreshSettings,
    on_done: Callable[[ClusterOutcome, int, int], None] | None = None,
) -> list[ClusterOutcome]:
    """Refresh several clusters concurrently; `on_done(outcome, done, total)` reports progress."""
    outcomes: list[ClusterOutcome] = []
    for outcome in iter_refresh_clusters(dsn, names, tables, run_id=run_id, settings=settings):
        outcomes.append(outcome)
        if on_done:
            on_done(outcome, len(outcomes), len(names))
    order = {n: i for i, n in enumerate(names)}
    outcomes.sort(key=lambda o: order[o.cluster])
    return outcomes
