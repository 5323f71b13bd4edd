"""What happens to a removed cluster's rows: kept (stale, flagged by kq_clusters.retired_at) or deleted."""

from __future__ import annotations

import psycopg
from psycopg import sql

from kq_pipeline.registry import TABLES

RETIRE_POLICIES = ("keep", "delete")


def retire_rows(conn: psycopg.Connection, cluster: str, policy: str) -> int:
    """Apply the retire policy to one cluster's rows in one transaction; returns rows deleted."""
    if policy not in RETIRE_POLICIES:
        raise ValueError(f"retire policy must be one of {RETIRE_POLICIES}, got {policy!r}")
    deleted = 0
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "UPDATE kq_clusters SET retired_at = coalesce(retired_at, now()) WHERE name = %s", (cluster,)
        )
        if policy == "delete":
            for table in TABLES:
                cur.execute(
                    sql.SQL("DELETE FROM {} WHERE cluster_name = %s").format(sql.Identifier(table)),
                    (cluster,),
                )
                deleted += cur.rowcount
    return deleted
