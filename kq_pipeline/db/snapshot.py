"""Where a cluster's snapshot is replaced: whole or not at all.

One transaction per (cluster, table), or a savepoint when the caller already holds a transaction (a
refresh loads all of a cluster's tables in one, so they share one point in time): take the
cluster's advisory lock, delete the cluster's rows, COPY the typed frame straight into the table,
and record the load in `kq_meta.loads`. Readers keep seeing the previous snapshot until the commit; any
failure rolls the table back to exactly that snapshot, and the caller records the failure with
`record_failed_load`. No staging table: the lock already keeps other loads of the cluster out, so
copying into the target directly is just as atomic and writes every row once instead of twice.
Values travel only as COPY data or query parameters; identifiers only from the registry.

Two variations on the whole-snapshot rule:

* a table whose definition names `kept_by` columns (custom resources: api_group, kind) may keep the
  previous rows of the parts that failed this time (`keep`): the delete spares them, the COPY adds
  everyone else's new rows, and the load is a success whose note names each kept part and why
  (its rows_loaded counts the kept rows too: it is what the snapshot holds);
* a table the cluster's selection excludes is emptied for that cluster (`exclude_snapshot`) and
  recorded as 'excluded', so the data always reflects what is collected.

Either way the table's history (kq_pipeline/db/history.py) is brought in line in the same
transaction, unless the table's history is skipped: a rolled-back load leaves no trace there either.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from kq_pipeline.db.history import ChangeCounts, load_time, record_changes, skipped_tables
from kq_pipeline.db.schema import storage_column_names
from kq_pipeline.frames import TypedFrame
from kq_pipeline.registry import table as registry_table

MAX_ERROR_CHARS = 8000
# The same key as kq_pipeline.refresh.cluster_lock's session lock: advisory locks are re-entrant
# within a session, so a refresh holding it can replace, and any other session waits.
CLUSTER_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtextextended('kq-cluster:' || %s, 0))"
INSERT_LOAD_SQL = """
    INSERT INTO kq_meta.loads (run_id, cluster_name, table_name, status, rows_extracted, rows_loaded,
                          rows_rejected, started_at, finished_at, error, duration_ms, note)
    VALUES (%(run_id)s, %(cluster_name)s, %(table_name)s, %(status)s, %(rows_extracted)s, %(rows_loaded)s,
            %(rows_rejected)s, %(started_at)s, clock_timestamp(), %(error)s, %(duration_ms)s, %(note)s)
