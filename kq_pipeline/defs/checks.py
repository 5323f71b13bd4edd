"""Row-count rules judged per cluster and API group after every load.

A rule broken by any table of the group fails the group's check for that cluster; the check's
metadata lists each table's count and every broken rule, so the UI says which table and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg

from kq_pipeline.refresh import ClusterOutcome
from kq_pipeline.registry import NEVER_EMPTY

ROW_COUNT_CHECK = "row_counts"


@dataclass(frozen=True)
class RowCountVerdict:
    passed: bool
    counts: dict[str, int | None]
    broken: list[str] = field(default_factory=list)


def previous_counts(
    conn: psycopg.Connection, cluster: str, tables: Sequence[str], run_id: str | None
) -> dict[str, int]:
    """Rows loaded by each table's last successful load before this run."""
    with conn.cursor() as cur:
        cur.execute(
            """
            SELECT DISTINCT ON (table_name) table_name, rows_loaded
            FROM kq_meta.loads
            WHERE cluster_name = %s AND table_name = ANY(%s) AND status = 'success'
              AND run_id IS DISTINCT FROM %s
            ORDER BY table_name, finished_at DESC
            """,
            (cluster, list(tables), run_id),
        )
        return {t: n for t, n in cur.fetchall()}


def judge_row_counts(
    outcome: ClusterOutcome, tables: Sequence[str], previous: dict[str, int], max_drop_ratio: float
) -> RowCountVerdict:
    """loaded == extracted; never-empty tables non-empty; no drop beyond `max_drop_ratio` (measured
    against the history's added/removed counts where the table keeps history, else `previous`). Tables
    the cluster does not collect (excluded) break no rule."""
    broken: list[str] = []
    counts: dict[str, int | None] = {}
    for table in tables:
        t = outcome.tables.get(table)
        if t is None or not t.ok:
            counts[table] = None
            broken.append(f"{table}: not loaded")
            continue
        counts[table] = t.rows_loaded
        if t.excluded:  # not collected for this cluster: emptied on purpose, no rule applies
            continue
        loaded, extracted = t.rows_loaded or 0, t.rows_extracted or 0
        written = loaded - t.rows_kept  # kept rows (failed custom kinds) were not extracted this time
        if written + t.rows_rejected != extracted:
            kept = f" - kept {t.rows_kept}" if t.rows_kept else ""
            broken.append(
                f"{table}: loaded {loaded}{kept} + rejected {t.rows_rejected} != extracted {extracted}"
            )
        if t.rows_rejected:
            broken.append(f"{table}: {t.rows_rejected} rows rejected")
        if table in NEVER_EMPTY and loaded == 0:
            broken.append(f"{table}: empty, but a live cluster always has rows here")
        before, why = previous.get(table), ""
        if t.changes is not None:  # the history's counts: exact, and they say what went
            before = loaded - t.changes.added + t.changes.removed
            why = f": {t.changes.removed} removed, {t.changes.added} added"
        if before and loaded < before * (1.0 - max_drop_ratio):
            broken.append(
                f"{table}: dropped from {before} to {loaded} rows (more than {max_drop_ratio:.0%}){why}"
            )
    return RowCountVerdict(passed=not broken, counts=counts, broken=broken)
