"""What happens to a removed cluster's rows: kept (stale, flagged by kq_meta.clusters.retired_at) or deleted.

Its history is kept either way, until retention prunes it: deleted rows are closed in the history
(and listed as removed in history.changes) at the time of the retirement."""

from __future__ import annotations

import psycopg
from psycopg import sql

from kq_pipeline.db.history import load_time, record_changes, skipped_tables
from kq_pipeline.db.snapshot import CLUSTER_LOCK_SQL
from kq_pipeline.registry import TABLES

RETIRE_POLICIES = ("keep", "delete")


def retire_rows(conn: psycopg.Connection, cluster: str, policy: str) -> int:
    """Apply the retire policy to one cluster's rows in one transaction; returns rows deleted."""
    if policy not in RETIRE_POLICIES:
        raise ValueError(f"retire policy must be one of {RETIRE_POLICIES}, got {policy!r}")
    deleted = 0
    skipped = skipped_tables() if policy == "delete" else frozenset()
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "UPDATE kq_meta.clusters SET retired_at = coalesce(retired_at, now()) WHERE name = %s", (cluster,)
        )
        if policy == "delete":
            cur.execute(CLUSTER_LOCK_SQL, (cluster,))
            at = load_time(cur)
            for table in TABLES:
                cur.execute(
                    sql.SQL("DELETE FROM {} WHERE cluster_name = %s").format(sql.Identifier(table)),
                    (cluster,),
                )
                deleted += cur.rowcount
                if table not in skipped:
                    record_changes(cur, table, cluster, at)
    return deleted