"""


@dataclass(frozen=True)
class LoadResult:
    rows_loaded: int
    """Rows the cluster's snapshot of the table holds after the load: those copied, plus any kept
    (kq_meta.loads.rows_loaded too, so a cluster's latest successful load always counts its rows)."""
    rows_rejected: int
    duration_s: float
    rows_kept: int = 0
    """Previous rows of failed parts left in place (see `keep`)."""
    note: str | None = None
    """The note recorded in kq_meta.loads (the caller's, plus what was kept)."""
    parts: dict[tuple[str, ...], int] | None = None
    """For a table with `kept_by` columns: the rows the snapshot holds per part (custom resources: per
    (api_group, kind)), copied or kept; a kept part with no previous rows counts 0. None otherwise."""
    changes: ChangeCounts | None = None
    """Rows added, removed and modified since the previous load (None: the table's history is skipped)."""


def _versioned(table: str, versioned: bool | None) -> bool:
    return table not in skipped_tables() if versioned is None else versioned


def replace_snapshot(
    conn: psycopg.Connection,
    table: str,
    cluster_name: str,
    typed: TypedFrame | pd.DataFrame,
    *,
    run_id: str | None,
    started_at: datetime,
    rows_extracted: int,
    extract_s: float = 0.0,
    note: str | None = None,
    cluster_locked: bool = False,
    keep: Mapping[tuple[str, ...], str] | None = None,
    versioned: bool | None = None,
    at: datetime | None = None,
) -> LoadResult:
    """Replace `cluster_name`'s rows of `table` with the frame's rows, atomically.

    `cluster_locked`: this session already holds the cluster's lock (a refresh does, for all its
    tables), so the per-table lock would be one more round trip for nothing.

    `keep`: parts of the snapshot, by the table's `kept_by` values, whose previous rows stay (they
    failed this time; the frame has no rows of theirs) -> why; named in the recorded note.

    `extract_s` (time spent listing and building this table's rows) is added to the load time in
    the kq_meta.loads row's duration_ms, so the report shows what the table cost end to end.

    `versioned`: keep the table's history (default: unless KQ_HISTORY_SKIP names the table); `at`: the
    load's time in the history (default: the server's clock once the lock is held; a refresh passes
    one time for all of a cluster's tables)."""
    t0 = time.perf_counter()
    frame, rejected = (typed.frame, typed.rows_rejected) if isinstance(typed, TypedFrame) else (typed, 0)
    spec = registry_table(table)
    columns = storage_column_names(spec)
    _check_frame(frame, columns, cluster_name)
    if keep and not spec.kept_by:
        raise ValueError(f"table {table} has no kept_by columns: its snapshot is replaced whole")
    target = sql.Identifier(table)
    kept: dict[tuple[str, ...], int] = {}
    with conn.transaction(), conn.cursor() as cur:
        if not cluster_locked:
            cur.execute(CLUSTER_LOCK_SQL, (cluster_name,))
        if keep:
            kept = _delete_except(cur, table, spec.kept_by, cluster_name, list(keep))
            note = "; ".join(p for p in (note, kept_note(keep, kept)) if p)
        else:
            cur.execute(sql.SQL("DELETE FROM {} WHERE cluster_name = %s").format(target), (cluster_name,))
        copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
            target, sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        with cur.copy(copy_sql) as copy:
            for row in _rows(frame, columns, trusted=isinstance(typed, TypedFrame)):
                copy.write_row(row)
        kept_rows = sum(kept.values())
        loaded = cur.rowcount + kept_rows  # what the cluster's snapshot of the table holds now
        parts = _part_counts(frame, spec.kept_by, kept, keep) if spec.kept_by else None
        changes = None
        if _versioned(table, versioned):
            changes = record_changes(cur, table, cluster_name, at or load_time(cur))
        cur.execute(
            INSERT_LOAD_SQL,
            _load_row(
                run_id,
                cluster_name,
                table,
                "success",
                started_at,
                rows_extracted,
                loaded,
                rejected,
                duration_s=extract_s + (time.perf_counter() - t0),
                note=note,
            ),
        )
    return LoadResult(
        rows_loaded=loaded,
        rows_rejected=rejected,
        duration_s=time.perf_counter() - t0,
        rows_kept=kept_rows,
        note=note,
        parts=parts,
        changes=changes,
    )


def _part_counts(
    frame: pd.DataFrame,
    kept_by: tuple[str, ...],
    kept: Mapping[tuple[str, ...], int],
    keep: Mapping[tuple[str, ...], str] | None,
) -> dict[tuple[str, ...], int]:
    """Rows per part: the frame's (counted in memory, no query) plus the kept ones'."""
    counts = Counter(zip(*(frame[c].to_numpy() for c in kept_by), strict=True)) if len(frame) else Counter()
    for key in keep or ():
        counts[key] += kept.get(key, 0)
    return dict(sorted(counts.items()))


def _delete_except(
    cur: psycopg.Cursor,
    table: str,
    kept_by: tuple[str, ...],
    cluster_name: str,
    keep: list[tuple[str, ...]],
) -> dict[tuple[str, ...], int]:
    """Delete the cluster's rows but those of the `keep` parts; how many rows each kept part has."""
    target = sql.Identifier(table)
    part = sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in kept_by)
    spared = sql.SQL(" OR ").join(sql.SQL("({})").format(part) for _ in keep)
    params = [v for key in keep for v in key]
    cur.execute(
        sql.SQL("DELETE FROM {} WHERE cluster_name = %s AND NOT ({})").format(target, spared),
        [cluster_name, *params],
    )
    cols = sql.SQL(", ").join(map(sql.Identifier, kept_by))
    cur.execute(
        sql.SQL("SELECT {}, count(*) FROM {} WHERE cluster_name = %s GROUP BY {}").format(cols, target, cols),
        (cluster_name,),
    )
    return {tuple(r[:-1]): r[-1] for r in cur.fetchall()}


