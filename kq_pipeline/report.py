"""The load report users of the original aggregator know: one line per cluster and table."""

from __future__ import annotations

from itertools import groupby

import psycopg

RULE = "-" * 78


def print_run_report(conn: psycopg.Connection, run_id: str) -> tuple[int, list[str]]:
    """Print each cluster's tables loaded by one run (from kq_loads); returns (ok count, failed names)."""
    with conn.cursor() as cur:
        cur.execute(
            """
            SELECT l.cluster_name, coalesce(c.server, ''), l.table_name, l.status, l.rows_loaded,
                   coalesce(l.duration_ms, extract(epoch FROM l.finished_at - l.started_at) * 1000),
                   l.error
            FROM kq_loads l LEFT JOIN kq_clusters c ON c.name = l.cluster_name
            WHERE l.run_id = %s
            ORDER BY l.cluster_name, l.id
            """,
            (run_id,),
        )
        rows = cur.fetchall()
    ok = 0
    failed: list[str] = []
    for cluster, group in groupby(rows, key=lambda r: r[0]):
        loads = list(group)
        print(RULE)
        print(f"Cluster REPORT {cluster} - {loads[0][1]}")
        print(RULE)
        if all(load[3] == "failed" for load in loads):  # the cluster itself failed: say it once
            print(f"  {cluster} FAILED (all {len(loads)} tables): {loads[0][6]}")
            failed.append(cluster)
            continue
        for _, _, table, status, n, ms, error in loads:
            if status == "success":
                print(f"  {cluster} {table} Rows={n}, Duration={float(ms):.1f}ms")
            else:
                print(f"  {cluster} {table} FAILED: {error}")
        if all(load[3] == "success" for load in loads):
            ok += 1
        else:
            failed.append(cluster)
    return ok, failed
