"""`kq load`'s watcher of kq_meta.loads: every cluster is reported once, whatever order clusters commit in."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg

from kq_pipeline.load_output import RunWatcher
from kq_pipeline.report import ClusterResult

TABLES = ("t1", "t2", "t3")


def _record(conn: psycopg.Connection, cluster: str) -> None:
    now = datetime.now(UTC)
    for table in TABLES:
        conn.execute(
            "INSERT INTO kq_meta.loads (run_id, cluster_name, table_name, status, rows_loaded, started_at,"
            " finished_at) VALUES ('r1', %s, %s, 'success', 1, %s, %s)",
            (cluster, table, now, now),
        )


def test_a_cluster_committing_after_a_later_started_one_is_still_reported(pg_dsn: str) -> None:
    """A refresh loads a cluster's tables in one transaction, so a cluster that took its kq_meta.loads ids
    first can commit last: the watcher must not skip it for having lower ids."""
    reported: list[ClusterResult] = []
    watcher = RunWatcher(pg_dsn, "r1", len(TABLES), reported.append, interval_s=3600)
    with psycopg.connect(pg_dsn) as slow, psycopg.connect(pg_dsn, autocommit=True) as fast:
        _record(slow, "early")  # lower ids, not committed yet
        _record(fast, "late")
        watcher.poll()
        assert [r.name for r in reported] == ["late"]
        slow.commit()
        watcher.poll()
        watcher.poll()
    assert [r.name for r in reported] == ["late", "early"]
    assert all(r.ok and r.rows == len(TABLES) for r in reported)