def kept_note(keep: Mapping[tuple[str, ...], str], counts: Mapping[tuple[str, ...], int]) -> str:
    """Each kept part, why it failed and how many rows it kept, e.g.
    "cert-manager.io/Certificate: permission denied: ...: previous rows kept (12)"."""
    return "; ".join(
        f"{'/'.join(key)}: {why}: previous rows kept ({counts.get(key, 0)})" for key, why in keep.items()
    )


def exclude_snapshot(
    conn: psycopg.Connection,
    table: str,
    cluster_name: str,
    *,
    run_id: str | None,
    started_at: datetime,
    note: str,
    cluster_locked: bool = False,
    versioned: bool | None = None,
    at: datetime | None = None,
) -> int:
    """Delete `cluster_name`'s rows of a table it does not collect, and record the load as 'excluded'.

    Returns the rows deleted (named in the note when there were any: the first refresh after the
    selection changed); their history rows are closed (`versioned`, `at`: as for replace_snapshot)."""
    registry_table(table)
    t0 = time.perf_counter()
    with conn.transaction(), conn.cursor() as cur:
        if not cluster_locked:
            cur.execute(CLUSTER_LOCK_SQL, (cluster_name,))
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE cluster_name = %s").format(sql.Identifier(table)), (cluster_name,)
        )
        deleted = cur.rowcount
        if deleted:
            note = f"{note}; its {deleted} previous rows deleted"
        if _versioned(table, versioned):
            record_changes(cur, table, cluster_name, at or load_time(cur))
        cur.execute(
            INSERT_LOAD_SQL,
            _load_row(
                run_id,
                cluster_name,
                table,
                "excluded",
                started_at,
                rows_loaded=0,
                duration_s=time.perf_counter() - t0,
                note=note,
            ),
        )
    return deleted


def record_failed_load(
    conn: psycopg.Connection,
    table: str,
    cluster_name: str,
    *,
    error: str,
    run_id: str | None,
    started_at: datetime,
) -> None:
    """Record a failed (cluster, table) load; the table's rows are not touched."""
    registry_table(table)
    if conn.info.transaction_status == TransactionStatus.INERROR:
        conn.rollback()
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            INSERT_LOAD_SQL,
            _load_row(run_id, cluster_name, table, "failed", started_at, error=error[:MAX_ERROR_CHARS]),
        )


def _load_row(
    run_id: str | None,
    cluster_name: str,
    table: str,
    status: str,
    started_at: datetime,
    rows_extracted: int | None = None,
    rows_loaded: int | None = None,
    rows_rejected: int = 0,
    error: str | None = None,
    duration_s: float | None = None,
    note: str | None = None,
) -> dict[str, object]:
    return {
        "run_id": run_id,
        "cluster_name": cluster_name,
        "table_name": table,
        "status": status,
        "rows_extracted": rows_extracted,
        "rows_loaded": rows_loaded,
        "rows_rejected": rows_rejected,
        "started_at": started_at,
        "error": error,
        "duration_ms": None if duration_s is None else round(duration_s * 1000),
        "note": note,
    }


def _check_frame(frame: pd.DataFrame, columns: tuple[str, ...], cluster_name: str) -> None:
    if tuple(frame.columns) != columns:
        raise ValueError(f"frame columns do not match the table's columns {columns[:3]}...")
    if len(frame) and not (frame["cluster_name"] == cluster_name).all():
        raise ValueError(f"frame holds rows of a cluster other than {cluster_name!r}")


def _rows(frame: pd.DataFrame, columns: tuple[str, ...], *, trusted: bool = False) -> Iterator[tuple]:
    """Rows as tuples of Python values with None for missing (what COPY's write_row wants).

    A TypedFrame's text columns already hold str or None, so they are passed as they are and only
    its integer columns are converted: per column, pandas' general NA conversion cost ~0.2 ms, which
    made it the largest fixed cost of the many tiny tables. Any other frame takes the general path."""
    cols = []
    for c in columns:
        series = frame[c]
        if trusted and series.dtype == object:
            cols.append(series.to_numpy())
        else:
            cols.append(series.array.to_numpy(dtype=object, na_value=None))
    return zip(*cols, strict=True)
